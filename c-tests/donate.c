/* The dynamic linker gives the unused parts of the pages holding the program's and
 * libc's writable segments to the allocator (__malloc_donate). Prove ngmalloc took them:
 * some small allocations must land inside those pages, where no mapping of the heap's own
 * can be. */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "served.h"

struct range { uintptr_t lo, hi; } seg[64];
static int nseg;

static int add(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size; (void)data;
	for (int i = 0; i < info->dlpi_phnum && nseg < 64; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		seg[nseg].lo = lo & -4096UL;
		seg[nseg].hi = (hi + 4095) & -4096UL;
		nseg++;
	}
	return 0;
}

int main(void)
{
	int ok = served_by_ngmalloc();
	printf("%s - served by ngmalloc\n", ok ? "ok" : "not ok");
	dl_iterate_phdr(add, 0);
	int inside = 0;
	/* one request per class that donation fills (every fourth class from the largest) */
	static const int units[] = { 8191, 4095, 2047, 1023, 511, 255, 127, 63, 31, 15, 8, 4 };
	for (int k = 0; k < 12; k++)
		for (int j = 0; j < 3; j++) {
			uintptr_t p = (uintptr_t)malloc(units[k] * 16 - 4);
			for (int s = 0; s < nseg; s++)
				if (p >= seg[s].lo && p < seg[s].hi) inside++;
		}
	printf("%s - %d allocations inside donated segment pages (%d writable segments)\n",
		inside ? "ok" : "not ok", inside, nseg);
	printf("%d passed, %d failed\n", ok + !!inside, !ok + !inside);
	return !(ok && inside);
}
