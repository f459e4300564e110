//! The crate as a program uses it: this test binary's global allocator (the test harness's
//! own allocations, its threads included, go through it too).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;

#[test]
fn collections_keep_their_contents() {
    let mut m = HashMap::new();
    let mut t = BTreeMap::new();
    for i in 0..20_000u64 {
        m.insert(i, format!("value {i}"));
        t.insert(
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            vec![i; (i % 37) as usize],
        );
    }
    for i in (0..20_000u64).step_by(3) {
        m.remove(&i);
    }
    assert_eq!(m.len(), 20_000 - 6_667);
    assert_eq!(m[&1], "value 1");
    let total: u64 = t.values().map(|v| v.iter().sum::<u64>()).sum();
    let want: u64 = (0..20_000u64).map(|i| i * (i % 37)).sum();
    assert_eq!(total, want);
}

#[test]
fn every_alignment_and_size() {
    for shift in 0..=21 {
        let align = 1usize << shift;
        for size in [1, 7, 16, 100, 4096, 70_000, 200_000, 3 << 20] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a nonzero size; the block is written within its size and freed once
            // with its layout.
            unsafe {
                let p = GLOBAL.alloc(l);
                assert!(!p.is_null(), "{size} bytes at {align}");
                assert_eq!(p.addr() % align, 0, "{size} bytes at {align}");
                p.write_bytes(0xa5, size);
                assert_eq!(*p.add(size - 1), 0xa5);
                GLOBAL.dealloc(p, l);
            }
        }
    }
}

#[test]
fn zeroed_blocks_read_as_zero() {
    for round in 0..2 {
        let mut held = Vec::new();
        for size in [8, 64, 1000, 5000, 100_000, 1 << 20] {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: as above; the first round dirties memory the second may get back.
            unsafe {
                let p = GLOBAL.alloc_zeroed(l);
                assert!(!p.is_null());
                assert!(
                    std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0),
                    "{size} bytes, round {round}"
                );
                p.write_bytes(0xff, size);
                held.push((p, l));
            }
        }
        for (p, l) in held {
            // SAFETY: live blocks of these layouts.
            unsafe { GLOBAL.dealloc(p, l) };
        }
    }
}

#[test]
fn realloc_keeps_the_data() {
    for align in [1, 8, 16, 64, 4096] {
        let mut size = 3;
        let l = Layout::from_size_align(size, align).unwrap();
        // SAFETY: each realloc gets the block's current layout; the data written is
        // checked after every move.
        unsafe {
            let mut p = GLOBAL.alloc(l);
            for i in 0..size {
                *p.add(i) = i as u8;
            }
            for new in [10, 200, 5000, 150_000, 2 << 20, 40, 3] {
                p = GLOBAL.realloc(p, Layout::from_size_align(size, align).unwrap(), new);
                assert!(!p.is_null());
                assert_eq!(p.addr() % align, 0);
                for i in 0..size.min(new).min(3) {
                    assert_eq!(*p.add(i), i as u8, "align {align}, {size} -> {new}");
                }
                size = new;
            }
            GLOBAL.dealloc(p, Layout::from_size_align(size, align).unwrap());
        }
    }
    let mut v = Vec::new();
    for i in 0..1_000_000u32 {
        v.push(i);
    }
    v.shrink_to_fit();
    assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 499_999_500_000);
}

#[test]
fn threads_allocate_free_and_exit() {
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    let mut workers = Vec::new();
    for t in 0..8u8 {
        let tx = tx.clone();
        workers.push(thread::spawn(move || {
            let mut kept = Vec::new();
            for i in 0..20_000usize {
                let size = 8 + (i * 7 + t as usize * 13) % 600;
                let b = vec![t; size].into_boxed_slice();
                if i % 5 == 0 {
                    kept.push(b);
                }
                if kept.len() == 64 {
                    // another thread frees these
                    tx.send(std::mem::take(&mut kept)).unwrap();
                }
            }
            tx.send(kept).unwrap();
        }));
    }
    drop(tx);
    let mut blocks = 0;
    for batch in rx {
        for b in batch {
            assert!(b.iter().all(|&x| x == b[0]));
            blocks += 1;
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(blocks, 8 * 4_000);
    // a thread whose first call is a free (of a block another thread allocated)
    let b = vec![7u8; 300];
    thread::spawn(move || drop(b)).join().unwrap();
    // threads come and go: each exit gives its cache back for the next
    for _ in 0..200 {
        thread::spawn(|| assert_eq!(vec![1u8; 100].len(), 100))
            .join()
            .unwrap();
    }
}

unsafe extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(status: i32) -> !;
}

#[test]
fn fork_while_threads_allocate() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static STOP: AtomicBool = AtomicBool::new(false);
    let churn: Vec<_> = (0..3)
        .map(|t| {
            thread::spawn(move || {
                let mut keep = Vec::new();
                let mut i = 0usize;
                while !STOP.load(Relaxed) {
                    keep.push(vec![t as u8; 16 + i % 3000]);
                    if keep.len() > 200 {
                        keep.clear();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..30 {
        // SAFETY: the child only allocates, frees and exits (the heap's fork handlers
        // leave its lock usable there).
        let pid = unsafe { fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v: Vec<Vec<u8>> = (0..500).map(|i| vec![1u8; 1 + i * 37 % 5000]).collect();
            let ok = v.iter().all(|b| b.iter().all(|&x| x == 1));
            drop(v);
            // SAFETY: leaves the child at once, with no destructors.
            unsafe { _exit(if ok { 0 } else { 1 }) };
        }
        let mut status = -1;
        // SAFETY: our own child.
        assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0, "the child's status");
    }
    STOP.store(true, Relaxed);
    for t in churn {
        t.join().unwrap();
    }
}

/// Run `case` (an ignored test of this file) in a child process; its signal, if any.
/// Under an emulator, `NGMALLOC_TEST_RUNNER` names it (cargo's runner is not inherited).
fn child(case: &str) -> Option<i32> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match std::env::var_os("NGMALLOC_TEST_RUNNER") {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .args(["--exact", case, "--ignored", "--test-threads=1"])
        .output()
        .unwrap();
    let status = out.status;
    assert!(
        status.signal().is_some() || status.success(),
        "{case}: {status:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    status.signal()
}

#[test]
fn a_wrong_layout_stops_the_program() {
    // SIGILL: the heap's checks stop the process with an illegal instruction
    for case in [
        "child_wrong_size",
        "child_wrong_align",
        "child_wrong_size_realloc",
    ] {
        assert_eq!(child(case), Some(SIGILL), "{case}");
    }
    assert_eq!(child("child_right_layout"), None);
}

/// Linux's signal number for an illegal instruction.
const SIGILL: i32 = 4;

#[test]
#[ignore = "run by a_wrong_layout_stops_the_program in a child process"]
fn child_wrong_size() {
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: deliberately not: the block is freed with a size it was not allocated with.
    unsafe {
        let p = GLOBAL.alloc(l);
        GLOBAL.dealloc(p, Layout::from_size_align(32, 8).unwrap());
    }
}

#[test]
#[ignore = "run by a_wrong_layout_stops_the_program in a child process"]
fn child_wrong_align() {
    let l = Layout::from_size_align(100, 16).unwrap();
    // SAFETY: deliberately not: a block freed with an alignment its pointer does not have.
    unsafe {
        let p = GLOBAL.alloc(l).add(16);
        GLOBAL.dealloc(p, Layout::from_size_align(84, 4096).unwrap());
    }
}

#[test]
#[ignore = "run by a_wrong_layout_stops_the_program in a child process"]
fn child_wrong_size_realloc() {
    let l = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: deliberately not: realloc is told another old size.
    unsafe {
        let p = GLOBAL.alloc(l);
        GLOBAL.realloc(p, Layout::from_size_align(41, 8).unwrap(), 80);
    }
}

#[test]
#[ignore = "run by a_wrong_layout_stops_the_program in a child process"]
fn child_right_layout() {
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: the block freed with its own layout: the control case.
    unsafe {
        let p = GLOBAL.alloc(l);
        GLOBAL.dealloc(p, l);
    }
}
