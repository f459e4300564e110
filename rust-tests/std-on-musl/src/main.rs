//! A Rust `std` program built for `x86_64-unknown-linux-musl` against the ngmalloc musl
//! sysroot (static): threads with cross-thread frees, collections, large and over-aligned
//! allocations, process spawn. Prints `ok`/`not ok` lines and `N passed, N failed`.

use std::alloc::{Layout, alloc, dealloc};
use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::mpsc;
use std::thread;

unsafe extern "C" {
    fn malloc(n: usize) -> *mut u8;
    fn free(p: *mut u8);
    fn malloc_usable_size(p: *mut u8) -> usize;
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}

/// A double free stops ngmalloc with SIGILL (stock mallocng: SIGSEGV; glibc: SIGABRT).
fn served_by_ngmalloc() -> bool {
    const SIGILL: i32 = 4;
    // SAFETY: the child only calls async-signal-safe-enough allocator functions and exits;
    // the double free is the point: it must never return.
    unsafe {
        let pid = fork();
        if pid == 0 {
            let p = std::hint::black_box(malloc(32));
            free(p);
            free(p);
            _exit(0);
        }
        let mut st = 0;
        pid > 0 && waitpid(pid, &mut st, 0) == pid && st & 0x7f == SIGILL
    }
}

fn threads_and_collections() -> bool {
    let (tx, rx) = mpsc::channel::<Box<HashMap<String, Vec<u64>>>>();
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut sum = 0u64;
                for round in 0..20 {
                    let mut m = HashMap::new();
                    for i in 0..2000u64 {
                        m.insert(format!("{t}-{round}-{i}"), vec![i; (i % 17) as usize]);
                    }
                    sum += m.values().map(|v| v.iter().sum::<u64>()).sum::<u64>();
                    tx.send(Box::new(m)).unwrap(); // freed by the receiving thread
                }
                sum
            })
        })
        .collect();
    drop(tx);
    let received = rx.into_iter().map(|m| m.len()).sum::<usize>();
    let sums: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let mut tree = BTreeMap::new();
    for i in 0..100_000u32 {
        tree.insert(i.wrapping_mul(2_654_435_761), i);
    }
    received == 8 * 20 * 2000 && sums.iter().all(|&s| s == sums[0]) && tree.len() == 100_000
}

fn large() -> bool {
    let mut v = vec![7u8; 64 << 20];
    v[(64 << 20) - 1] = 9;
    let mut g = Vec::new();
    for i in 0..(16 << 20) {
        g.push(i as u8); // realloc growth through every size class and mremap
    }
    v.iter().map(|&b| b as u64).sum::<u64>() == 7 * (64 << 20) + 2
        && g.len() == 16 << 20
        && g[12345] == (12345 % 256) as u8
}

fn over_aligned() -> bool {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let b = Box::new(Page([1; 4096]));
    let mut ok = (&*b as *const Page).addr().is_multiple_of(4096) && b.0[4095] == 1;
    for shift in [6, 12, 16, 20, 21] {
        let layout = Layout::from_size_align(3 << shift, 1 << shift).unwrap();
        // SAFETY: a nonzero-size layout, freed with the same layout.
        unsafe {
            let p = alloc(layout);
            ok &= !p.is_null() && p.addr().is_multiple_of(1 << shift);
            if !p.is_null() {
                p.write_bytes(0xaa, layout.size());
                dealloc(p, layout);
            }
        }
    }
    ok
}

fn spawn() -> bool {
    Command::new("/bin/sh")
        .args(["-c", "echo spawned"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"spawned\n")
}

fn exact_usable_size() -> bool {
    // SAFETY: a fresh allocation, freed once.
    unsafe {
        let p = malloc(13);
        let n = malloc_usable_size(p);
        free(p);
        n == 13
    }
}

type Check = (&'static str, fn() -> bool);

fn main() {
    let checks: [Check; 6] = [
        (
            "served by ngmalloc (a double free traps with SIGILL)",
            served_by_ngmalloc,
        ),
        (
            "8 threads, HashMaps freed by another thread, BTreeMap",
            threads_and_collections,
        ),
        ("64 MiB buffer and realloc growth to 16 MiB", large),
        (
            "over-aligned boxes and layouts up to 2 MiB alignment",
            over_aligned,
        ),
        ("process spawn", spawn),
        ("malloc_usable_size is the exact request", exact_usable_size),
    ];
    let mut failed = 0;
    for (name, f) in checks {
        let ok = f();
        failed += !ok as usize;
        println!("{} - {name}", if ok { "ok" } else { "not ok" });
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    std::process::exit((failed != 0) as i32);
}
