#include "attack.h"
#include <pthread.h>
/* Heap metadata corruption through the in-band header (an allocator that has one):
 * follow the header of a block to its group and meta record and point the record's list
 * link at a fake, then free the group's blocks so the record is unlinked. An unchecked
 * unlink writes through the forged link (write-what-where). The blocks are allocated and
 * freed by a thread that then exits: an allocator with thread caches gives a cached block
 * back to its group at the latest then. */
static void *corrupt_and_free(void *arg)
{
	(void)arg;
	char *p[8];
	for (int i = 0; i < 8; i++) p[i] = malloc(1000);
	unsigned char *h = (unsigned char *)p[0];
	size_t off = h[-2] | h[-1] << 8;
	void **group = (void **)(h - 16 * off - 16);
	void **meta = (void **)group[0];
	static void *fake[8];
	meta[1] = fake; /* next */
	for (int i = 0; i < 8; i++) free(p[i]);
	return 0;
}

int main(void)
{
	pthread_t t;
	if (pthread_create(&t, 0, corrupt_and_free, 0) || pthread_join(t, 0)) return 2;
	/* the program goes on: allocations and frees of the same size reach the record */
	for (int i = 0; i < 200; i++) {
		char *q = malloc(1000);
		sink = q;
		free(q);
	}
	return 0;
}
