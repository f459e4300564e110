#include "attack.h"
int main(void) { char *p = malloc(LARGE); poke(p - 4097, 1); return 0; }
