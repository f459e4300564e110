#include "attack.h"
/* a write through a stale pointer, noticed (if at all) when the slot is handed out again
 * while the program goes on allocating and freeing */
int main(void)
{
	char *keep = malloc(64), *p = malloc(64);
	free(p);
	memset(p, 'A', 8);
	for (int i = 0; i < 200; i++) {
		char *q = malloc(64);
		sink = q;
		free(q);
	}
	sink = keep;
	return 0;
}
