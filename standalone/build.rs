fn main() {
    // `libngmalloc.so` is the name users link and preload; give the library that soname.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libngmalloc.so");
}
