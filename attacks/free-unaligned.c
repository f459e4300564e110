#include "attack.h"
int main(void) { char *p = malloc(64); free(p + 1); return 0; }
