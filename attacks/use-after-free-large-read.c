#include "attack.h"
int main(void) { char *p = malloc(LARGE); memset(p, 1, LARGE); free(p); return peek(p + 100) == 0x7f; }
