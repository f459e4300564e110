#include "attack.h"
#include <pthread.h>
/* Heap metadata corruption: find the group header and meta record of a block and point
 * the record's list link at a fake, then free the group's blocks so the record is
 * unlinked. An unchecked unlink writes through the forged link (write-what-where). The
 * header's offset to the group is keyed by the allocator's secret, so the group is found
 * as an attacker who can read the heap would: the nearest 16-aligned word below the block
 * that points to a readable record whose memory field points back at it and whose slots
 * reach the block. The blocks are
 * allocated and freed by a thread that then exits: an allocator with thread caches gives
 * a cached block back to its group at the latest then. */
#include <unistd.h>

/* whether n bytes at p can be read, without touching them: write() fails with EFAULT */
static int readable(const void *p, size_t n)
{
	int fd[2];
	if (pipe(fd)) return 0;
	int ok = write(fd[1], p, n) == (ssize_t)n;
	close(fd[0]);
	close(fd[1]);
	return ok;
}

static void **find_group(unsigned char *p)
{
	for (unsigned char *q = p - 16; q > p - 65536; q -= 16) {
		void **meta = *(void ***)q;
		uintptr_t m = (uintptr_t)meta;
		if (m & 63 || !(m & 0xfff) || !readable(meta, 64)) continue;
		if (meta[2] != (void *)q) continue;
		/* the group holds p: its slots (last index at byte 32, stride in 16-byte units
		 * at byte 48 of the record) reach past it */
		unsigned char *r = (unsigned char *)meta;
		size_t slots = r[32] + 1, stride = 16 * (size_t)*(uint32_t *)(r + 48);
		if (p < q + 16 + slots * stride) return (void **)q;
	}
	return 0;
}

static void *corrupt_and_free(void *arg)
{
	(void)arg;
	char *p[8];
	for (int i = 0; i < 8; i++) p[i] = malloc(1000);
	void **group = find_group((unsigned char *)p[0]);
	if (!group) return (void *)1;
	void **meta = (void **)group[0];
	static void *fake[8];
	meta[1] = fake; /* next */
	for (int i = 0; i < 8; i++) free(p[i]);
	return 0;
}

int main(void)
{
	pthread_t t;
	void *found;
	if (pthread_create(&t, 0, corrupt_and_free, 0) || pthread_join(t, &found)) return 2;
	/* no group found: the attack could not be mounted (not a clean pass) */
	if (found) return 3;
	/* the program goes on: allocations and frees of the same size reach the record */
	for (int i = 0; i < 200; i++) {
		char *q = malloc(1000);
		sink = q;
		free(q);
	}
	return 0;
}
