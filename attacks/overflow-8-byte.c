#include "attack.h"
/* An 8-byte overflow of malloc(8) that changes only its last byte: past the check byte,
 * in the next slot's header */
int main(void)
{
	char *p = malloc(8);
	smash(p + malloc_usable_size(p) + 7);
	free(p);
	return 0;
}
