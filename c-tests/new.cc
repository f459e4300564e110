// C++'s operator new and delete on the standalone library (standalone/new.cc): every form
// served by ngmalloc, correct sized and aligned deletes accepted, C++'s out-of-memory
// contract kept (the new-handler called until it gives up, then std::bad_alloc; null from
// the nothrow forms). Run linked with libngmalloc.a and under LD_PRELOAD; one line per check.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <malloc.h>
#include <memory>
#include <new>
#include <string>
#include <vector>

static int fails;
static void check(bool ok, const char *what)
{
	std::printf("%s - %s\n", ok ? "ok" : "not ok", what);
	fails += !ok;
}

struct alignas(64) A64 { char x[100]; };
struct alignas(8192) A8K { char x[9000]; };
struct Counted {
	static int live;
	std::uint64_t v[3];
	Counted() { live++; }
	~Counted() { live--; }
};
int Counted::live;

static int calls;
static void give_up_third_time()
{
	if (++calls == 3) std::set_new_handler(nullptr);
}
static void throwing_handler()
{
	calls++;
	throw std::bad_alloc();
}

// beyond any heap: every allocation of it fails
static const std::size_t huge = std::size_t(1) << 62;

int main()
{
	char *p = new char[37];
	check(malloc_usable_size(p) == 37, "operator new[] is ngmalloc's (exact usable size)");
	delete[] p;
	auto *c = new Counted[5]; // an array cookie: the sized delete[] passes the whole size
	check(Counted::live == 5, "new[] of objects with destructors");
	delete[] c;
	check(Counted::live == 0, "sized delete[] with the array cookie accepted");
	auto *one = new Counted;
	delete one;
	A64 *a = new A64;
	check(reinterpret_cast<std::uintptr_t>(a) % 64 == 0, "aligned new (64)");
	delete a;
	A8K *b = new A8K[2];
	check(reinterpret_cast<std::uintptr_t>(b) % 8192 == 0, "aligned new[] (8192, large)");
	delete[] b;
	auto *n = new (std::nothrow) A64;
	check(n && reinterpret_cast<std::uintptr_t>(n) % 64 == 0, "aligned nothrow new");
	operator delete(n, std::align_val_t(64), std::nothrow);
	{
		std::vector<std::string> v;
		for (int i = 0; i < 10000; i++) v.push_back(std::string(i % 300, 'x'));
		auto s = std::make_shared<std::vector<int>>(1000, 7);
		check(v[9999].size() == 9999 % 300 && (*s)[999] == 7, "containers: sized deletes all accepted");
	}
	void *z = operator new(0);
	check(z != nullptr, "operator new(0) is not null");
	operator delete(z, std::size_t(0));

	std::set_new_handler(give_up_third_time);
	bool threw = false;
	try {
		void *q = operator new(huge);
		operator delete(q);
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	check(threw && calls == 3, "new calls the new-handler until it gives up, then throws bad_alloc");
	std::set_new_handler(throwing_handler);
	calls = 0;
	void *q = operator new(huge, std::nothrow);
	check(q == nullptr && calls == 1, "nothrow new: null when the handler throws");
	threw = false;
	try {
		void *r = operator new[](huge, std::align_val_t(64));
		operator delete[](r, std::align_val_t(64));
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	check(threw && calls == 2, "aligned new[]: the handler's bad_alloc goes through");
	std::set_new_handler(nullptr);
	check(operator new[](huge, std::nothrow) == nullptr, "nothrow new[] with no handler: null");
	std::printf("%d failed\n", fails);
	return fails != 0;
}
