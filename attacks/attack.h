/* Shared by the attack programs. Each program commits one memory error and then returns
 * 0: a clean exit means the allocator did not notice. Built with -O0 so the compiler
 * keeps every access as written. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE (256 << 10)

/* C23; glibc 2.36 and musl 1.2.5 headers do not declare them yet */
void free_sized(void *p, size_t n);
void free_aligned_sized(void *p, size_t align, size_t n);

static void *volatile sink;

/* A static musl program that never calls free links only musl's bump allocator: refer to
 * free so that every attack runs on the real allocator. */
static void (*volatile const keep_free)(void *) = free;

static inline unsigned char peek(const void *p) { return *(const volatile unsigned char *)p; }
static inline void poke(void *p, unsigned char v) { *(volatile unsigned char *)p = v; }
/* Overwrite one byte with another value than it holds. A check byte is a keyed byte
 * (ngmalloc's: 1..254, so a NUL or 0xff always differs): a blind write of one chosen value
 * matches it, and goes unnoticed, once in 254 runs. The attacks that write a single
 * non-NUL byte change it instead, so their outcome is the allocator's, not that chance. */
static inline void smash(void *p) { poke(p, peek(p) ^ 0x41); }
