#include "attack.h"
int main(void) { char *p = malloc(20000); sink = malloc(20000); free(p); free(p); return 0; }
