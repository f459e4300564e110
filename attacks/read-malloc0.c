#include "attack.h"
/* Read through malloc(0)'s pointer: the outcome is whether the read faults, whatever the
 * byte read is. */
int main(void)
{
	char *p = malloc(0);
	sink = (void *)(uintptr_t)peek(p);
	return 0;
}
