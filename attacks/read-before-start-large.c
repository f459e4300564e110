#include "attack.h"
int main(void) { char *p = malloc(LARGE); return peek(p - 4097) == 0x7f; }
