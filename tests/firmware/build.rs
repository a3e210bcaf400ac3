//! Writes the memory map of the QEMU machine each target runs on as
//! `memory.x`, where cortex-m-rt's and riscv-rt's linker scripts look for it.
//!
//! | target                        | QEMU machine  | flash            | RAM                   |
//! |-------------------------------|---------------|------------------|-----------------------|
//! | thumbv6m-none-eabi            | `microbit`    | 256 KiB at 0     | 16 KiB at 0x2000_0000 |
//! | thumbv7m-none-eabi            | `lm3s6965evb` | 256 KiB at 0     | 64 KiB at 0x2000_0000 |
//! | thumbv7em-none-eabihf         | `mps2-an386`  | 4 MiB at 0       | 4 MiB at 0x2000_0000  |
//! | riscv32imc/imac-unknown-none-elf | `virt`     | (runs from RAM)  | 16 MiB at 0x8000_0000 |

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let target = env::var("TARGET").unwrap();
    let memory = if target.starts_with("thumbv6m") {
        arm("256K", "16K")
    } else if target.starts_with("thumbv7m") {
        arm("256K", "64K")
    } else if target.starts_with("thumbv7em") {
        arm("4M", "4M")
    } else if target.starts_with("riscv32") {
        RISCV.to_owned()
    } else {
        panic!(
            "tests/firmware builds only for the embedded targets of .ci/embedded.sh, not {target}"
        )
    };
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}

fn arm(flash: &str, ram: &str) -> String {
    format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = 0x00000000, LENGTH = {flash}\n  \
         RAM : ORIGIN = 0x20000000, LENGTH = {ram}\n}}\n"
    )
}

/// QEMU's `virt` with `-bios none` jumps to the start of RAM, where riscv-rt
/// puts its entry point; everything lives in RAM.
const RISCV: &str = "MEMORY
{
  RAM : ORIGIN = 0x80000000, LENGTH = 16M
}
REGION_ALIAS(\"REGION_TEXT\", RAM);
REGION_ALIAS(\"REGION_RODATA\", RAM);
REGION_ALIAS(\"REGION_DATA\", RAM);
REGION_ALIAS(\"REGION_BSS\", RAM);
REGION_ALIAS(\"REGION_HEAP\", RAM);
REGION_ALIAS(\"REGION_STACK\", RAM);
";
