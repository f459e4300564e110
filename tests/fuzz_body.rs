//! The fuzz bodies (fuzz/src/body.rs) as a seeded stress test: every input of the seed
//! corpus (fuzz/corpus), then pseudo-random inputs from fixed seeds. A failure names the
//! input; `cargo fuzz run TARGET FILE` (fuzz/README.md) replays a corpus file.
#![allow(clippy::undocumented_unsafe_blocks)]

#[path = "../fuzz/src/body.rs"]
mod body;

mod common;

use common::Rng;

fn corpus(target: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        eprintln!("{}", path.display());
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

fn seeded(seed: u64, inputs: usize, max_len: u64, f: fn(&[u8])) {
    let mut r = Rng(seed);
    for _ in 0..inputs {
        let len = r.below(max_len) as usize;
        let data: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        f(&data);
    }
}

#[test]
fn ops_on_the_seed_corpus_and_seeded_inputs() {
    assert!(
        corpus("ops", body::ops) >= 4,
        "the ops seed corpus is missing"
    );
    seeded(0x0f0f_1234, 200, 1200, body::ops);
}

#[test]
fn headers_on_the_seed_corpus_and_seeded_inputs() {
    assert!(
        corpus("headers", body::headers) >= 4,
        "the headers seed corpus is missing"
    );
    seeded(0xbad_c0de, 10_000, 64, body::headers);
}
