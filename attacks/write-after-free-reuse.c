#include "attack.h"
/* a write through a stale pointer, noticed (if at all) when the slot is handed out again */
int main(void)
{
	char *p = malloc(64);
	free(p);
	memset(p, 'A', 8);
	for (int i = 0; i < 64; i++) sink = malloc(64);
	return 0;
}
