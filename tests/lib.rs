//! Helpers for the end-to-end tests: locating the real `heimdall` binary built by cargo.

use std::path::PathBuf;

/// Path of the `heimdall` binary of the current build profile.
///
/// Integration tests live in `target/<profile>/deps/`; the binary is one level up.
/// Panics with instructions when it has not been built.
pub fn heimdall_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("heimdall");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p heimdall-server`",
        bin.display()
    );
    bin
}
