/* Real out-of-memory: the allocator under a resource limit, and with its program break
 * blocked. Runs against whatever serves malloc: ngmalloc's standalone library (linked in
 * or LD_PRELOAD, on glibc) or a musl sysroot (static). Modes (argv[1]):
 *   as            RLIMIT_AS = address space in use + LIMIT_MIB. Each round allocates
 *                 (malloc of every size class and of large blocks, calloc, realloc growth,
 *                 aligned_alloc, posix_memalign) until nothing more can be had, checks
 *                 every failure (NULL and ENOMEM; a failed realloc keeps its block), checks
 *                 that every live block still holds its own pattern, frees everything;
 *                 rounds after the first must get at least half as much (memory came back).
 *                 Then the same sharper: 1 MiB blocks until none fits, all freed, then one
 *                 block of half the headroom and 3 MiB blocks must fit (no freed block can
 *                 serve them, so what the freed ones held must have been given back); and
 *                 calloc right after a free of the same size must read as zero.
 *   data          the same with RLIMIT_DATA (Linux counts brk and private writable
 *                 mappings, so PROT_NONE reservations are free but guard pages are not).
 *   brk-blocked   before the first malloc, a page is mapped at the program break so brk
 *                 cannot grow: thousands of allocations of many classes (many meta areas,
 *                 which ngmalloc inside musl takes from brk) must all succeed (mmap
 *                 fallback), hold their data, and leave the break and the page alone.
 *   brk-late      the same, but brk is blocked after the heap has been using it, so the
 *                 fallback happens in the middle of a running heap.
 *   who           prints "ngmalloc" if ngmalloc serves this program, else "other".
 * Output is one line per check, "ok - ..." or "not ok - ...", plus "# ..." figures;
 * exit status 0 only if every check passed. Output goes through write(2) from a static
 * buffer: stdio may allocate (glibc's stdout buffer), and no allocation may happen before
 * brk-blocked has set up its page, nor fail unseen while memory is exhausted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "served.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* Headroom above current usage. Several times the largest single request (8 MiB), so
 * each round mixes many sizes before the large ones start failing. */
#define LIMIT_MIB 48
#define ROUNDS 3
/* A round ends after this many failures in a row: by then every kind of request has
 * been tried at every size with nothing left to give it. */
#define GIVE_UP 400
#define MAXBLK (1 << 17)
#define WARM_UP 3000

static int passed, failed;

static void say(const char *fmt, ...)
{
	static char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
	buf[n++] = '\n';
	for (int off = 0; off < n;) {
		ssize_t w = write(1, buf + off, n - off);
		if (w <= 0) break;
		off += w;
	}
}

static void check(int ok, const char *fmt, ...)
{
	static char name[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	ok ? passed++ : failed++;
	say("%s - %s", ok ? "ok" : "not ok", name);
}

static uint64_t rng = 0x853c49e6748fea9bULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A size in [lo, hi], log-uniform, so every size class gets its share. */
static size_t size_between(size_t lo, size_t hi)
{
	int a = 63 - __builtin_clzll(lo), b = 63 - __builtin_clzll(hi);
	int e = a + (int)(rnd() % (uint64_t)(b - a + 1));
	size_t n = ((size_t)1 << e) + rnd() % ((size_t)1 << e);
	return n < lo ? lo : n > hi ? hi : n;
}
/* Half of them up to 1 KiB: small classes need many blocks to fill their groups. */
static size_t class_size(void) { return size_between(1, rnd() % 2 ? 1024 : 128 << 10); }
static size_t large_size(void) { return size_between(256 << 10, 8 << 20); }
static size_t any_size(int large_ok) { return !large_ok || rnd() % 8 ? class_size() : large_size(); }

/* The pattern is positional (byte j is byte j%8 of word(id, j/8)), so a block grown by
 * realloc keeps a valid prefix of its new pattern, and two blocks never share one. */
static uint64_t word(uint32_t id, size_t k)
{
	uint64_t x = ((uint64_t)id + 1) * 0x9e3779b97f4a7c15ULL ^ (k + 1) * 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 29);
}
static void fill(unsigned char *p, size_t from, size_t n, uint32_t id)
{
	for (size_t k = from / 8; k * 8 < n; k++) {
		uint64_t w = word(id, k);
		size_t at = k * 8, len = n - at < 8 ? n - at : 8;
		memcpy(p + at, &w, len);
	}
}
/* Offset of the first wrong byte, or -1. */
static long bad_byte(const unsigned char *p, size_t n, uint32_t id)
{
	for (size_t k = 0; k * 8 < n; k++) {
		uint64_t w = word(id, k);
		size_t at = k * 8, len = n - at < 8 ? n - at : 8;
		if (memcmp(p + at, &w, len))
			for (size_t i = 0; i < len; i++)
				if (p[at + i] != ((unsigned char *)&w)[i]) return (long)(at + i);
	}
	return -1;
}

enum { K_MALLOC, K_LARGE, K_CALLOC, K_REALLOC, K_ALIGNED, K_MEMALIGN, K_KINDS };
static const char *kind_name[K_KINDS] = {"malloc", "malloc(large)", "calloc", "realloc", "aligned_alloc", "posix_memalign"};

struct blk { unsigned char *p; size_t n; uint32_t id; uint8_t kind; };
static struct blk blk[MAXBLK];
static size_t nblk;
static uint32_t next_id;

/* What one round saw. */
struct tally {
	size_t bytes, ok[K_KINDS], fails[K_KINDS];
	size_t bad_errno, dirty_errno, misaligned, calloc_dirty, bad_pm_ptr, realloc_lost;
	int first_fail_kind;
	size_t first_fail_size, bytes_at_first_fail;
	char bad_errno_what[160];
};

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) if (p[i]) return 0;
	return 1;
}

static void add(struct tally *t, void *p, size_t n, int kind)
{
	blk[nblk] = (struct blk){p, n, next_id++, (uint8_t)kind};
	fill(p, 0, n, blk[nblk].id);
	nblk++;
	t->bytes += n;
	t->ok[kind]++;
}

static void failure(struct tally *t, int kind, size_t n, int err, int expect_errno)
{
	if (!t->fails[0] && !t->fails[1] && !t->fails[2] && !t->fails[3] && !t->fails[4] && !t->fails[5]) {
		t->first_fail_kind = kind;
		t->first_fail_size = n;
		t->bytes_at_first_fail = t->bytes;
	}
	t->fails[kind]++;
	if (err != expect_errno && !t->bad_errno++)
		snprintf(t->bad_errno_what, sizeof t->bad_errno_what, "%s(%zu) failed with %s %d (%s), not ENOMEM",
			kind_name[kind], n, kind == K_MEMALIGN ? "return value" : "errno", err, strerror(err));
}

/* One request of a random kind (large ones only if large_ok); returns whether it
 * succeeded. Every call starts with errno = 0: a success must leave it so, a failure
 * must make it ENOMEM. */
static int one_request(struct tally *t, int large_ok)
{
	int kind = (int)(rnd() % 100);
	kind = kind < 45 ? K_MALLOC : kind < 53 ? K_LARGE : kind < 65 ? K_CALLOC
		: kind < 77 ? K_REALLOC : kind < 89 ? K_ALIGNED : K_MEMALIGN;
	if ((kind == K_REALLOC && !nblk) || (kind == K_LARGE && !large_ok)) kind = K_MALLOC;
	size_t n = kind == K_LARGE ? large_size() : any_size(large_ok);
	void *p;
	errno = 0;
	switch (kind) {
	case K_MALLOC:
	case K_LARGE:
		p = malloc(n);
		break;
	case K_CALLOC: {
		/* a count and an element size, as programs call it */
		size_t el = (size_t)1 << (rnd() % 5), cnt = n / el ? n / el : 1;
		n = cnt * el;
		p = calloc(cnt, el);
		if (p && !all_zero(p, n) && !t->calloc_dirty++) {
			size_t at = 0;
			while (!((unsigned char *)p)[at]) at++;
			say("# calloc(%zu, %zu) = %p: byte %zu is %#x, not zero", cnt, el, p, at, ((unsigned char *)p)[at]);
		}
		break;
	}
	case K_REALLOC: {
		struct blk *b = &blk[rnd() % nblk];
		size_t grow = b->n + b->n / 2 + rnd() % (b->n * 3 + 1) + 1;
		n = grow > (16u << 20) ? (16u << 20) : grow;
		if (n <= b->n) n = b->n + 1;
		p = realloc(b->p, n);
		if (!p) {
			failure(t, kind, n, errno, ENOMEM);
			/* still live, still ours: read it whole now (the final pass reads it again) */
			t->realloc_lost += bad_byte(b->p, b->n, b->id) >= 0;
			return 0;
		}
		if (errno) t->dirty_errno++;
		t->bytes += n - b->n;
		t->ok[kind]++;
		/* the old bytes must have moved with it: check now, the id is reused */
		long bad = bad_byte(p, b->n, b->id);
		if (bad >= 0) {
			check(0, "realloc(%zu -> %zu) kept the old contents (byte %ld differs)", b->n, n, bad);
			/* repaired, so the final pass reports only damage done later */
			fill(p, 0, b->n, b->id);
		}
		b->p = p;
		fill(p, b->n, n, b->id);
		b->n = n;
		return 1;
	}
	case K_ALIGNED: {
		size_t a = (size_t)1 << (4 + rnd() % 13); /* 16 B .. 64 KiB */
		if (n >= (256 << 10) && rnd() % 4 == 0) a = 1 << 20;
		n = (n + a - 1) & ~(a - 1); /* C11 wants a multiple of the alignment */
		p = aligned_alloc(a, n);
		if (p && ((uintptr_t)p & (a - 1))) t->misaligned++;
		break;
	}
	default: { /* K_MEMALIGN */
		size_t a = (size_t)1 << (3 + rnd() % 14); /* 8 B .. 64 KiB */
		void *sentinel = (void *)&t->bytes;
		p = sentinel;
		int r = posix_memalign(&p, a, n);
		if (r) {
			/* POSIX: memptr unmodified, or NULL in newer editions; errno unspecified */
			if (p != sentinel && p != NULL) t->bad_pm_ptr++;
			failure(t, kind, n, r, ENOMEM);
			return 0;
		}
		if ((uintptr_t)p & (a - 1)) t->misaligned++;
		if (errno) t->dirty_errno++;
		add(t, p, n, kind);
		return 1;
	}
	}
	if (!p) {
		failure(t, kind, n, errno, ENOMEM);
		return 0;
	}
	if (errno) t->dirty_errno++;
	add(t, p, n, kind);
	return 1;
}

static void verify_all(const char *what)
{
	size_t bad = 0;
	for (size_t i = 0; i < nblk; i++) {
		long at = bad_byte(blk[i].p, blk[i].n, blk[i].id);
		if (at >= 0 && !bad++)
			say("# %s: block %zu (%s, %zu bytes at %p) differs at byte %ld", what, i,
				kind_name[blk[i].kind], blk[i].n, (void *)blk[i].p, at);
	}
	check(bad == 0, "%s: all %zu live blocks hold their own pattern (%zu do not)", what, nblk, bad);
}

static void free_all(const char *what)
{
	size_t dirty = 0;
	for (size_t i = 0; i < nblk; i++) {
		errno = 4321;
		free(blk[i].p);
		dirty += errno != 4321;
	}
	check(dirty == 0, "%s: free of %zu blocks leaves errno untouched (%zu changed it)", what, nblk, dirty);
	nblk = 0;
}

static double mib(size_t n) { return n / 1048576.0; }

/* Allocate until GIVE_UP failures in a row, then check everything the round saw. */
static size_t exhaust(const char *mode, int round)
{
	struct tally t = {0};
	char what[64];
	snprintf(what, sizeof what, "%s: round %d", mode, round);
	size_t ops = 0;
	/* first a few thousand blocks below the mmap threshold, so the heap holds many
	 * groups (and meta records) when the large requests start running out */
	for (int misses = 0; misses < GIVE_UP && nblk < MAXBLK; ops++)
		misses = one_request(&t, ops >= WARM_UP) ? 0 : misses + 1;
	size_t nfail = 0;
	for (int k = 0; k < K_KINDS; k++) nfail += t.fails[k];
	check(nblk < MAXBLK, "%s: memory ran out before the test's table did (%zu blocks)", what, nblk);
	check(nfail >= GIVE_UP, "%s: allocation failed under the limit (%zu failures)", what, nfail);
	if (nfail)
		say("# %s: first failure %s(%zu) with %.1f MiB live; ended with %zu blocks, %.1f MiB, after %zu requests",
			what, kind_name[t.first_fail_kind], t.first_fail_size, mib(t.bytes_at_first_fail), nblk, mib(t.bytes), ops);
	say("# %s: succeeded/failed: malloc %zu/%zu, large %zu/%zu, calloc %zu/%zu, realloc %zu/%zu, aligned_alloc %zu/%zu, posix_memalign %zu/%zu",
		what, t.ok[0], t.fails[0], t.ok[1], t.fails[1], t.ok[2], t.fails[2], t.ok[3], t.fails[3], t.ok[4], t.fails[4], t.ok[5], t.fails[5]);
	check(t.bad_errno == 0, "%s: every failure is NULL with ENOMEM (posix_memalign: returns ENOMEM)%s%s", what,
		t.bad_errno ? "; first bad one: " : "", t.bad_errno_what);
	check(t.bad_pm_ptr == 0, "%s: failed posix_memalign leaves its pointer alone or NULL (%zu did not)", what, t.bad_pm_ptr);
	check(t.dirty_errno == 0, "%s: successful calls leave errno untouched (%zu changed it)", what, t.dirty_errno);
	check(t.misaligned == 0, "%s: aligned_alloc/posix_memalign results are aligned (%zu are not)", what, t.misaligned);
	check(t.calloc_dirty == 0, "%s: calloc memory reads as zero (%zu blocks did not)", what, t.calloc_dirty);
	check(t.realloc_lost == 0, "%s: each of %zu failed reallocs left its block intact (%zu did not)", what,
		t.fails[K_REALLOC], t.realloc_lost);
	verify_all(what);
	size_t total = t.bytes;
	free_all(what);
	return total;
}

/* Large blocks of one size until none fits, all freed, then one block of half the
 * headroom, then blocks of a size no freed block can serve: what the freed blocks held
 * (address space, data) must have come back, whatever the allocator keeps cached. */
static void resize_large(const char *mode)
{
	static const size_t size[2] = {1 << 20, 3 << 20};
	size_t got[2], bad_errno = 0;
	for (int phase = 0; phase < 2; phase++) {
		char what[64];
		snprintf(what, sizeof what, "%s: %zu MiB blocks", mode, size[phase] >> 20);
		struct tally t = {0};
		for (;;) {
			errno = 0;
			void *p = malloc(size[phase]);
			if (!p) {
				bad_errno += errno != ENOMEM;
				break;
			}
			add(&t, p, size[phase], K_LARGE);
		}
		say("# %s: %zu blocks until malloc failed", what, nblk);
		verify_all(what);
		got[phase] = t.bytes;
		free_all(what);
		if (phase) break;
		size_t big = ((size_t)LIMIT_MIB << 20) / 2;
		errno = 0;
		unsigned char *p = malloc(big);
		int e = errno;
		check(p != NULL, "%s: then, nothing live, malloc(%zu MiB) succeeds%s%s", what, big >> 20,
			p ? "" : ": failed with ", p ? "" : strerror(e));
		if (p) {
			fill(p, 0, big, 7);
			check(bad_byte(p, big, 7) < 0, "%s: that block holds its data", what);
			free(p);
		}
	}
	check(bad_errno == 0, "%s: those mallocs failed with ENOMEM", mode);
	check(got[1] >= got[0] / 2, "%s: %.0f MiB in 3 MiB blocks after %.0f MiB in 1 MiB blocks were freed (at least half)",
		mode, mib(got[1]), mib(got[0]));
}

/* A slot just freed and handed out again by calloc must read as zero, on a fresh heap
 * and after a round: both have classes at low usage (one-slot groups, whose memory may
 * be known fresh from mmap; after a free it no longer is). Steps of 1/8 hit every class. */
static void calloc_after_free(const char *mode, const char *when)
{
	size_t bad = 0, failed_calls = 0, first = 0;
	for (size_t n = 16; n <= (256 << 10); n += n / 8 + 16) {
		unsigned char *p = malloc(n);
		if (!p) { failed_calls++; continue; }
		memset(p, 0xa5, n);
		/* keep the stores: they are dead to the compiler once free is called */
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
		unsigned char *q = calloc(1, n);
		if (!q) { failed_calls++; continue; }
		if (!all_zero(q, n) && !bad++) first = n;
		free(q);
	}
	check(failed_calls == 0, "%s: %s, malloc/free/calloc of 16 B .. 256 KiB succeed (%zu failed)", mode, when,
		failed_calls);
	check(bad == 0, "%s: %s, calloc right after a free of the same size reads as zero (%zu sizes did not, the first %zu bytes)",
		mode, when, bad, first);
}

/* Touch stack now: under RLIMIT_AS, growing the stack later would fault like any other
 * mapping the limit refuses. */
static void touch_stack(void)
{
	volatile char pad[256 << 10];
	for (size_t i = 0; i < sizeof pad; i += 4096) pad[i] = 1;
}

/* A field of /proc/self/status in bytes, read without allocating. */
static size_t status_bytes(const char *field)
{
	static char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0) return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return 0;
	buf[n] = 0;
	char *s = strstr(buf, field);
	return s ? strtoull(s + strlen(field), 0, 10) * 1024 : 0;
}

static void limited(const char *mode, int resource, const char *field)
{
	touch_stack();
	size_t used = status_bytes(field);
	if (!used) {
		check(0, "%s: read %s from /proc/self/status", mode, field);
		return;
	}
	struct rlimit rl;
	getrlimit(resource, &rl);
	rl.rlim_cur = used + ((size_t)LIMIT_MIB << 20);
	if (setrlimit(resource, &rl)) {
		check(0, "%s: setrlimit: %s", mode, strerror(errno));
		return;
	}
	say("# %s: limit %.1f MiB = %.1f in use + %d", mode, mib(rl.rlim_cur), mib(used), LIMIT_MIB);
	size_t first = 0;
	char figures[128] = "", *f = figures;
	for (int round = 1; round <= ROUNDS; round++) {
		size_t got = exhaust(mode, round);
		f += snprintf(f, figures + sizeof figures - f, " %.1f", mib(got));
		if (round == 1) {
			first = got;
			check(got >= ((size_t)LIMIT_MIB << 20) / 2, "%s: round 1 got %.1f MiB of the %d MiB headroom (at least half)",
				mode, mib(got), LIMIT_MIB);
		} else {
			check(got >= first / 2, "%s: round %d got %.1f MiB, at least half of round 1's %.1f (freed memory came back)",
				mode, round, mib(got), mib(first));
		}
	}
	say("# figures:%s", figures);
	say("# %s: after freeing everything, %.1f MiB above the start still counted (%s)", mode,
		mib(status_bytes(field)) - mib(used), field);
	resize_large(mode);
	calloc_after_free(mode, "after freeing everything");
}

/* Thousands of live blocks of every class (with some large ones), so the heap needs many
 * groups and so many meta areas; checked, freed, again. */
static void churn(const char *mode, int rounds)
{
	for (int round = 1; round <= rounds; round++) {
		char what[64];
		snprintf(what, sizeof what, "%s: round %d", mode, round);
		struct tally t = {0};
		size_t want = 12000, fails = 0;
		for (size_t i = 0; i < want; i++) {
			size_t n = i % 500 == 0 ? large_size() : i % 16 == 0 ? size_between(1, 128 << 10) : size_between(1, 2048);
			errno = 0;
			void *p = i % 7 == 0 ? calloc(1, n) : malloc(n);
			if (!p) {
				if (!fails++) say("# %s: request %zu, %zu bytes, failed: %s", what, i, n, strerror(errno));
				continue;
			}
			if (i % 7 == 0 && !all_zero(p, n)) t.calloc_dirty++;
			if (errno) t.dirty_errno++;
			add(&t, p, n, K_MALLOC);
		}
		check(fails == 0, "%s: all %zu allocations succeeded (%.1f MiB; %zu failed)", what, want, mib(t.bytes), fails);
		check(t.dirty_errno == 0, "%s: successful calls leave errno untouched (%zu changed it)", what, t.dirty_errno);
		check(t.calloc_dirty == 0, "%s: calloc memory reads as zero (%zu blocks did not)", what, t.calloc_dirty);
		verify_all(what);
		free_all(what);
	}
}

static const uint64_t MAGIC = 0x6e676d616c6c6f63ULL;

/* Map a page at the page-aligned program break, so brk cannot grow; returns it or NULL. */
static uint64_t *block_brk(const char *mode)
{
	long ps = sysconf(_SC_PAGESIZE);
	uintptr_t cur = (uintptr_t)sbrk(0), at = (cur + ps - 1) & ~(uintptr_t)(ps - 1);
	/* NOREPLACE: an older kernel treats it as a hint, hence the address check */
	void *p = mmap((void *)at, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED || (uintptr_t)p != at) {
		check(0, "%s: map a page at the program break %#lx (%s)", mode, (unsigned long)at,
			p == MAP_FAILED ? strerror(errno) : "mapped elsewhere");
		return 0;
	}
	*(uint64_t *)p = MAGIC;
	/* proof the setup bites: the kernel refuses to move the break over our page */
	long r = syscall(SYS_brk, at + 2 * ps);
	check((uintptr_t)r < at + 2 * ps, "%s: setup: brk cannot grow past the page at %#lx (break at %#lx)", mode,
		(unsigned long)at, (unsigned long)cur);
	return p;
}

static void brk_checks(const char *mode, uint64_t *page)
{
	uintptr_t now = (uintptr_t)sbrk(0);
	check(now <= (uintptr_t)page, "%s: the break (%#lx) did not move past the blocking page (%p)", mode,
		(unsigned long)now, (void *)page);
	/* MAP_FIXED over it would have replaced it with zeros */
	check(*page == MAGIC, "%s: the blocking page still holds its data (not mapped over)", mode);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "brk-blocked")) {
		/* first thing: nothing has allocated yet (no stdio is used before this) */
		uint64_t *page = block_brk(mode);
		if (page) {
			calloc_after_free(mode, "fresh heap");
			churn(mode, 3);
			calloc_after_free(mode, "after freeing everything");
			brk_checks(mode, page);
		}
	} else if (!strcmp(mode, "brk-late")) {
		/* a heap that has been taking brk (in musl) meets a blocked break halfway */
		static unsigned char *keep[2000];
		static size_t keep_n[2000];
		size_t kept = 0;
		uintptr_t brk0 = (uintptr_t)sbrk(0);
		for (int i = 0; i < 2000; i++) {
			keep_n[i] = size_between(1, 1024);
			if ((keep[i] = malloc(keep_n[i]))) kept++, fill(keep[i], 0, keep_n[i], 1000000 + i);
		}
		check(kept == 2000, "%s: warm-up: 2000 blocks live before the break is blocked", mode);
		/* ngmalloc inside musl takes meta areas from brk; the standalone library never does */
		say("# %s: the break moved %lu KiB during the warm-up", mode, (unsigned long)((uintptr_t)sbrk(0) - brk0) >> 10);
		uint64_t *page = block_brk(mode);
		if (page) {
			churn(mode, 2);
			calloc_after_free(mode, "after freeing everything");
			brk_checks(mode, page);
		}
		size_t bad = 0;
		for (int i = 0; i < 2000; i++) bad += keep[i] && bad_byte(keep[i], keep_n[i], 1000000 + i) >= 0;
		check(bad == 0, "%s: the 2000 blocks from before the break was blocked hold their data (%zu do not)", mode, bad);
		for (int i = 0; i < 2000; i++) free(keep[i]);
	} else if (!strcmp(mode, "as")) {
		limited(mode, RLIMIT_AS, "VmSize:");
	} else if (!strcmp(mode, "data")) {
		limited(mode, RLIMIT_DATA, "VmData:");
	} else if (!strcmp(mode, "who")) {
		say("%s", served_by_ngmalloc() ? "ngmalloc" : "other");
		return 0;
	} else {
		say("usage: %s as|data|brk-blocked|brk-late|who", argv[0]);
		return 2;
	}
	say("# %s: %d passed, %d failed", mode, passed, failed);
	return failed != 0;
}
