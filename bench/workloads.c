/* The benchmark harness's workloads (bench/README.md), one program for every allocator:
 * it is compiled against each (static musl, glibc, glibc + LD_PRELOAD) from this source.
 *
 * Usage: workloads NAME [SCALE [THREADS]]
 *   NAME     tree | server | prodcons | local | orders | large | return | frag
 *   SCALE    multiplies every iteration count and size budget (1 = the full run)
 *   THREADS  for server, prodcons (even) and local
 *
 * Prints one line of key=value pairs: always "check=" (a value computed from the data the
 * workload wrote and read back: identical for every allocator, so a broken allocator or a
 * skipped step shows), plus the workload's own figures (RSS after freeing, peak live bytes).
 * Every run is deterministic for a given NAME, SCALE and THREADS (fixed seeds; the
 * interleaving of threads varies, the work does not). Exit status 0, or 1 with a message. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double scale = 1;
static int nthreads = 1;

static void die(const char *what)
{
	fprintf(stderr, "workloads: %s\n", what);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) die("out of memory");
	return p;
}

static long scaled(double n)
{
	long v = (long)(n * scale);
	return v > 0 ? v : 1;
}

/* xorshift64*: fast, deterministic, one per thread */
typedef struct { uint64_t s; } rng;
static uint64_t next(rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1DULL;
}
static uint64_t below(rng *r, uint64_t n) { return (next(r) >> 11) % n; }
/* log-uniform in [lo, hi]: as many blocks in 16-32 B as in 2-4 KiB, like real programs */
static size_t logsize(rng *r, size_t lo, size_t hi)
{
	int blo = 63 - __builtin_clzll(lo), bhi = 63 - __builtin_clzll(hi);
	int b = blo + (int)below(r, (uint64_t)(bhi - blo + 1));
	size_t base = (size_t)1 << b, n = base + below(r, base);
	return n < lo ? lo : n > hi ? hi : n;
}

/* Programs write what they allocate: stamp the first and last word (or byte). */
static void stamp(void *p, size_t n, uint64_t v)
{
	if (n >= 16) {
		memcpy(p, &v, 8);
		memcpy((char *)p + n - 8, &v, 8);
	} else {
		memset(p, (int)v, n);
	}
}
static uint64_t readback(const void *p, size_t n)
{
	uint64_t v = 0;
	if (n >= 16) {
		uint64_t a, b;
		memcpy(&a, p, 8);
		memcpy(&b, (const char *)p + n - 8, 8);
		v = a ^ (b >> 1);
	} else {
		v = ((const unsigned char *)p)[n - 1];
	}
	return v;
}

/* Resident and peak resident set from /proc (works under every libc, static or not). */
static long status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t k = strlen(key);
	if (!f) return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, k) && line[k] == ':') {
			v = strtol(line + k + 1, 0, 10);
			break;
		}
	fclose(f);
	return v;
}

static void spawn_all(void *(*fn)(void *), void *args, size_t argsize, int n)
{
	pthread_t *t = xmalloc(sizeof *t * (size_t)n);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], 0, fn, (char *)args + (size_t)i * argsize)) die("pthread_create");
	for (int i = 0; i < n; i++) pthread_join(t[i], 0);
	free(t);
}

/* 1. tree: expression trees with big-integer temporaries. Each node allocates a node and a
 * temporary "digit buffer" freed before it returns, children are freed before their parent
 * (LIFO), and one tree in eight outlives the next one (the non-LIFO rest). */
struct node { struct node *l, *r; size_t n; uint64_t v; };

static struct node *build(rng *r, int depth)
{
	size_t n = sizeof(struct node) + logsize(r, 8, 96);
	struct node *t = xmalloc(n);
	size_t dn = logsize(r, 16, 512);
	uint64_t *digits = xmalloc(dn);
	stamp(digits, dn, next(r));
	t->n = n;
	t->l = depth > 0 && below(r, 8) ? build(r, depth - 1) : 0;
	t->r = depth > 0 && below(r, 8) ? build(r, depth - 1) : 0;
	t->v = readback(digits, dn) + (t->l ? t->l->v : 0) + (t->r ? t->r->v * 3 : 0);
	free(digits);
	return t;
}

static void drop(struct node *t)
{
	if (!t) return;
	drop(t->l);
	drop(t->r);
	free(t);
}

static uint64_t w_tree(void)
{
	rng r = { 1 };
	uint64_t check = 0;
	struct node *kept = 0;
	for (long i = scaled(6000); i--;) {
		struct node *t = build(&r, 10);
		check += t->v;
		if (!below(&r, 8)) {
			drop(kept);
			kept = t;
		} else {
			drop(t);
		}
	}
	drop(kept);
	return check;
}

/* 2. server: each thread owns an array of slots, frees a random slot and allocates a random
 * size (8 B - 1 KiB) into it. The work runs in rounds; at each round new threads start and
 * each takes over the array of another thread of the previous round, so most frees are of
 * blocks a thread did not allocate (and whose allocating thread has exited). */
#define SERVER_SLOTS 2000
struct server_arg { void **slots; size_t *sizes; long ops; uint64_t seed, check; };

static void *server_thread(void *p)
{
	struct server_arg *a = p;
	rng r = { a->seed };
	for (long i = 0; i < a->ops; i++) {
		size_t k = below(&r, SERVER_SLOTS);
		if (a->slots[k]) {
			a->check += readback(a->slots[k], a->sizes[k]);
			free(a->slots[k]);
		}
		size_t n = 8 + below(&r, 1017);
		a->slots[k] = xmalloc(n);
		a->sizes[k] = n;
		stamp(a->slots[k], n, i);
	}
	return 0;
}

static uint64_t w_server(void)
{
	enum { ROUNDS = 16 };
	int n = nthreads;
	void **slots = calloc((size_t)n * SERVER_SLOTS, sizeof *slots);
	size_t *sizes = calloc((size_t)n * SERVER_SLOTS, sizeof *sizes);
	struct server_arg *a = calloc((size_t)n, sizeof *a);
	uint64_t check = 0;
	if (!slots || !sizes || !a) die("out of memory");
	long ops = scaled(8e6) / ROUNDS / n;
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < n; i++) {
			int arr = (i + round) % n; /* hand the arrays on */
			a[i] = (struct server_arg){ slots + (size_t)arr * SERVER_SLOTS, sizes + (size_t)arr * SERVER_SLOTS,
				ops, (uint64_t)(round * 1000 + i + 1), 0 };
		}
		spawn_all(server_thread, a, sizeof *a, n);
		for (int i = 0; i < n; i++) check += a[i].check;
	}
	for (size_t k = 0; k < (size_t)n * SERVER_SLOTS; k++) free(slots[k]);
	free(slots);
	free(sizes);
	free(a);
	return check;
}

/* 3. prodcons: half the threads allocate and fill blocks (16-512 B), the other half check
 * and free them: every free is remote. One single-producer single-consumer ring per pair. */
#define RING 1024
struct ring {
	_Alignas(64) _Atomic size_t head;
	_Alignas(64) _Atomic size_t tail;
	_Alignas(64) void *item[RING];
	long items;
	uint64_t seed, check;
};

static void *producer(void *p)
{
	struct ring *q = p;
	rng r = { q->seed };
	size_t head = 0;
	for (long i = 0; i < q->items; i++) {
		size_t n = 16 + below(&r, 497);
		uint64_t *b = xmalloc(n);
		b[0] = n;
		b[1] = (uint64_t)i;
		while (head - atomic_load_explicit(&q->tail, memory_order_acquire) == RING) sched_yield();
		q->item[head % RING] = b;
		atomic_store_explicit(&q->head, ++head, memory_order_release);
	}
	return 0;
}

static void *consumer(void *p)
{
	struct ring *q = p;
	size_t tail = 0;
	uint64_t check = 0;
	for (long i = 0; i < q->items; i++) {
		while (atomic_load_explicit(&q->head, memory_order_acquire) == tail) sched_yield();
		uint64_t *b = q->item[tail % RING];
		atomic_store_explicit(&q->tail, ++tail, memory_order_release);
		check += b[0] ^ b[1];
		free(b);
	}
	q->check = check;
	return 0;
}

static void *prodcons_thread(void *p)
{
	/* even thread numbers produce into ring i/2, odd ones consume from it */
	struct { struct ring *q; int role; } *a = p;
	return a->role ? consumer(a->q) : producer(a->q);
}

static uint64_t w_prodcons(void)
{
	if (nthreads < 2 || nthreads % 2) die("prodcons needs an even number of threads");
	int pairs = nthreads / 2;
	struct ring *q = aligned_alloc(64, sizeof *q * (size_t)pairs);
	struct { struct ring *q; int role; } *a = calloc((size_t)nthreads, sizeof *a);
	uint64_t check = 0;
	if (!q || !a) die("out of memory");
	for (int i = 0; i < pairs; i++) {
		memset(&q[i], 0, sizeof q[i]);
		q[i].items = scaled(2e6) / pairs;
		q[i].seed = (uint64_t)i + 7;
	}
	for (int i = 0; i < nthreads; i++) {
		a[i].q = &q[i / 2];
		a[i].role = i % 2;
	}
	spawn_all(prodcons_thread, a, sizeof *a, nthreads);
	for (int i = 0; i < pairs; i++) check += q[i].check;
	free(q);
	free(a);
	return check;
}

/* 4. local: every thread allocates small blocks (16-256 B) in batches of 8 and frees them;
 * nothing is shared. */
struct local_arg { long rounds; uint64_t seed, check; };

static void *local_thread(void *p)
{
	struct local_arg *a = p;
	rng r = { a->seed };
	void *b[8];
	size_t n[8];
	for (long i = 0; i < a->rounds; i++) {
		for (int k = 0; k < 8; k++) {
			n[k] = 16 + below(&r, 241);
			b[k] = xmalloc(n[k]);
			stamp(b[k], n[k], (uint64_t)k);
		}
		for (int k = 0; k < 8; k++) {
			a->check += readback(b[k], n[k]);
			free(b[k]);
		}
	}
	return 0;
}

static uint64_t w_local(void)
{
	struct local_arg *a = calloc((size_t)nthreads, sizeof *a);
	uint64_t check = 0;
	if (!a) die("out of memory");
	for (int i = 0; i < nthreads; i++) a[i] = (struct local_arg){ scaled(6e5) / nthreads, (uint64_t)i + 3, 0 };
	spawn_all(local_thread, a, sizeof *a, nthreads);
	for (int i = 0; i < nthreads; i++) check += a[i].check;
	free(a);
	return check;
}

/* 5. orders: allocate many blocks of varying size (8 B - 4 KiB), free them in allocation
 * order; again, in reverse order; again, in random order. */
static uint64_t w_orders(void)
{
	long n = scaled(150000);
	void **b = xmalloc(sizeof *b * (size_t)n);
	size_t *len = xmalloc(sizeof *len * (size_t)n);
	long *perm = xmalloc(sizeof *perm * (size_t)n);
	rng r = { 5 };
	uint64_t check = 0;
	for (long i = 0; i < n; i++) perm[i] = i;
	for (long i = n - 1; i > 0; i--) {
		long j = (long)below(&r, (uint64_t)i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int rep = 0; rep < 2; rep++)
		for (int order = 0; order < 3; order++) {
			for (long i = 0; i < n; i++) {
				len[i] = logsize(&r, 8, 4096);
				b[i] = xmalloc(len[i]);
				stamp(b[i], len[i], (uint64_t)i);
			}
			for (long i = 0; i < n; i++) {
				long k = order == 0 ? i : order == 1 ? n - 1 - i : perm[i];
				check += readback(b[k], len[k]);
				free(b[k]);
			}
		}
	free(b);
	free(len);
	free(perm);
	return check;
}

/* 6. large: blocks of 64 KiB - 4 MiB allocated and freed (8 live, one byte written per
 * page: programs use their big buffers), then a buffer grown by realloc from 1 KiB to
 * 64 MiB in steps of an eighth, the new part written each time. */
static uint64_t touch_pages(char *p, size_t from, size_t to, uint64_t v)
{
	uint64_t s = 0;
	for (size_t i = from; i < to; i += 4096) {
		p[i] = (char)(v + i);
		s += (unsigned char)p[i];
	}
	return s;
}

static uint64_t w_large(void)
{
	rng r = { 6 };
	void *live[8] = { 0 };
	size_t len[8] = { 0 };
	uint64_t check = 0;
	for (long i = scaled(2500); i--;) {
		int k = (int)below(&r, 8);
		if (live[k]) {
			check += (unsigned char)((char *)live[k])[0];
			free(live[k]);
		}
		len[k] = logsize(&r, 65536, 4 << 20);
		live[k] = xmalloc(len[k]);
		check += touch_pages(live[k], 0, len[k], (uint64_t)i);
	}
	for (int k = 0; k < 8; k++) free(live[k]);
	size_t cap_max = (size_t)scaled(64 << 20);
	for (int rep = 0; rep < 6; rep++) {
		size_t cap = 1024;
		char *buf = xmalloc(cap);
		memset(buf, rep, cap);
		while (cap < cap_max) {
			size_t grown = cap + cap / 8;
			char *nb = realloc(buf, grown);
			if (!nb) die("out of memory");
			buf = nb;
			if (buf[cap - 1] != (char)rep) die("realloc lost the contents");
			memset(buf + cap, rep, grown - cap);
			cap = grown;
		}
		check += (unsigned char)buf[cap / 2] + cap;
		free(buf);
	}
	return check;
}

/* 7. return: allocate about 1 GiB in mixed sizes (most blocks small, most bytes in
 * medium and large ones), every byte written, free everything in random order, and report
 * the resident set before, after, and 1.1 s after with one more call. */
static uint64_t w_return(void)
{
	size_t budget = (size_t)scaled(1 << 30), total = 0;
	long cap = 1 << 16, n = 0;
	void **b = xmalloc(sizeof *b * (size_t)cap);
	rng r = { 7 };
	uint64_t check = 0;
	long base = status_kib("VmRSS");
	while (total < budget) {
		uint64_t c = below(&r, 100);
		size_t len = c < 90 ? 16 + below(&r, 1009) : c < 99 ? logsize(&r, 1024, 65536) : logsize(&r, 65536, 1 << 20);
		if (n == cap) {
			cap *= 2;
			b = realloc(b, sizeof *b * (size_t)cap);
			if (!b) die("out of memory");
		}
		b[n] = xmalloc(len);
		memset(b[n], (int)n, len);
		check += len;
		total += len;
		n++;
	}
	long full = status_kib("VmRSS");
	for (long i = n - 1; i > 0; i--) {
		long j = (long)below(&r, (uint64_t)i + 1);
		void *t = b[i];
		b[i] = b[j];
		b[j] = t;
	}
	for (long i = 0; i < n; i++) free(b[i]);
	free(b);
	long after = status_kib("VmRSS");
	/* an allocator that gives memory back after a delay, checked on its calls, has done
	 * so 1.1 s later once the program calls it again */
	struct timespec pause = { 1, 100000000 };
	nanosleep(&pause, 0);
	free(xmalloc(64));
	long settled = status_kib("VmRSS");
	printf("rss_base_kib=%ld rss_full_kib=%ld rss_after_free_kib=%ld rss_settled_kib=%ld blocks=%ld ", base,
	       full, after, settled, n);
	return check;
}

/* 8. frag: churn through many blocks (16 B - 4 KiB) of which a random 10% stay live (the
 * other 90% are freed after a short while); four times during the run a random half of the
 * survivors is freed. Reports the peak resident set over the peak of live bytes. */
static uint64_t w_frag(void)
{
	enum { WINDOW = 1024 };
	long n = scaled(2.4e6), nkept = 0;
	void **kept = xmalloc(sizeof *kept * (size_t)(n / 5 + 16));
	size_t *kept_len = xmalloc(sizeof *kept_len * (size_t)(n / 5 + 16));
	void *win[WINDOW] = { 0 };
	size_t win_len[WINDOW] = { 0 };
	size_t live = 0, peak = 0;
	rng r = { 8 };
	uint64_t check = 0;
	for (long i = 0; i < n; i++) {
		int w = (int)(i % WINDOW);
		if (win[w]) {
			if (below(&r, 10) == 0) {
				kept[nkept] = win[w];
				kept_len[nkept++] = win_len[w];
			} else {
				check += readback(win[w], win_len[w]);
				free(win[w]);
				live -= win_len[w];
			}
		}
		win_len[w] = logsize(&r, 16, 4096);
		win[w] = xmalloc(win_len[w]);
		memset(win[w], (int)i, win_len[w]);
		live += win_len[w];
		if (live > peak) peak = live;
		if (i % (n / 5 + 1) == n / 5) { /* free a random half of the survivors */
			long k = 0;
			for (long j = 0; j < nkept; j++)
				if (below(&r, 2)) {
					free(kept[j]);
					live -= kept_len[j];
				} else {
					kept[k] = kept[j];
					kept_len[k++] = kept_len[j];
				}
			nkept = k;
		}
	}
	long hwm = status_kib("VmHWM");
	for (int w = 0; w < WINDOW; w++) free(win[w]);
	for (long j = 0; j < nkept; j++) free(kept[j]);
	free(kept);
	free(kept_len);
	printf("peak_live_kib=%zu peak_rss_kib=%ld rss_over_live=%.3f ", peak / 1024, hwm,
		(double)hwm * 1024 / (double)peak);
	return check;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; uint64_t (*fn)(void); } w[] = {
		{ "tree", w_tree }, { "server", w_server }, { "prodcons", w_prodcons }, { "local", w_local },
		{ "orders", w_orders }, { "large", w_large }, { "return", w_return }, { "frag", w_frag },
	};
	if (argc < 2) die("usage: workloads NAME [SCALE [THREADS]]");
	if (argc > 2) scale = strtod(argv[2], 0);
	if (argc > 3) nthreads = atoi(argv[3]);
	if (!(scale > 0) || nthreads < 1 || nthreads > 256) die("bad SCALE or THREADS");
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
		if (!strcmp(argv[1], w[i].name)) {
			uint64_t c = w[i].fn();
			printf("hwm_kib=%ld check=%llu\n", status_kib("VmHWM"), (unsigned long long)c);
			return 0;
		}
	die("unknown workload");
}
