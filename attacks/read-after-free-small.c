#include "attack.h"
/* Read a small block after its free: exit 1 if its old data is still there to be read
 * (zero-on-free wipes it: a clean exit is the read neutralised). */
int main(void)
{
	char *keep = malloc(16), *p = malloc(16);
	memset(p, 'a', 16);
	free(p);
	for (int i = 0; i < 16; i++)
		if (peek(p + i) == 'a') return 1;
	sink = keep;
	return 0;
}
