#include "attack.h"
int main(void) { _Alignas(16) char buf[256]; memset(buf, 0, sizeof buf); free(buf + 64); return 0; }
