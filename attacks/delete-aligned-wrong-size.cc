/* C++ aligned sized delete with the wrong size (a small over-aligned object) */
#include <new>
struct alignas(64) S { char x[24]; };
static void *volatile sink;
int main()
{
	S *p = new S;
	sink = p;
	operator delete(p, sizeof(S) + 64, std::align_val_t(alignof(S)));
	return 0;
}
