#include "attack.h"
int main(void) { char *p = malloc(LARGE); char *q = realloc(p, 4 * LARGE); poke(q + 4 * LARGE + 4096, 1); return 0; }
