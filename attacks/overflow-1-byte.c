#include "attack.h"
int main(void) { char *p = malloc(20); poke(p + 20, 'A'); free(p); return 0; }
