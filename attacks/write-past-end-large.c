#include "attack.h"
int main(void) { char *p = malloc(LARGE); poke(p + LARGE + 32, 1); return 0; }
