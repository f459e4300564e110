#include "attack.h"
/* strlen over a buffer filled to its usable size: exit 1 if it runs past the end (the byte
 * after the data is not a NUL) */
int main(void)
{
	char *p = malloc(16);
	size_t n = malloc_usable_size(p);
	memset(p, 'a', n);
	return strlen(p) != n;
}
