#include "attack.h"
int main(void)
{
	char *p = aligned_alloc(64, 64);
	size_t a = ((uintptr_t)p & 4095) ? 4096 : 8192; /* an alignment p does not have */
	while ((uintptr_t)p % a == 0) a <<= 1;
	free_aligned_sized(p, a, 64);
	return 0;
}
