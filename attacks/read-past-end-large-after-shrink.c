#include "attack.h"
int main(void) { char *p = malloc(4 * LARGE); char *q = realloc(p, LARGE); return peek(q + LARGE + 4096) == 0x7f; }
