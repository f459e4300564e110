#include "attack.h"
int main(void) { char *p = malloc(LARGE); free(p); free(p); return 0; }
