#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ngmalloc_fuzz::body::ops(data));
