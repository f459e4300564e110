#include "attack.h"
/* a write through a dangling pointer to a large block after the next large allocation:
 * where that one took the freed mapping, the write lands in it */
int main(void)
{
	char *p = malloc(LARGE);
	free(p);
	sink = malloc(LARGE);
	poke(p + 64 * 1024 + 1, 1);
	return 0;
}
