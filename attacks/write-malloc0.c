#include "attack.h"
int main(void) { char *p = malloc(0); poke(p, 'A'); free(p); return 0; }
