//! Fuzz the WAL file decoder. Two inputs per run:
//! 1. the raw bytes;
//! 2. a structured case: a valid file built from the input (record count and payloads),
//!    then damaged as the input says (truncate, flip a bit, append garbage).
//!
//! The decoder must never panic; whatever it accepts must be consistent (frames in
//! order, inside the input, checksums valid); an undamaged file must decode to exactly
//! its records; a truncated one to a prefix of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wal::format::{self, FrameHeader, Scan, Tail};

fn check_consistent(data: &[u8], scan: &Scan) {
    let mut expected = scan.header.first_lsn;
    let mut at = format::HEADER_LEN;
    for f in &scan.frames {
        assert_eq!(f.offset, at);
        assert_eq!(f.lsn, expected);
        assert!(f.end() <= data.len());
        let h = FrameHeader::parse(&data[f.offset..]).expect("header in bounds");
        assert!(h.verify(&data[f.payload_offset..f.end()]));
        at = f.end();
        expected += 1;
    }
    assert_eq!(scan.valid_end, at);
    assert_eq!(scan.next_lsn, expected);
    match &scan.tail {
        Tail::Clean => assert_eq!(at, data.len()),
        Tail::Torn { offset, .. } | Tail::Stale { offset } => assert_eq!(*offset, at),
        Tail::Zeroes => {}
    }
}

fn decode(data: &[u8]) -> Option<Scan> {
    let scan = format::scan_file(data, 1 << 20).ok()?;
    check_consistent(data, &scan);
    Some(scan)
}

fuzz_target!(|data: &[u8]| {
    decode(data);

    // Structured case.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n % 24) as usize;
    let first_lsn = 1 + u64::from(rest.first().copied().unwrap_or(0));
    let mut file = format::encode_header(first_lsn, 0).to_vec();
    let mut payloads = Vec::new();
    let mut cursor = rest.iter().copied().skip(1);
    for i in 0..n {
        let len = cursor.next().unwrap_or(0) as usize;
        let p: Vec<u8> = (0..len)
            .map(|k| cursor.next().unwrap_or((k + i) as u8))
            .collect();
        format::encode_frame(&mut file, first_lsn + i as u64, &p);
        payloads.push(p);
    }
    let ops: Vec<u8> = cursor.collect();
    let intact = format::scan_file(&file, 1 << 20).expect("a freshly written file decodes");
    assert_eq!(intact.frames.len(), n);
    assert_eq!(intact.tail, Tail::Clean);
    for (f, p) in intact.frames.iter().zip(&payloads) {
        assert_eq!(&file[f.payload_offset..f.end()], &p[..]);
    }
    let mut damaged = file.clone();
    let mut truncated_only = true;
    for op in ops.chunks(3) {
        let pos = usize::from(u16::from_le_bytes([op[0], *op.get(1).unwrap_or(&0)]));
        match op.get(2).copied().unwrap_or(0) % 3 {
            0 => damaged.truncate(pos.min(damaged.len())),
            1 if !damaged.is_empty() => {
                let at = pos % damaged.len();
                damaged[at] ^= 1 << (pos % 8);
                truncated_only = false;
            }
            _ => {
                damaged.extend_from_slice(op);
                truncated_only = false;
            }
        }
    }
    if let Some(scan) = decode(&damaged) {
        if truncated_only {
            // A cut file keeps a prefix of its records, each byte for byte.
            assert!(scan.frames.len() <= n);
            for (f, p) in scan.frames.iter().zip(&payloads) {
                assert_eq!(&damaged[f.payload_offset..f.end()], &p[..]);
            }
        }
    }
});
