//! What the harness's Rust programs share: the allocator the build chose, and the line
//! the harness reads (`check=` a value every allocator must compute alike, `hwm_kib=`).

#[cfg(all(feature = "mimalloc", feature = "ngmalloc"))]
compile_error!("choose one allocator feature, or none for the system allocator");

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "ngmalloc")]
#[global_allocator]
static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;

/// The allocator this build uses, as the harness names it.
pub const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else if cfg!(feature = "ngmalloc") {
    "ngmalloc"
} else {
    "system"
};

/// Print the harness's line: the check value, the peak RSS the kernel recorded, and the
/// allocator (a build that names another than the harness asked for is refused).
pub fn report(check: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("check={check} hwm_kib={hwm} allocator={ALLOCATOR}");
}

/// FNV-1a over `bytes`, folded into `h`: an order-sensitive digest of an output.
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}
