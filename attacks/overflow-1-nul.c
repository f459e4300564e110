#include "attack.h"
/* the classic off-by-one string terminator */
int main(void) { char *p = malloc(20); poke(p + 20, 0); free(p); return 0; }
