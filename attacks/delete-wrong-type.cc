/* C++ delete through a pointer of the wrong type: the sized delete the compiler calls
 * passes that type's size, not the size allocated (libstdc++'s operator drops it) */
#include <cstdint>
struct Big { std::uint64_t a, b, c, d; };
static void *volatile sink;
int main()
{
	char *p = new char;
	sink = p;
	delete reinterpret_cast<Big *>(p);
	return 0;
}
