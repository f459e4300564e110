/* dlopen/dlsym/dlclose and dlerror (whose message buffers musl allocates and frees with
 * the internal free). Dynamic: argv[1] is the plugin to load. Static (argc == 1): dlopen
 * must fail with a message. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "served.h"

static int passed, failed;
static void check(int c, const char *name) { c ? passed++ : failed++; printf("%s - %s\n", c ? "ok" : "not ok", name); }

int main(int argc, char **argv)
{
	check(served_by_ngmalloc(), "served by ngmalloc");
	if (argc > 1) {
		int good = 1;
		for (int i = 0; i < 100; i++) {
			void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
			char *(*make)(int) = h ? (char *(*)(int))dlsym(h, "plugin_make") : 0;
			char *s = make ? make(i) : 0;
			char want[32];
			snprintf(want, sizeof want, "plugin %d", i);
			if (!s || strcmp(s, want)) good = 0;
			free(s);
			if (!h || dlclose(h)) good = 0;
		}
		check(good, "dlopen/dlsym/dlclose a plugin 100 times, freeing what it allocates");
	}
	int good = 1;
	for (int i = 0; i < 1000; i++) {
		void *h = dlopen("/nonexistent/libnothing.so", RTLD_NOW);
		const char *e = dlerror();
		if (h || !e || !*e) good = 0;
		if (dlerror()) good = 0; /* the error is consumed */
	}
	check(good, "dlopen failures report through dlerror, 1000 times");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
