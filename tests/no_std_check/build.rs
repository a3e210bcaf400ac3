//! Links the freestanding binaries: no C start files (each binary brings its
//! own `_start`), and libc only for the `memcpy`/`memset`/`memcmp` that
//! `core` calls (rustc links with `-nodefaultlibs` on this target).

fn main() {
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-lc");
    println!("cargo:rerun-if-changed=build.rs");
}
