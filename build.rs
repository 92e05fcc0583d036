//! Release builds of the daemon link its functions in the order of
//! `contrib/link-order.txt`: the functions a daemon runs (start-up, spawning,
//! reaping, idle, control) first and together, so that they fill a few
//! hundred contiguous pages instead of being spread over the whole text
//! segment. The kernel maps a 64 KiB neighbourhood of each code page fault,
//! so scattered hot code made the daemon's resident set follow the size of
//! the binary (docs/benchmarks.md, "Memory"; `bench/link-order` regenerates
//! the list).
//!
//! Only with LLD (rustc's default linker on x86_64 Linux since 1.90): GNU ld
//! has no `--symbol-ordering-file`. A name missing from the list (another
//! compiler or dependency version) only costs locality, never correctness.
//! `RINGMASTER_LINK_ORDER=0` turns it off.
//!
//! Where the build machine's glibc is 2.36 or newer, the binary's relative
//! relocations are also packed (`-z pack-relative-relocs`, DT_RELR): the
//! dynamic loader reads ~8 KiB instead of the 0.38 MiB `.rela.dyn` at every
//! start, pages that then stayed resident for the daemon's whole life. Such
//! a binary needs glibc ≥ 2.36 where it runs (it requires 2.34 without);
//! `RINGMASTER_RELR=0` builds one without.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=contrib/link-order.txt");
    println!("cargo:rerun-if-env-changed=RINGMASTER_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=RINGMASTER_RELR");
    if env::var("PROFILE").as_deref() != Ok("release")
        || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var("HOST") != env::var("TARGET")
        || !rustc_links_with_lld()
    {
        return;
    }
    if !env::var("RINGMASTER_RELR").is_ok_and(|v| v == "0") && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=ringmaster=-Wl,-z,pack-relative-relocs");
    }
    if env::var("RINGMASTER_LINK_ORDER").is_ok_and(|v| v == "0") {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = std::path::Path::new(&dir).join("contrib/link-order.txt");
    if list.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=ringmaster=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin=ringmaster=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc ≥ 1.90 links x86_64-unknown-linux-gnu with its bundled LLD unless
/// told otherwise (`-Clinker-features=-lld`, or a linker of one's own).
fn rustc_links_with_lld() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker-features=-lld") || flags.contains("linker=") {
        return false;
    }
    if env::vars().any(|(k, _)| k.starts_with("CARGO_TARGET_") && k.ends_with("_LINKER")) {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .and_then(|v| v.split(['.', '-']).nth(1))
        .and_then(|minor| minor.parse::<u32>().ok())
    else {
        return false;
    };
    text.lines().any(|l| l.starts_with("release: 1.")) && version >= 90
}

/// The build machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36").
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}
