#include "attack.h"
int main(void) { char *p = malloc(LARGE + 8); poke(p + LARGE + 8, 0); free(p); return 0; }
