/* A program that brings its own malloc (a bump allocator): musl's dynamic linker notices
 * and then aligned_alloc (and memalign, posix_memalign) must fail with ENOMEM rather than
 * hand out memory this program's free cannot take back. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char arena[1 << 20];
static size_t used;
static int calls;

void *malloc(size_t n)
{
	calls++;
	n = (n + 15) & -16;
	if (n > sizeof arena - used) { errno = ENOMEM; return 0; }
	used += n;
	return arena + used - n;
}
void free(void *p) { (void)p; }
void *calloc(size_t m, size_t n) { void *p = malloc(m * n); return p ? memset(p, 0, m * n) : 0; }
void *realloc(void *p, size_t n)
{
	void *q = malloc(n);
	if (q && p) memcpy(q, p, n); /* the bump arena is contiguous: reading past is safe */
	return q;
}

int main(void)
{
	int passed = 0, failed = 0;
	char *s = strdup("mine");
#define CHECK(c, name) do { int c_ = (c); c_ ? passed++ : failed++; printf("%s - %s\n", c_ ? "ok" : "not ok", name); } while (0)
	CHECK(s && calls > 0 && s >= arena && s < arena + sizeof arena, "strdup uses the program's malloc");
	errno = 0;
	void *p = aligned_alloc(64, 100);
	CHECK(!p && errno == ENOMEM, "aligned_alloc fails with ENOMEM");
	void *q = 0;
	CHECK(posix_memalign(&q, 64, 100) == ENOMEM, "posix_memalign fails with ENOMEM");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
