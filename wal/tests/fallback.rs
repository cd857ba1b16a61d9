//! Backend selection against the kernel's real answer: a child process forbids io_uring
//! with a seccomp filter (as a container profile would), then opens a WAL.

use std::process::Command;

fn child(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
        .arg(dir.path())
        .args(args)
        .env("HEIMDALL_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn auto_uses_io_uring_when_the_kernel_allows_it() {
    let (ok, out, err) = child(&["auto", "1", "--probe-only"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("BACKEND io_uring -"), "{out}");
}

#[test]
fn auto_falls_back_to_pwrite_and_says_why_when_io_uring_is_denied() {
    let (ok, out, err) = child(&["auto", "1", "--probe-only", "--deny-io-uring"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("BACKEND pwrite "), "{out}");
    assert!(
        out.contains("EPERM"),
        "fallback reason must name the cause: {out}"
    );
}

#[test]
fn forced_io_uring_fails_clearly_when_denied() {
    let (ok, _out, err) = child(&["io_uring", "1", "--probe-only", "--deny-io-uring"]);
    assert!(!ok);
    assert!(err.contains("io_uring backend unavailable"), "{err}");
}

#[test]
fn appends_work_after_the_fallback() {
    // The child appends until killed; here it runs briefly under the filter and its
    // acknowledged records must be readable afterwards.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
        .arg(dir.path())
        .args(["auto", "2", "--deny-io-uring"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.kill().unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let acked = text.lines().filter(|l| l.starts_with("ACK ")).count();
    assert!(acked > 0, "{text}");
    let wal = wal::Wal::open(dir.path(), wal::WalConfig::default()).unwrap();
    assert!(wal.replay_all().unwrap().count() >= acked);
}
