//! The two lines that make ngmalloc a Rust program's allocator, and a program that uses
//! it from several threads. Run: `cargo run -p ngmalloc --example quickstart` (add
//! `--target x86_64-unknown-linux-musl` for a static binary).

#[global_allocator]
static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;

fn main() {
    let words: Vec<String> = (0..100_000).map(|i| format!("word{}", i % 5_000)).collect();
    let counts = std::thread::scope(|s| {
        let parts: Vec<_> = words
            .chunks(25_000)
            .map(|part| {
                s.spawn(move || {
                    let mut m = std::collections::HashMap::new();
                    for w in part {
                        *m.entry(w.as_str()).or_insert(0u32) += 1;
                    }
                    m
                })
            })
            .collect();
        let mut all = std::collections::HashMap::new();
        for p in parts {
            for (w, n) in p.join().unwrap() {
                *all.entry(w).or_insert(0) += n;
            }
        }
        all
    });
    println!(
        "{} distinct words, each {} times",
        counts.len(),
        counts["word7"]
    );
}
