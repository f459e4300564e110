//! The fuzz bodies, shared by the fuzz targets and the host tests (`tests/fuzz_body.rs`).
#[path = "body.rs"]
pub mod body;
