//! ngmalloc: mallocng's design (musl's allocator) in `no_std` Rust, hardened.
//!
//! Glossary (mallocng's words, kept so its comments still read):
//! - *slot*: one allocation unit inside a group; groups hold 1..=32 slots of one size class.
//! - *group*: the memory of a run of equal slots, a 16-byte [`meta::Group`] header first.
//! - *meta*: the out-of-band record of a group ([`meta::Meta`]), kept in a *meta area*, a
//!   4 KiB page tagged with the heap's secret, so that a pointer into user memory can be
//!   checked against data the user cannot write.
//! - *UNIT*: 16 bytes, the granule of every size and offset.
//! - *IB*: the 4 in-band header bytes just before every user pointer.
//!
//! Layering: pure policy ([`size_class`], [`policy`]), layout ([`meta`], [`slot`], [`list`]),
//! the one context that owns global state ([`heap`]), the OS seam ([`os`], [`lock`]), the
//! exports ([`abi`], only with the `standalone` feature) and the invariant walker ([`walk`]).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod cache;
pub mod check;
pub mod config;
pub mod donate;
pub mod groups;
pub mod heap;
pub mod large;
pub mod list;
pub mod lock;
pub mod masks;
pub mod meta;
pub mod meta_area;
pub mod object_size;
pub mod os;
pub mod owned;
pub mod pagemap;
pub mod policy;
pub mod release;
pub mod retain;
pub mod size_class;
pub mod slot;
pub mod tcache;
pub mod thread_word;
pub mod walk;
pub mod zero_size;

#[cfg(any(feature = "standalone", feature = "musl"))]
pub mod abi;

pub use heap::Heap;
