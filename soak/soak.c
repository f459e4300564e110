/* Soak test: a churn with a stable live set, run for a fixed time; RSS must stop growing.
 *   soak [SECONDS [THREADS]]     defaults 60 and 4; SECONDS >= 4
 * Each worker owns a table of slots (8192 small 8..1024 B, 256 medium 1..64 KiB, and one
 * pair of large 128 KiB..4 MiB blocks whose sizes always add up to the same total) and
 * replaces a random slot per step: the old block's pattern is verified, the block freed
 * (or passed on through a shared queue, to be freed by another thread), a new one
 * allocated by malloc, calloc (checked zeroed) or aligned_alloc (checked aligned) and
 * tagged; one step in ten is a realloc instead (the kept prefix is checked). A worker exits
 * after 0.5..1.5 s and a new thread adopts its table, so thread caches are built and given
 * back all the time and every table outlives many threads.
 * The live set is constant by construction (same slot counts and size distributions;
 * the large pair a zero-sum), so after a warm-up a correct allocator's RSS settles. The
 * main thread samples RSS every 250 ms. Verdict: the run after the first 25% is split into
 * thirds; the maximum RSS of the last third must not exceed that of the second third by
 * more than 5% + 1 MiB. A leak or a progressive fragmentation makes RSS climb steadily,
 * so the last third's maximum runs ahead of the second's by the growth over one third.
 * Hidden: SOAK_LEAK=N leaks one small/medium block in N (default 100) instead of freeing
 * it, to prove the verdict catches a leak. SOAK_SEED=N fixes the seed.
 * Output: "# ..." figures, then "ok - soak ..." or "not ok - soak ..."; exit 0 on success,
 * 1 on RSS growth, 2 on corruption or allocation failure, 3 on bad usage. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
/* served_by_ngmalloc(): which allocator serves us, for the record and for ci/soak.sh */
#include "../c-tests/served.h"
#include <unistd.h>

#define NLARGE 2
#define NMEDIUM 256
#define NSMALL 8192
#define NSLOTS (NLARGE + NMEDIUM + NSMALL)
#define LARGE_MIN (128u << 10)
#define LARGE_MAX (4u << 20)
#define MAXW 64
#define QCAP 256
#define SAMPLE_S 0.25
#define MAXSAMPLES (4 * 86400 + 16)
#define MIB (1024.0 * 1024.0)

enum kind { LARGE, MEDIUM, SMALL };

struct block {
	void *p;
	uint64_t tag;
	uint32_t size;
	uint32_t owner; /* uid of the thread that allocated it */
};

struct worker {
	struct block *slot;
	uint64_t rng;
	uint32_t uid;
	int filled;
	double deadline;
	pthread_t th;
	atomic_int done;
	/* written by the worker, read by the sampler */
	_Atomic uint64_t ops_pub, live_pub;
	/* read only after a join */
	uint64_t ops, live, reallocs, callocs, aligned, cross, leaked, leaked_bytes;
} __attribute__((aligned(64)));

static struct worker workers[MAXW];
static int nworkers;
static atomic_int stop;
static _Atomic uint32_t next_uid = 1;
static unsigned leak_every;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static struct block queue[QCAP];
static unsigned qhead, qlen;
static _Atomic uint64_t qbytes;

static struct sample {
	double t;
	uint64_t rss, live, ops;
} samples[MAXSAMPLES];
static int nsamples;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Called from any thread; dprintf formats on the stack, so a broken heap cannot stop the
 * message, and _exit skips atexit work that could hang on a corrupted allocator. */
static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dprintf(1, "not ok - soak: %s\n", msg);
	_exit(2);
}

/* The pattern: little-endian 64-bit words tag ^ index*odd. Every word is written up to
 * 4 KiB; above, one word per 256 bytes (every page still touched, so RSS sees the whole
 * block, and any overlap of two live blocks still lands on a tagged word), then the last
 * whole word and the tail bytes, so the bytes next to the end (where a canary or the next
 * header sits) are always checked. */
static uint64_t word(uint64_t tag, size_t k) { return tag ^ (k * 0xd6e8feb86659fd93ull); }
static size_t stride(size_t n) { return n <= 4096 ? 1 : 32; }

static void fill(unsigned char *p, size_t n, uint64_t tag)
{
	size_t nw = n / 8, st = stride(n), k;
	uint64_t v;
	for (k = 0; k < nw; k += st) {
		v = word(tag, k);
		memcpy(p + 8 * k, &v, 8);
	}
	if (nw) {
		v = word(tag, nw - 1);
		memcpy(p + 8 * (nw - 1), &v, 8);
	}
	v = word(tag, nw);
	for (size_t o = 8 * nw; o < n; o++) p[o] = (unsigned char)(v >> (8 * (o - 8 * nw)));
}

/* Offset of the first wrong byte among those fill(p, n, tag) wrote below limit, or -1. */
static long check(const unsigned char *p, size_t n, uint64_t tag, size_t limit)
{
	size_t nw = n / 8, st = stride(n), k;
	uint64_t v;
	for (k = 0; k < nw && 8 * k + 8 <= limit; k += st) {
		memcpy(&v, p + 8 * k, 8);
		if (v != word(tag, k)) return 8 * k;
	}
	if (nw && 8 * nw <= limit) {
		memcpy(&v, p + 8 * (nw - 1), 8);
		if (v != word(tag, nw - 1)) return 8 * (nw - 1);
	}
	v = word(tag, nw);
	for (size_t o = 8 * nw; o < n && o < limit; o++)
		if (p[o] != (unsigned char)(v >> (8 * (o - 8 * nw)))) return o;
	return -1;
}

static void verify(const struct block *b, const char *where)
{
	long off = check(b->p, b->size, b->tag, b->size);
	if (off >= 0)
		die("pattern mismatch %s: block %p size %u tag %016llx (allocated by thread %u), byte %ld is %02x",
		    where, b->p, b->size, (unsigned long long)b->tag, b->owner, off, ((unsigned char *)b->p)[off]);
}

static enum kind kind_of(size_t i) { return i < NLARGE ? LARGE : i < NLARGE + NMEDIUM ? MEDIUM : SMALL; }

static uint32_t draw(struct worker *w, enum kind k)
{
	uint64_t r = rnd(&w->rng);
	switch (k) {
	case LARGE: return LARGE_MIN + r % (LARGE_MAX - LARGE_MIN + 1);
	case MEDIUM: return 1025 + r % (65536 - 1024);
	default: return r & 1 ? 8 + (r >> 1) % 121 : 129 + (r >> 1) % 896;
	}
}

/* A new tagged block of n bytes from malloc, calloc or aligned_alloc. */
static struct block get(struct worker *w, size_t n, enum kind k)
{
	uint64_t r = rnd(&w->rng);
	struct block b = {.size = n, .owner = w->uid, .tag = rnd(&w->rng) | 1};
	unsigned m = r % 100;
	if (m < 10) {
		b.p = calloc(1, n);
		if (b.p) {
			/* a large block's zeroes are checked at the pattern's points only: reading
			 * every page would cost more than the rest of the step */
			size_t st = n <= 65536 ? 1 : 32;
			const unsigned char *c = b.p;
			uint64_t v;
			for (size_t o = 0; o + 8 <= n; o += 8 * st)
				if (memcpy(&v, c + o, 8), v) die("calloc(%zu) not zeroed at byte %zu", n, o);
			for (size_t o = n & ~(size_t)7; o < n; o++)
				if (c[o]) die("calloc(%zu) not zeroed at byte %zu", n, o);
		}
		w->callocs++;
	} else if (m < 20) {
		size_t align = (size_t)(k == LARGE ? 4096 : 16) << ((r >> 8) % 9);
		b.p = aligned_alloc(align, n);
		if (b.p && (uintptr_t)b.p & (align - 1)) die("aligned_alloc(%zu, %zu) = %p", align, n, b.p);
		w->aligned++;
	} else {
		b.p = malloc(n);
	}
	if (!b.p) die("allocation of %zu bytes failed", n);
	fill(b.p, n, b.tag);
	w->live += n;
	return b;
}

/* Resize a block in place of its slot; the kept prefix must survive. */
static void resize(struct worker *w, struct block *b, size_t n)
{
	void *q = realloc(b->p, n);
	if (!q) die("realloc(%p, %zu) failed", b->p, n);
	size_t keep = n < b->size ? n : b->size;
	long off = check(q, b->size, b->tag, keep);
	if (off >= 0) die("realloc(%p, %u -> %zu) = %p lost byte %ld", b->p, b->size, n, q, off);
	w->live += n - b->size;
	b->p = q;
	b->size = n;
	b->owner = w->uid;
	b->tag = rnd(&w->rng) | 1;
	fill(q, n, b->tag);
	w->reallocs++;
}

/* Give back a small or medium block: leak it (SOAK_LEAK), free it, or push it into the
 * shared queue and free the oldest entry instead, which another thread most likely
 * allocated. The queue stays full once warm, so it adds a constant to the live set. */
static void retire(struct worker *w, struct block b)
{
	verify(&b, "at free");
	w->live -= b.size;
	uint64_t r = rnd(&w->rng);
	if (leak_every && r % leak_every == 0) {
		w->leaked++;
		w->leaked_bytes += b.size;
		return;
	}
	if ((r >> 32) % 8) {
		free(b.p);
		return;
	}
	struct block out = {0};
	pthread_mutex_lock(&qlock);
	if (qlen == QCAP) {
		out = queue[qhead];
		queue[qhead] = b;
		qhead = (qhead + 1) % QCAP;
	} else {
		queue[(qhead + qlen++) % QCAP] = b;
	}
	atomic_store_explicit(&qbytes, atomic_load_explicit(&qbytes, memory_order_relaxed) + b.size - out.size,
			      memory_order_relaxed);
	pthread_mutex_unlock(&qlock);
	if (out.p) {
		verify(&out, "after the queue");
		w->cross += out.owner != w->uid;
		free(out.p);
	}
}

/* The large pair: new sizes a + b = constant, by realloc (the shrinking one first, so the
 * pair never holds more than its total) or by free and allocate. */
static void large_step(struct worker *w)
{
	struct block *a = &w->slot[0], *b = &w->slot[1];
	uint32_t total = a->size + b->size, na = draw(w, LARGE), nb = total - na;
	if (rnd(&w->rng) % 4 == 0) {
		if (na < a->size) {
			resize(w, a, na);
			resize(w, b, nb);
		} else {
			resize(w, b, nb);
			resize(w, a, na);
		}
	} else {
		verify(a, "at free");
		verify(b, "at free");
		w->live -= a->size + b->size;
		free(a->p);
		free(b->p);
		*a = get(w, na, LARGE);
		*b = get(w, nb, LARGE);
	}
}

static void step(struct worker *w)
{
	size_t i = rnd(&w->rng) % NSLOTS;
	enum kind k = kind_of(i);
	if (k == LARGE) {
		large_step(w);
		return;
	}
	uint32_t n = draw(w, k);
	if (rnd(&w->rng) % 10 == 0) {
		resize(w, &w->slot[i], n);
	} else {
		retire(w, w->slot[i]);
		w->slot[i] = get(w, n, k);
	}
}

static void publish(struct worker *w)
{
	atomic_store_explicit(&w->ops_pub, w->ops, memory_order_relaxed);
	atomic_store_explicit(&w->live_pub, w->live, memory_order_relaxed);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	if (!w->filled) {
		/* the pair's total is fixed here for the whole run */
		uint32_t a = draw(w, LARGE);
		w->slot[0] = get(w, a, LARGE);
		w->slot[1] = get(w, LARGE_MIN + LARGE_MAX - a, LARGE);
		for (size_t i = NLARGE; i < NSLOTS; i++) w->slot[i] = get(w, draw(w, kind_of(i)), kind_of(i));
		w->filled = 1;
	}
	for (uint64_t n = 0;; n++) {
		if ((n & 255) == 0) {
			publish(w);
			if (atomic_load_explicit(&stop, memory_order_relaxed) || now() >= w->deadline) break;
		}
		step(w);
		w->ops++;
	}
	publish(w);
	atomic_store(&w->done, 1);
	return 0;
}

static void spawn(struct worker *w, uint64_t *rng)
{
	w->uid = atomic_fetch_add(&next_uid, 1);
	w->deadline = now() + 0.5 + (double)(rnd(rng) % 1000) / 1000;
	atomic_store(&w->done, 0);
	if (pthread_create(&w->th, 0, work, w)) die("pthread_create failed");
}

static uint64_t rss(void)
{
	static int fd = -1;
	char buf[128];
	if (fd < 0) fd = open("/proc/self/statm", O_RDONLY);
	ssize_t r = fd < 0 ? -1 : pread(fd, buf, sizeof buf - 1, 0);
	if (r <= 0) die("cannot read /proc/self/statm");
	buf[r] = 0;
	unsigned long size, res;
	if (sscanf(buf, "%lu %lu", &size, &res) != 2) die("bad /proc/self/statm");
	return (uint64_t)res * sysconf(_SC_PAGESIZE);
}

static uint64_t live_total(void)
{
	uint64_t s = atomic_load_explicit(&qbytes, memory_order_relaxed);
	for (int i = 0; i < nworkers; i++) s += atomic_load_explicit(&workers[i].live_pub, memory_order_relaxed);
	return s;
}

static void sample(double t0)
{
	if (nsamples == MAXSAMPLES) return;
	uint64_t ops = 0;
	for (int i = 0; i < nworkers; i++) ops += atomic_load_explicit(&workers[i].ops_pub, memory_order_relaxed);
	samples[nsamples++] = (struct sample){now() - t0, rss(), live_total(), ops};
}

struct seg {
	const char *name;
	double from, to;
	uint64_t rss_min, rss_max, live_min, live_max;
	double ops_s;
};

static struct seg segment(const char *name, double from, double to)
{
	struct seg s = {name, from, to, UINT64_MAX, 0, UINT64_MAX, 0, 0};
	int first = -1, last = -1;
	for (int i = 0; i < nsamples; i++) {
		struct sample *x = &samples[i];
		if (x->t < from || x->t >= to) continue;
		if (first < 0) first = i;
		last = i;
		if (x->rss < s.rss_min) s.rss_min = x->rss;
		if (x->rss > s.rss_max) s.rss_max = x->rss;
		if (x->live < s.live_min) s.live_min = x->live;
		if (x->live > s.live_max) s.live_max = x->live;
	}
	if (first >= 0 && last > first)
		s.ops_s = (samples[last].ops - samples[first].ops) / (samples[last].t - samples[first].t);
	return s;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 60;
	nworkers = argc > 2 ? atoi(argv[2]) : 4;
	if (seconds < 4 || seconds > 86400 || nworkers < 1 || nworkers > MAXW) {
		fprintf(stderr, "usage: soak [SECONDS (4..86400, default 60) [THREADS (1..%d, default 4)]]\n", MAXW);
		return 3;
	}
	const char *e = getenv("SOAK_LEAK");
	if (e) leak_every = atoi(e) > 0 ? atoi(e) : 100;
	e = getenv("SOAK_SEED");
	uint64_t seed = e ? strtoull(e, 0, 0) : (uint64_t)time(0) ^ ((uint64_t)getpid() << 32);
	setvbuf(stdout, 0, _IOLBF, 0);
	printf("# soak: %g s, %d threads, seed %llu, allocator %s%s\n", seconds, nworkers, (unsigned long long)seed,
	       served_by_ngmalloc() ? "ngmalloc" : "not ngmalloc", leak_every ? ", LEAKING" : "");
	if (leak_every) printf("# SOAK_LEAK: one small/medium block in %u is leaked\n", leak_every);

	uint64_t rng = seed;
	for (int i = 0; i < nworkers; i++) {
		workers[i].slot = calloc(NSLOTS, sizeof(struct block));
		if (!workers[i].slot) die("no memory for the tables");
		workers[i].rng = rnd(&rng);
	}
	uint64_t threads = 0;
	double t0 = now(), next = SAMPLE_S;
	for (int i = 0; i < nworkers; i++, threads++) spawn(&workers[i], &rng);
	/* short ticks, so an exited worker is replaced within 10 ms */
	for (;;) {
		nanosleep(&(struct timespec){0, 10000000}, 0);
		double t = now() - t0;
		if (t >= next) {
			sample(t0);
			next += SAMPLE_S;
		}
		if (t >= seconds) break;
		for (int i = 0; i < nworkers; i++)
			if (atomic_load(&workers[i].done)) {
				pthread_join(workers[i].th, 0);
				spawn(&workers[i], &rng);
				threads++;
			}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < nworkers; i++) pthread_join(workers[i].th, 0);
	double elapsed = now() - t0;
	uint64_t rss_end = rss(), live_end = live_total();

	struct worker sum = {0};
	for (int i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];
		sum.ops += w->ops, sum.reallocs += w->reallocs, sum.callocs += w->callocs, sum.aligned += w->aligned;
		sum.cross += w->cross, sum.leaked += w->leaked, sum.leaked_bytes += w->leaked_bytes;
	}
	/* everything must still hold its pattern; then freeing it all shows what is given back */
	for (int i = 0; i < nworkers; i++) {
		for (size_t j = 0; j < NSLOTS; j++) {
			verify(&workers[i].slot[j], "at the end");
			free(workers[i].slot[j].p);
		}
		free(workers[i].slot);
	}
	for (unsigned i = 0; i < qlen; i++) {
		verify(&queue[(qhead + i) % QCAP], "at the end");
		free(queue[(qhead + i) % QCAP].p);
	}
	uint64_t rss_freed = rss();

	double warm = 0.25 * seconds, third = (seconds - warm) / 3;
	struct seg segs[4] = {
		segment("warm-up", 0, warm),
		segment("third 1", warm, warm + third),
		segment("third 2", warm + third, warm + 2 * third),
		segment("third 3", warm + 2 * third, seconds + 1),
	};
	printf("# %-8s %13s %21s %21s %10s\n", "segment", "time (s)", "RSS min..max (MiB)", "live min..max (MiB)", "ops/s");
	for (int i = 0; i < 4; i++)
		printf("# %-8s %6.1f..%5.1f %10.1f..%-9.1f %10.1f..%-9.1f %10.0f\n", segs[i].name, segs[i].from,
		       i == 3 ? elapsed : segs[i].to, segs[i].rss_min / MIB, segs[i].rss_max / MIB,
		       segs[i].live_min / MIB, segs[i].live_max / MIB, segs[i].ops_s);
	/* the least-squares slope after the warm-up: for the record, not part of the verdict */
	double n = 0, st = 0, sr = 0, stt = 0, str = 0;
	for (int i = 0; i < nsamples; i++)
		if (samples[i].t >= warm) {
			double t = samples[i].t, r = samples[i].rss / MIB;
			n++, st += t, sr += r, stt += t * t, str += t * r;
		}
	double slope = n > 1 ? (n * str - st * sr) / (n * stt - st * st) : 0;
	printf("# RSS: end %.1f MiB, after freeing everything %.1f MiB; live set %.1f MiB (RSS/live %.2f); "
	       "slope after warm-up %+.3f MiB/s\n",
	       rss_end / MIB, rss_freed / MIB, live_end / MIB, (double)rss_end / live_end, slope);
	printf("# ops: %llu (%.0f/s), reallocs %llu, callocs %llu, aligned %llu, cross-thread frees %llu, threads %llu\n",
	       (unsigned long long)sum.ops, sum.ops / elapsed, (unsigned long long)sum.reallocs,
	       (unsigned long long)sum.callocs, (unsigned long long)sum.aligned, (unsigned long long)sum.cross,
	       (unsigned long long)threads);
	if (leak_every)
		printf("# leaked: %llu blocks, %.1f MiB (%.2f MiB/s)\n", (unsigned long long)sum.leaked,
		       sum.leaked_bytes / MIB, sum.leaked_bytes / MIB / elapsed);

	if (segs[2].rss_max == 0 || segs[3].rss_max == 0) die("too few samples");
	double limit = segs[2].rss_max * 1.05 + MIB;
	int grew = segs[3].rss_max > limit;
	printf("%s - soak %gs %d threads: %s: last-third max RSS %.1f MiB %s limit %.1f MiB "
	       "(second-third max %.1f MiB + 5%% + 1 MiB)\n",
	       grew ? "not ok" : "ok", seconds, nworkers, grew ? "RSS grew" : "RSS stable", segs[3].rss_max / MIB,
	       grew ? ">" : "<=", limit / MIB, segs[2].rss_max / MIB);
	return grew;
}
