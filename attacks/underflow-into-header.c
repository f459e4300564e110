#include "attack.h"
int main(void) { char *p = malloc(32); smash(p - 1); free(p); return 0; }
