#include "attack.h"
int main(void) { char *p = malloc(20); smash(p + 20); free(p); return 0; }
