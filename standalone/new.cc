// C++'s allocation functions for the standalone library: every form of `operator new` and
// `operator delete` (plain, nothrow, sized, aligned, aligned sized), so that a C++ program
// linked with libngmalloc.a or run with LD_PRELOAD=libngmalloc.so is served by ngmalloc and
// its sized and aligned deletes are checked. libstdc++'s own operators drop the size and
// the alignment and call free(), so a `delete` through a pointer of the wrong type (the
// size the compiler passes is that type's) went unnoticed; here it is `free_sized`'s check,
// which crashes on a mismatch, as `free_aligned_sized`'s does for the aligned forms.
//
// C++'s contract for `new`: on failure call the new-handler until it makes room (then try
// again) or there is none, then throw std::bad_alloc; the nothrow forms return null
// instead. Whatever this needs from the C++ runtime is a weak reference (the `.weak`
// directives below), so the library loads into C programs, which have no C++ runtime and
// never call these, without depending on libstdc++; a C++ program brings its own.

#include <cstddef>
#include <new>

extern "C" {
void *malloc(std::size_t);
void *aligned_alloc(std::size_t, std::size_t);
void free(void *);
void free_sized(void *, std::size_t);
void free_aligned_sized(void *, std::size_t, std::size_t);
}

// The C++ runtime's functions, under names of ours, referenced weakly: std::get_new_handler
// and std::__throw_bad_alloc (libstdc++'s thrower, as its own operator new uses).
__attribute__((weak)) std::new_handler ngm_get_new_handler() noexcept
    __asm__("_ZSt15get_new_handlerv");
[[noreturn]] __attribute__((weak)) void ngm_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv");
// What the nothrow forms' catch needs, weak too.
__asm__(".weak __gxx_personality_v0\n"
        ".weak __cxa_begin_catch\n"
        ".weak __cxa_end_catch\n"
        ".weak __cxa_call_terminate\n"
        ".weak _ZSt9terminatev\n"
        ".weak _Unwind_Resume\n");

namespace {

// A null block: call the new-handler and try again while there is one; throw
// std::bad_alloc when there is none. What the handler throws goes through to the caller.
__attribute__((cold, noinline)) void *out_of_memory(std::size_t n, std::size_t align) {
    for (;;) {
        std::new_handler h = &ngm_get_new_handler ? ngm_get_new_handler() : nullptr;
        if (!h) {
            if (&ngm_throw_bad_alloc)
                ngm_throw_bad_alloc();
            __builtin_trap(); // no C++ runtime to throw with (never in a C++ program)
        }
        h();
        void *p = align ? aligned_alloc(align, n) : malloc(n);
        if (p)
            return p;
    }
}

inline void *new_impl(std::size_t n) {
    void *p = malloc(n);
    return __builtin_expect(p != nullptr, 1) ? p : out_of_memory(n, 0);
}

inline void *new_aligned(std::size_t n, std::align_val_t a) {
    void *p = aligned_alloc(static_cast<std::size_t>(a), n);
    return __builtin_expect(p != nullptr, 1) ? p : out_of_memory(n, static_cast<std::size_t>(a));
}

// The nothrow forms: null where the others throw, whatever the handler throws included.
__attribute__((cold, noinline)) void *out_of_memory_nothrow(std::size_t n, std::size_t align) noexcept {
    try {
        return out_of_memory(n, align);
    } catch (...) {
        return nullptr;
    }
}

inline void *new_nothrow(std::size_t n, std::size_t align) noexcept {
    void *p = align ? aligned_alloc(align, n) : malloc(n);
    if (__builtin_expect(p != nullptr, 1))
        return p;
    // no handler: null at once (no exception thrown to be caught)
    if (!&ngm_get_new_handler || !ngm_get_new_handler())
        return nullptr;
    return out_of_memory_nothrow(n, align);
}

// An aligned delete of a pointer the alignment does not fit is a wrong delete (a pointer
// that came from elsewhere, or the wrong type's): crash, as every failed check does.
inline void check_aligned(void *p, std::align_val_t a) noexcept {
    std::size_t al = static_cast<std::size_t>(a);
    if ((al & (al - 1)) != 0 || (reinterpret_cast<std::size_t>(p) & (al - 1)) != 0)
        __builtin_trap();
}

} // namespace

#define EXPORT __attribute__((visibility("default")))

EXPORT void *operator new(std::size_t n) { return new_impl(n); }
EXPORT void *operator new[](std::size_t n) { return new_impl(n); }
EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n, 0); }
EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n, 0); }
EXPORT void *operator new(std::size_t n, std::align_val_t a) { return new_aligned(n, a); }
EXPORT void *operator new[](std::size_t n, std::align_val_t a) { return new_aligned(n, a); }
EXPORT void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
    return new_nothrow(n, static_cast<std::size_t>(a));
}
EXPORT void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
    return new_nothrow(n, static_cast<std::size_t>(a));
}

EXPORT void operator delete(void *p) noexcept { free(p); }
EXPORT void operator delete[](void *p) noexcept { free(p); }
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { free(p); }
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { free(p); }
EXPORT void operator delete(void *p, std::size_t n) noexcept { free_sized(p, n); }
EXPORT void operator delete[](void *p, std::size_t n) noexcept { free_sized(p, n); }
EXPORT void operator delete(void *p, std::align_val_t a) noexcept {
    check_aligned(p, a);
    free(p);
}
EXPORT void operator delete[](void *p, std::align_val_t a) noexcept {
    check_aligned(p, a);
    free(p);
}
EXPORT void operator delete(void *p, std::align_val_t a, const std::nothrow_t &) noexcept {
    check_aligned(p, a);
    free(p);
}
EXPORT void operator delete[](void *p, std::align_val_t a, const std::nothrow_t &) noexcept {
    check_aligned(p, a);
    free(p);
}
EXPORT void operator delete(void *p, std::size_t n, std::align_val_t a) noexcept {
    free_aligned_sized(p, static_cast<std::size_t>(a), n);
}
EXPORT void operator delete[](void *p, std::size_t n, std::align_val_t a) noexcept {
    free_aligned_sized(p, static_cast<std::size_t>(a), n);
}
