#include "attack.h"
int main(void) { char *p = malloc(LARGE); free(p); poke(p + 100, 1); return 0; }
