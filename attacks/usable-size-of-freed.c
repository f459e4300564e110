#include "attack.h"
int main(void) { char *p = malloc(32); sink = malloc(32); free(p); return malloc_usable_size(p) == 12345; }
