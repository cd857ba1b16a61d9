//! End-to-end: the real `heimdall` binary appends every Loghub file to a WAL and dumps
//! it back byte for byte; errors are clear and exit non-zero.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use heimdall_e2e::{heimdall_bin, loghub_dir};

fn loghub_files() -> Vec<PathBuf> {
    let root = loghub_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|d| {
            let dir = d.ok()?.path();
            let name = dir.file_name()?.to_str()?.to_string();
            let f = dir.join(format!("{name}_2k.log"));
            f.exists().then_some(f)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 10, "expected the 10 Loghub systems");
    files
}

fn heimdall(args: &[&str]) -> std::process::Output {
    Command::new(heimdall_bin())
        .args(args)
        .output()
        .expect("run heimdall")
}

#[test]
fn append_then_dump_returns_every_line_of_every_loghub_file() {
    for (i, file) in loghub_files().iter().enumerate() {
        // The tests copy what they need: ../shared is read-only in CI.
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input.log");
        std::fs::copy(file, &input).unwrap();
        let data = tmp.path().join("data");
        let data_s = data.to_str().unwrap();
        let backend = if i % 2 == 0 { "pwrite" } else { "io-uring" };
        let out = heimdall(&[
            "wal",
            "append",
            "--data-dir",
            data_s,
            "--backend",
            backend,
            "--batch",
            "97",
            input.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read(&input).unwrap();
        let lines: Vec<&[u8]> = raw
            .strip_suffix(b"\n")
            .unwrap_or(&raw)
            .split(|&b| b == b'\n')
            .collect();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("appended {} records", lines.len())),
            "{stdout}"
        );

        let out = heimdall(&["wal", "dump", "--data-dir", data_s]);
        assert!(out.status.success());
        let dumped: Vec<&[u8]> = out
            .stdout
            .strip_suffix(b"\n")
            .unwrap()
            .split(|&b| b == b'\n')
            .collect();
        assert_eq!(dumped.len(), lines.len(), "{}", file.display());
        for (n, (d, l)) in dumped.iter().zip(&lines).enumerate() {
            let want = [format!("{}\t", n + 1).as_bytes(), l].concat();
            assert_eq!(*d, &want[..], "{} line {}", file.display(), n + 1);
        }
    }
}

#[test]
fn stdin_input_and_json_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let mut child = Command::new(heimdall_bin())
        .args(["wal", "append", "--data-dir", data_s, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\nthree\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let out = heimdall(&["wal", "stats", "--data-dir", data_s, "--json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"records\":3"), "{text}");
    assert!(text.contains("\"next_lsn\":4"), "{text}");
}

#[test]
fn missing_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = heimdall(&[
        "wal",
        "append",
        "--data-dir",
        data.to_str().unwrap(),
        "/no/such/file.log",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open /no/such/file.log"), "{err}");
}
