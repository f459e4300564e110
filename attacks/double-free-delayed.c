#include "attack.h"
/* the slot was handed out again in between: the stale pointer now points into a live block */
int main(void)
{
	char *p = malloc(48), *keep[64];
	free(p);
	for (int i = 0; i < 64; i++) keep[i] = malloc(48);
	free(p);
	sink = keep;
	return 0;
}
