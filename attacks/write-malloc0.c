#include "attack.h"
int main(void) { char *p = malloc(0); smash(p); free(p); return 0; }
