#include "attack.h"
/* a string copy 40 bytes too long runs over the next block's header */
int main(void)
{
	char *p = malloc(32), *q = malloc(32);
	memset(p, 'A', 32 + 40);
	free(q);
	free(p);
	return 0;
}
