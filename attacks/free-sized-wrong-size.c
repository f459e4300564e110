#include "attack.h"
int main(void) { char *p = malloc(32); free_sized(p, 16); return 0; }
