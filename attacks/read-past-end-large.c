#include "attack.h"
int main(void) { char *p = malloc(LARGE); return peek(p + LARGE + 32) == 0x7f; }
