//! ripgrep's search, from ripgrep's own library crates (`ignore`'s parallel directory walk,
//! `grep`'s regex matcher, searcher and standard printer): every line of every file under
//! ROOT that matches PATTERN, printed as `path:line:text` into each thread's buffer, as
//! `rg -n PATTERN ROOT` does.
//!
//! Usage: search ROOT PATTERN [THREADS]. The check is order-free: the matches counted,
//! and the sum of a digest of each file's output.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use grep::printer::StandardBuilder;
use grep::regex::RegexMatcher;
use grep::searcher::{BinaryDetection, SearcherBuilder};
use ignore::{WalkBuilder, WalkState};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: search ROOT PATTERN [THREADS]");
        std::process::exit(2);
    }
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let matcher = RegexMatcher::new_line_matcher(&args[2]).expect("a valid pattern");
    let lines = AtomicU64::new(0);
    let digest = AtomicU64::new(0);
    WalkBuilder::new(&args[1])
        .threads(threads)
        .build_parallel()
        .run(|| {
            let matcher = matcher.clone();
            let mut searcher = SearcherBuilder::new()
                .line_number(true)
                .binary_detection(BinaryDetection::quit(0))
                .build();
            let mut printer = StandardBuilder::new().build_no_color(Vec::new());
            let (lines, digest) = (&lines, &digest);
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    return WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return WalkState::Continue;
                }
                printer.get_mut().get_mut().clear();
                let mut sink = printer.sink_with_path(&matcher, entry.path());
                if searcher
                    .search_path(&matcher, entry.path(), &mut sink)
                    .is_ok()
                {
                    let n = sink.match_count();
                    drop(sink);
                    let out = printer.get_mut().get_ref();
                    lines.fetch_add(n, Relaxed);
                    digest.fetch_add(
                        ngmalloc_bench_rust::fnv(0xcbf2_9ce4_8422_2325, out),
                        Relaxed,
                    );
                }
                WalkState::Continue
            })
        });
    ngmalloc_bench_rust::report(lines.load(Relaxed) ^ digest.load(Relaxed));
}
