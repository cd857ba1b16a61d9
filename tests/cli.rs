//! End-to-end: the real `heimdall` binary on a data directory. Every Loghub file is
//! ingested and searched, and every answer must equal a brute-force scan of the file
//! under the documented tokenization; bad input, stdin, stats, and kill -9 during
//! ingest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use engine::token;
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

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "heimdall failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Words to query a file with: its most and least frequent tokens and a few between,
/// in the case they appear in (so case-folding is exercised), plus one absent word.
fn query_words(lines: &[&str]) -> Vec<String> {
    let mut freq: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines {
        for t in token::tokens(l) {
            *freq.entry(t.to_string()).or_default() += 1;
        }
    }
    let mut by_freq: Vec<(usize, String)> = freq.into_iter().map(|(t, n)| (n, t)).collect();
    by_freq.sort();
    let n = by_freq.len();
    let mut words: Vec<String> = [0, 1, n / 4, n / 2, 3 * n / 4, n - 2, n - 1]
        .iter()
        .map(|&i| by_freq[i].1.clone())
        .collect();
    words.push(by_freq[n - 1].1.to_uppercase());
    words.push("zzznotthere".into());
    words
}

#[test]
fn ingest_then_search_equals_a_brute_force_scan_on_every_loghub_file() {
    for file in loghub_files() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input.log");
        std::fs::copy(&file, &input).unwrap();
        let data = tmp.path().join("data");
        let data_s = data.to_str().unwrap();
        let out = ok(&heimdall(&[
            "ingest",
            "--data-dir",
            data_s,
            input.to_str().unwrap(),
        ]));
        let raw = std::fs::read_to_string(&input).unwrap();
        let lines: Vec<&str> = raw.lines().collect();
        assert!(
            out.contains(&format!("ingested {} records", lines.len())),
            "{out}"
        );
        for w in query_words(&lines) {
            let want: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| token::contains_token(l, &w))
                .collect();
            let got = ok(&heimdall(&[
                "search",
                "--data-dir",
                data_s,
                "--limit",
                "100000",
                "--output",
                "jsonl",
                &w,
            ]));
            let mut got_msgs: Vec<String> = got
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["_msg"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let mut want_msgs: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            got_msgs.sort();
            want_msgs.sort();
            assert_eq!(got_msgs, want_msgs, "{}: word {w:?}", file.display());
        }
        // Two words at once.
        let ws = query_words(&lines);
        let (a, b) = (&ws[ws.len() - 3], &ws[ws.len() - 4]);
        let want = lines
            .iter()
            .filter(|l| token::contains_token(l, a) && token::contains_token(l, b))
            .count();
        let got = ok(&heimdall(&[
            "search",
            "--data-dir",
            data_s,
            "--limit",
            "100000",
            a,
            b,
        ]));
        assert_eq!(got.lines().count(), want, "{}: {a} {b}", file.display());
    }
}

#[test]
fn stdin_jsonl_stream_labels_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let mut child = Command::new(heimdall_bin())
        .args([
            "ingest",
            "--data-dir",
            data_s,
            "--format",
            "jsonl",
            "--stream",
            "service=api,host=h1",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"_time\":\"2025-01-02T03:04:05Z\",\"message\":\"disk full\",\"level\":\"ERROR\",\"http\":{\"status\":507}}\n{\"msg\":\"all good\"}\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let out = ok(&heimdall(&[
        "search",
        "--data-dir",
        data_s,
        "--output",
        "jsonl",
        "DISK",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["_time"], "2025-01-02T03:04:05.000000000Z");
    assert_eq!(v["_msg"], "disk full");
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["http.status"], 507);
    assert_eq!(v["_stream"]["service"], "api");
    let stats = stats_json(&data);
    assert_eq!(stats["records"], 2);
    assert_eq!(
        stats["segments"], 1,
        "two small days packed into one segment"
    );
    assert!(stats["index_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn bad_lines_abort_with_file_and_line_or_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, b"{\"msg\":\"one\"}\n{\"msg\":\"two\"}\n{not json\n{\"msg\":\"four\"}\n\xff\xfe\n{\"msg\":\"six\"}\n").unwrap();
    let data = tmp.path().join("abort");
    let out = heimdall(&[
        "ingest",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "jsonl",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:3: malformed JSON"), "{err}");
    // Valid lines before the bad one are never lost.
    assert_eq!(stats_json(&data)["records"], 2);

    let data = tmp.path().join("skip");
    let out = heimdall(&[
        "ingest",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "jsonl",
        "--on-error",
        "skip",
        input.to_str().unwrap(),
    ]);
    let text = ok(&out);
    assert!(
        text.contains("ingested 4 records") && text.contains("skipped 2 bad lines"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:5: line is not valid UTF-8"), "{err}");
}

#[test]
fn missing_input_and_bad_words_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = heimdall(&[
        "ingest",
        "--data-dir",
        data.to_str().unwrap(),
        "/no/such/file.log",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open /no/such/file.log"), "{err}");
    let out = heimdall(&["search", "--data-dir", data.to_str().unwrap(), "two words"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a single word"));
    // A mistyped data directory is refused, naming it, and not created (it once
    // became an empty data directory answering nothing).
    let typo = tmp.path().join("TYPO");
    for cmd in ["query", "stats", "templates", "compact"] {
        let mut args = vec![cmd, "--data-dir", typo.to_str().unwrap()];
        if cmd == "query" {
            args.push("*");
        }
        let out = heimdall(&args);
        assert!(!out.status.success(), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no data directory at") && err.contains("TYPO"),
            "{cmd}: {err}"
        );
        assert!(!typo.exists(), "{cmd} created {}", typo.display());
    }
    std::fs::create_dir(&typo).unwrap();
    let out = heimdall(&["query", "--data-dir", typo.to_str().unwrap(), "*"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no Heimdall data"));
}

/// kill -9 in the middle of `heimdall ingest`: the data directory opens cleanly and
/// holds a prefix of the input, every record whole.
#[test]
fn kill9_during_ingest_leaves_a_whole_prefix() {
    let rounds: usize = std::env::var("HEIMDALL_INGEST_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    let mut stored_total = 0usize;
    for round in 0..rounds {
        let data = tmp.path().join(format!("d{round}"));
        let mut child = Command::new(heimdall_bin())
            .args(["ingest", "--data-dir", data.to_str().unwrap(), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..2_000_000u64 {
                if writeln!(stdin, "entry{i:08} payload {} marker", i * 7919 % 1000).is_err() {
                    return;
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300 + 150 * round as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = writer.join();
        // Opens cleanly; what is there is entries 0..k, each whole.
        let out = ok(&heimdall(&[
            "search",
            "--data-dir",
            data.to_str().unwrap(),
            "--limit",
            "10000000",
            "marker",
        ]));
        let mut ids: Vec<u64> = out
            .lines()
            .map(|l| {
                let msg = l.split('\t').nth(1).unwrap();
                assert!(
                    msg.starts_with("entry") && msg.ends_with(" marker"),
                    "torn record: {msg:?}"
                );
                msg[5..13].parse().unwrap()
            })
            .collect();
        ids.sort_unstable();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*id, i as u64, "round {round}: not a prefix");
        }
        assert_eq!(stats_json(&data)["records"], ids.len() as u64);
        stored_total += ids.len();
    }
    assert!(
        stored_total > 0,
        "the kills all came before anything was stored"
    );
}

#[test]
fn compact_merges_segments_and_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    // Three ingests of the same day's lines: three segments for that day.
    for part in 0..3 {
        let input = tmp.path().join(format!("in{part}.log"));
        let lines: String = (0..500)
            .map(|i| {
                format!(
                    "2025-01-02T03:{:02}:{:02}Z part{part} line{i} beacon\n",
                    i / 60,
                    i % 60
                )
            })
            .collect();
        std::fs::write(&input, lines).unwrap();
        ok(&heimdall(&[
            "ingest",
            "--data-dir",
            d,
            input.to_str().unwrap(),
        ]));
    }
    assert_eq!(stats_json(&data)["segments"], 3);
    let out = ok(&heimdall(&["compact", "--data-dir", d]));
    assert!(out.contains("compacted 3 segments into 1"), "{out}");
    assert_eq!(stats_json(&data)["segments"], 1);
    assert_eq!(stats_json(&data)["records"], 1500);
    let hits = ok(&heimdall(&[
        "search",
        "--data-dir",
        d,
        "--limit",
        "10000",
        "beacon",
    ]));
    assert_eq!(hits.lines().count(), 1500);
}

/// `heimdall stats --json` of a data directory.
fn stats_json(data: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&heimdall(&[
        "stats",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ])))
    .unwrap()
}

/// Bytes of every file under `p`.
fn files_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                files_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// Ingests `files` into a fresh data directory: its bytes on disk (every file,
/// index, templates and manifest included) and `zstd -3` of the raw text.
fn data_dir_and_zstd3(files: &[PathBuf]) -> (u64, u64, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["ingest", "--data-dir", data.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    ok(&heimdall(&args));
    let mut raw = Vec::new();
    for f in files {
        raw.extend(std::fs::read(f).unwrap());
    }
    let zstd3 = zstd::bulk::compress(&raw, 3).unwrap().len() as u64;
    (files_bytes(&data), zstd3, stats_json(&data))
}

/// Issue 3's and issue 18's size bar, kept from regressing: the data directory
/// (every file in it, index included) is smaller than `zstd -3` of the raw text,
/// for the whole Loghub corpus in one directory and for each system in its own.
/// Sizes are deterministic, so this is a test, not a benchmark.
#[test]
fn loghub_data_dir_is_smaller_than_zstd_3_of_the_raw_text() {
    let files = loghub_files();
    let (on_disk, zstd3, stats) = data_dir_and_zstd3(&files);
    assert!(
        on_disk < zstd3,
        "data dir {on_disk} bytes, zstd -3 of the raw text {zstd3} bytes"
    );
    // Every record is there.
    assert_eq!(stats["records"], 20_000);
    let mut over = Vec::new();
    for f in &files {
        let (on_disk, zstd3, _) = data_dir_and_zstd3(std::slice::from_ref(f));
        eprintln!("{}: data dir {on_disk} bytes, zstd -3 {zstd3}", f.display());
        if on_disk > zstd3 {
            over.push(format!("{}: {on_disk} > {zstd3}", f.display()));
        }
    }
    assert!(over.is_empty(), "data dir over zstd -3: {over:?}");
}

/// The same bar on a generated load balancer log whose hosts, addresses, ports
/// and ids are nearly all distinct (`heimdall_benches::corpus::high_cardinality`),
/// where an index grows fastest.
#[test]
fn a_high_cardinality_log_stays_smaller_than_zstd_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.log");
    std::fs::write(&file, heimdall_benches::corpus::high_cardinality(50_000, 7)).unwrap();
    let (on_disk, zstd3, stats) = data_dir_and_zstd3(&[file]);
    eprintln!("high-cardinality log: data dir {on_disk} bytes, zstd -3 {zstd3}");
    assert_eq!(stats["records"], 50_000);
    assert!(
        on_disk <= zstd3,
        "data dir {on_disk} bytes, zstd -3 of the raw text {zstd3} bytes"
    );
}

/// Issue 4's Loghub check: `heimdall query` counts of words, phrases and regexes
/// equal a brute-force scan of the file's lines (tokenizer and `regex` crate applied
/// directly to the text).
#[test]
fn query_counts_equal_a_brute_force_scan_on_every_loghub_file() {
    fn phrase_in(line: &str, phrase: &[&str]) -> bool {
        let toks: Vec<&str> = token::tokens(line).collect();
        toks.windows(phrase.len())
            .any(|w| w.iter().zip(phrase).all(|(a, b)| a.eq_ignore_ascii_case(b)))
    }
    for file in loghub_files() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let data_s = data.to_str().unwrap();
        ok(&heimdall(&[
            "ingest",
            "--data-dir",
            data_s,
            file.to_str().unwrap(),
        ]));
        let raw = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = raw.lines().collect();
        let count = |q: &str| -> u64 {
            let out = ok(&heimdall(&[
                "query",
                "--data-dir",
                data_s,
                "--output",
                "jsonl",
                &format!("{q} | stats count()"),
            ]));
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            v["count()"]
                .as_u64()
                .unwrap_or_else(|| panic!("{q}: {out}"))
        };
        let name = file.display();
        for w in query_words(&lines) {
            let want = lines
                .iter()
                .filter(|l| token::contains_token(l, &w))
                .count() as u64;
            assert_eq!(count(&w), want, "{name}: word {w:?}");
        }
        // Phrases: two and three consecutive words of lines a third and two thirds in.
        for at in [lines.len() / 3, 2 * lines.len() / 3] {
            let toks: Vec<&str> = token::tokens(lines[at]).collect();
            for len in [2, 3] {
                if toks.len() < len + 1 {
                    continue;
                }
                let phrase = &toks[1..1 + len];
                let want = lines.iter().filter(|l| phrase_in(l, phrase)).count() as u64;
                assert!(want > 0);
                let q = format!("\"{}\"", phrase.join(" "));
                assert_eq!(count(&q), want, "{name}: phrase {q}");
            }
        }
        // Regexes: digits, an alternation ignoring case, two words of a line with
        // non-word characters between them.
        let toks: Vec<&str> = token::tokens(lines[lines.len() / 2]).collect();
        let mut regexes = vec![r"\d{4,}".to_string(), "(?i)error|fail".to_string()];
        if toks.len() >= 3 {
            regexes.push(format!(r"{}\W+{}", toks[1], toks[2]));
        }
        for re in regexes {
            let r = regex::Regex::new(&re).unwrap();
            let want = lines.iter().filter(|l| r.is_match(l)).count() as u64;
            assert_eq!(count(&format!("~\"{re}\"")), want, "{name}: regex {re}");
        }
    }
}
