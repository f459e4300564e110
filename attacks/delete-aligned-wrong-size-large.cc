/* C++ aligned sized delete with the wrong size (a large over-aligned object) */
#include <new>
struct alignas(8192) S { char x[9000]; };
static void *volatile sink;
int main()
{
	S *p = new S;
	sink = p;
	operator delete(p, sizeof(S) - 10, std::align_val_t(alignof(S)));
	return 0;
}
