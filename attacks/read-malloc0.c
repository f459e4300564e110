#include "attack.h"
int main(void) { char *p = malloc(0); return peek(p) == 0x7f; }
