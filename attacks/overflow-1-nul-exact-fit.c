#include "attack.h"
/* the block fills its slot: the terminator lands in the next slot's header */
int main(void) { char *p = malloc(28); sink = malloc(28); poke(p + 28, 0); free(p); return 0; }
