//! Torn tails, garbage after the tail, and damage before it, on both backends.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use rand::{Rng, SeedableRng};
use wal::format::{self, FrameFault, FRAME_HEADER_LEN, HEADER_LEN};
use wal::{BackendChoice, Wal, WalConfig, WalError};

/// Writes `n` records of varying sizes and returns the sorted WAL file paths.
fn build_log(dir: &Path, backend: BackendChoice, n: u64, file_bytes_max: u64) -> Vec<PathBuf> {
    let rt = rt();
    let wal = open(
        dir,
        WalConfig {
            file_bytes_max,
            ..cfg(backend)
        },
    );
    for i in 1..=n {
        rt.block_on(wal.append(payload(i, (i as usize * 37) % 200)))
            .unwrap();
    }
    drop(wal);
    wal_files(dir)
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// The file's bytes up to the end of its last frame (drops the zero terminator and any
/// preallocated space).
fn records_only(bytes: &[u8]) -> Vec<u8> {
    let end = format::scan_file(bytes, u32::MAX).unwrap().valid_end;
    bytes[..end].to_vec()
}

/// Frame start offsets in a file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let scan = format::scan_file(bytes, u32::MAX).unwrap();
    scan.frames.iter().map(|f| f.offset).collect()
}

fn copy_log(from: &Path, to: &Path) {
    for f in wal_files(from) {
        fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_records() {
    for backend in BACKENDS {
        let src = tempfile::tempdir().unwrap();
        let files = build_log(src.path(), backend, 40, 4096);
        assert!(files.len() > 1, "need several files");
        let last = files.last().unwrap();
        let bytes = records_only(&fs::read(last).unwrap());
        let offsets = frame_offsets(&bytes);
        let records_before_last: u64 = {
            let dst = tempfile::tempdir().unwrap();
            copy_log(src.path(), dst.path());
            fs::remove_file(dst.path().join(last.file_name().unwrap())).unwrap();
            let w = open(dst.path(), cfg(backend));
            w.recovery_report().records
        };
        // Every cut from the start of the third-to-last frame to the end.
        let from = offsets[offsets.len().saturating_sub(3)];
        for cut in from..=bytes.len() {
            let dst = tempfile::tempdir().unwrap();
            copy_log(src.path(), dst.path());
            let target = dst.path().join(last.file_name().unwrap());
            fs::write(&target, &bytes[..cut]).unwrap();
            let wal = Wal::open(dst.path(), cfg(backend))
                .unwrap_or_else(|e| panic!("{backend:?} cut at {cut}: {e}"));
            let whole = offsets
                .iter()
                .enumerate()
                .filter(|(i, _)| offsets.get(i + 1).map_or(bytes.len(), |n| *n) <= cut)
                .count() as u64;
            let report = wal.recovery_report();
            assert_eq!(report.records, records_before_last + whole, "cut at {cut}");
            let valid_end = offsets.get(whole as usize).copied().unwrap_or(bytes.len());
            // A cut inside a frame is truncated away, unless the bytes left of it are
            // all zero (then they read as the end marker and stay).
            let kept_zero = bytes[valid_end..cut].iter().all(|&b| b == 0);
            let expect_len = if kept_zero { cut } else { valid_end };
            assert_eq!(
                report.truncated_bytes,
                (cut - expect_len) as u64,
                "cut at {cut}"
            );
            assert_eq!(fs::metadata(&target).unwrap().len(), expect_len as u64);
            // Replay yields exactly the whole records, and the next LSN follows on.
            let got = replay_map(&wal);
            assert_eq!(got.len() as u64, report.records);
            for (lsn, p) in &got {
                assert_eq!(p, &payload(*lsn, (*lsn as usize * 37) % 200));
            }
            let rt = rt();
            assert_eq!(
                rt.block_on(wal.append(payload(0, 3))).unwrap(),
                report.records + 1
            );
        }
    }
}

#[test]
fn random_garbage_after_the_tail_is_truncated() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for backend in BACKENDS {
        let src = tempfile::tempdir().unwrap();
        let files = build_log(src.path(), backend, 25, 64 << 10);
        let last = files.last().unwrap();
        let on_disk = fs::read(last).unwrap();
        let bytes = records_only(&on_disk);
        assert!(
            on_disk.len() > bytes.len(),
            "the writer leaves a zero terminator"
        );
        for round in 0..200 {
            // Garbage right after the last frame (where a cut write would leave it) is
            // truncated away.
            let dst = tempfile::tempdir().unwrap();
            let mut damaged = bytes.clone();
            let len = rng.gen_range(1..300);
            damaged.extend((0..len).map(|_| rng.gen::<u8>()));
            fs::write(dst.path().join(last.file_name().unwrap()), &damaged).unwrap();
            let wal = Wal::open(dst.path(), cfg(backend))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(wal.recovery_report().records, 25, "round {round}");
            assert_eq!(wal.recovery_report().truncated_bytes, len as u64);
            drop(wal);
            // Garbage after the terminator is never read, and appends overwrite it.
            let dst = tempfile::tempdir().unwrap();
            let mut damaged = on_disk.clone();
            damaged.extend((0..len).map(|_| rng.gen::<u8>()));
            fs::write(dst.path().join(last.file_name().unwrap()), &damaged).unwrap();
            let wal = Wal::open(dst.path(), cfg(backend)).unwrap();
            assert_eq!(wal.recovery_report().records, 25, "round {round}");
            assert_eq!(rt().block_on(wal.append(payload(1, 500))).unwrap(), 26);
            drop(wal);
            let wal = Wal::open(dst.path(), cfg(backend)).unwrap();
            assert_eq!(replay_map(&wal).len(), 26, "round {round}");
        }
    }
}

#[test]
fn bit_flip_in_a_middle_record_is_a_typed_error_with_file_and_offset() {
    for backend in BACKENDS {
        let src = tempfile::tempdir().unwrap();
        let files = build_log(src.path(), backend, 30, 1024);
        assert!(files.len() >= 2);
        // In the newest file: flip every byte of a record that has records after it.
        // In an older file: flip a byte of its last record (no torn tail allowed there).
        let newest = files.last().unwrap();
        let nb = records_only(&fs::read(newest).unwrap());
        let noffs = frame_offsets(&nb);
        assert!(noffs.len() >= 3, "newest file needs at least 3 records");
        let victim = noffs[noffs.len() - 3];
        let victim_end = noffs[noffs.len() - 2];
        let older = &files[0];
        let ob = records_only(&fs::read(older).unwrap());
        let ooffs = frame_offsets(&ob);
        let cases: Vec<(&PathBuf, &Vec<u8>, usize, usize)> = (victim..victim_end)
            .map(|at| (newest, &nb, at, victim))
            .chain(std::iter::once((
                older,
                &ob,
                ob.len() - 1,
                *ooffs.last().unwrap(),
            )))
            .collect();
        for (file, bytes, at, frame_start) in cases {
            for bit in [0u8, 3, 7] {
                let dst = tempfile::tempdir().unwrap();
                copy_log(src.path(), dst.path());
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let target = dst.path().join(file.file_name().unwrap());
                fs::write(&target, &damaged).unwrap();
                let err = Wal::open(dst.path(), cfg(backend)).unwrap_err();
                let canon = fs::canonicalize(&target).unwrap();
                match &err {
                    WalError::CorruptRecord {
                        path,
                        offset,
                        fault,
                    } => {
                        assert_eq!(path, &canon, "flip at {at}");
                        assert_eq!(*offset as usize, frame_start, "flip at {at}: {err}");
                        let lsn_field =
                            (frame_start + 8..frame_start + FRAME_HEADER_LEN).contains(&at);
                        if !lsn_field {
                            assert!(
                                !matches!(fault, FrameFault::UnexpectedLsn { .. }),
                                "flip at {at}: {fault}"
                            );
                        }
                    }
                    other => panic!("flip at {at}: expected CorruptRecord, got {other}"),
                }
                assert!(err.is_corruption());
                assert!(
                    err.to_string().contains(&format!("offset {frame_start}")),
                    "{err}"
                );
                // The damaged file is left untouched for the operator to inspect.
                assert_eq!(fs::read(&target).unwrap(), damaged);
            }
        }
    }
}

#[test]
fn damaged_header_missing_file_and_unfinished_creation() {
    for backend in BACKENDS {
        let src = tempfile::tempdir().unwrap();
        let files = build_log(src.path(), backend, 40, 1024);
        assert!(files.len() >= 3);

        // A damaged header in an older file is corruption.
        let dst = tempfile::tempdir().unwrap();
        copy_log(src.path(), dst.path());
        let first = dst.path().join(files[0].file_name().unwrap());
        let mut b = fs::read(&first).unwrap();
        b[17] ^= 0xff;
        fs::write(&first, &b).unwrap();
        let err = Wal::open(dst.path(), cfg(backend)).unwrap_err();
        assert!(matches!(err, WalError::CorruptHeader { .. }), "{err}");

        // A missing middle file is a gap.
        let dst = tempfile::tempdir().unwrap();
        copy_log(src.path(), dst.path());
        fs::remove_file(dst.path().join(files[1].file_name().unwrap())).unwrap();
        let err = Wal::open(dst.path(), cfg(backend)).unwrap_err();
        assert!(matches!(err, WalError::Gap { .. }), "{err}");

        // A newest file whose header never finished is removed; LSNs continue.
        for partial in [0usize, 5, HEADER_LEN - 1] {
            let dst = tempfile::tempdir().unwrap();
            copy_log(src.path(), dst.path());
            let next = dst.path().join(format::file_name(41));
            fs::write(&next, &format::encode_header(41, 0)[..partial]).unwrap();
            let wal = Wal::open(dst.path(), cfg(backend)).unwrap();
            assert_eq!(wal.recovery_report().removed_files.len(), 1);
            assert_eq!(wal.written_lsn(), 41);
            assert_eq!(rt().block_on(wal.append(payload(1, 1))).unwrap(), 41);
        }
    }
}
