#include "attack.h"
/* realloc moved the block: freeing the old pointer is a double free */
int main(void) { char *p = malloc(32); sink = malloc(32); char *q = realloc(p, 5000); sink = q; free(p); return 0; }
