#include "attack.h"
/* An overflow that skips the byte after the data: a byte written 2 past the end,
 * inside the slot's unused room */
int main(void)
{
	char *p = malloc(20);
	smash(p + 22);
	free(p);
	return 0;
}
