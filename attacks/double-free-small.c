#include "attack.h"
int main(void) { char *p = malloc(32); sink = malloc(32); free(p); free(p); return 0; }
