/* A static program that only calls malloc: as with stock musl, it must link no allocator
 * code beyond musl's bump allocator (the test checks the binary's symbols). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	char *p = malloc(100);
	if (!p) return 1;
	strcpy(p, "bump allocator only");
	puts(p);
	return 0;
}
