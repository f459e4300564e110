#include "attack.h"
int main(void) { char *p = malloc(32); poke(p - 1, 0x41); free(p); return 0; }
