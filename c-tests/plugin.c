/* A shared library loaded with dlopen by dlopen.c: allocates in its constructor and
 * hands allocated strings to the program, which frees them. */
#include <stdio.h>
#include <stdlib.h>

static char *keep;

__attribute__((constructor)) static void init(void) { keep = malloc(1000); }
__attribute__((destructor)) static void fini(void) { free(keep); }

char *plugin_make(int i)
{
	char *s = malloc(64);
	if (s) snprintf(s, 64, "plugin %d", i);
	return s;
}
