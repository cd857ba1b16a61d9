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

/// The Loghub sample directory of `../shared/data/loghub` (relative to the project
/// root), found from `$HEIMDALL_LOGHUB_DIR`, or by walking up from this crate to a
/// directory holding `shared/data/loghub`. Tests copy what they need out of it: it is
/// read-only in CI.
pub fn loghub_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEIMDALL_LOGHUB_DIR") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for ancestor in here.ancestors() {
        let candidate = ancestor.join("shared/data/loghub");
        if candidate.is_dir() {
            return candidate;
        }
    }
    let fallback = PathBuf::from("/work/shared/data/loghub");
    assert!(
        fallback.is_dir(),
        "Loghub data not found above {}; set HEIMDALL_LOGHUB_DIR",
        here.display()
    );
    fallback
}
