// No C runtime start files: the binary brings its own `_start`. libc is
// linked only for `memcpy` and friends, which `core` expects to exist.
fn main() {
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-lc");
}
