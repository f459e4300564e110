#include "attack.h"
int main(void) { char *p = malloc(32); sink = malloc(32); free(p); sink = realloc(p, 64); return 0; }
