#include "attack.h"
int main(void) { char *p = malloc(256); free(p + 64); return 0; }
