#include "attack.h"
int main(void) { char *p = aligned_alloc(64, 64); free_aligned_sized(p, 64, 128); return 0; }
