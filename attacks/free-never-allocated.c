#include "attack.h"
/* a pointer into the heap's own memory that malloc never returned, behind a forged
 * all-zero header */
int main(void) { char *q = calloc(1, 8192); free(q + 4096); return 0; }
