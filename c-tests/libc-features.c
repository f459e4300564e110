/* musl outside malloc: stdio, locale, pthread, time, regex, search, string functions,
 * many of which allocate. Prints deterministic results; the test runs the same program on
 * the ngmalloc sysroot and on a stock musl build of the same version and requires
 * identical output. */
#define _GNU_SOURCE
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
static int scmp(const void *a, const void *b) { return strcmp(a, b); }

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_key_t key;
static long counter, destroyed;
static void destroy(void *p) { pthread_mutex_lock(&mu); destroyed++; pthread_mutex_unlock(&mu); free(p); }

static void *work(void *arg)
{
	pthread_setspecific(key, malloc(100 + (long)arg));
	for (int i = 0; i < 10000; i++) {
		pthread_mutex_lock(&mu);
		counter++;
		if (counter == 40000) pthread_cond_signal(&cv);
		pthread_mutex_unlock(&mu);
	}
	return 0;
}

int main(void)
{
	char buf[256];
	/* stdio */
	snprintf(buf, sizeof buf, "%d %8.3f %s %#x %.4e %-5s|", 42, 3.14159, "str", 255, 12345.678, "ab");
	puts(buf);
	char *ms = 0;
	size_t msn = 0;
	FILE *f = open_memstream(&ms, &msn);
	for (int i = 0; i < 5000; i++) fprintf(f, "%d,", i * i);
	fclose(f);
	printf("open_memstream: %zu bytes, ends %s\n", msn, ms + msn - 9);
	free(ms);
	FILE *t = tmpfile();
	for (int i = 0; i < 300; i++) fprintf(t, "line %d %s\n", i, i % 7 ? "x" : "a much longer line to make getline grow its buffer a few times");
	rewind(t);
	char *line = 0;
	size_t cap = 0, lines = 0, chars = 0;
	ssize_t r;
	while ((r = getline(&line, &cap, t)) > 0) { lines++; chars += r; }
	printf("getline: %zu lines, %zu chars\n", lines, chars);
	free(line);
	fclose(t);
	char *as;
	if (asprintf(&as, "%s-%d-%lld", "asprintf", 7, 1LL << 40) > 0) { puts(as); free(as); }

	/* locale and wide characters */
	printf("setlocale C.UTF-8: %s\n", setlocale(LC_ALL, "C.UTF-8") ? "ok" : "failed");
	wchar_t w[32];
	size_t nw = mbstowcs(w, "h\xc3\xa9llo w\xc3\xb6rld", 32);
	char back[64];
	size_t nb = wcstombs(back, w, sizeof back);
	printf("mbstowcs: %zu wide, %zu bytes back, same: %d\n", nw, nb, strcmp(back, "h\xc3\xa9llo w\xc3\xb6rld") == 0);

	/* threads */
	pthread_key_create(&key, destroy);
	pthread_t th[4];
	for (long i = 0; i < 4; i++) pthread_create(&th[i], 0, work, (void *)i);
	pthread_mutex_lock(&mu);
	while (counter < 40000) pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < 4; i++) pthread_join(th[i], 0);
	printf("threads: counter %ld, TLS destructors %ld\n", counter, destroyed);

	/* time */
	time_t when = 1700000000;
	struct tm tm;
	gmtime_r(&when, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %a %j", &tm);
	printf("time: %s, timegm round trip: %d\n", buf, timegm(&tm) == when);

	/* regex, search, sort, strings */
	regex_t re;
	regmatch_t m[2];
	int rc = regcomp(&re, "a([bc]+)d", REG_EXTENDED);
	int hit = !rc && !regexec(&re, "xxabcbcdyy", 2, m, 0);
	printf("regex: compiled %d, match %d at %d-%d\n", !rc, hit, (int)m[1].rm_so, (int)m[1].rm_eo);
	regfree(&re);
	void *root = 0;
	char names[100][8];
	for (int i = 0; i < 100; i++) { snprintf(names[i], 8, "k%03d", (i * 37) % 100); tsearch(names[i], &root, scmp); }
	char **found = tfind("k042", &root, scmp);
	printf("tsearch: found %s\n", found ? *found : "nothing");
	for (int i = 0; i < 100; i++) tdelete(names[i], &root, scmp);
	int *a = malloc(10000 * sizeof *a);
	for (int i = 0; i < 10000; i++) a[i] = (i * 7919) % 10007;
	qsort(a, 10000, sizeof *a, cmp);
	printf("qsort: %d %d %d\n", a[0], a[5000], a[9999]);
	free(a);
	char *d = strdup("duplicate me"), *nd = strndup("truncate here", 8);
	printf("strdup: %s / %s\n", d, nd);
	free(d);
	free(nd);
	return 0;
}
