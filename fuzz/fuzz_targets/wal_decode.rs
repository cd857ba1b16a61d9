//! Fuzz the WAL file decoder: any bytes, as the newest or an older file, must decode to
//! a result or a typed error, never a panic; and whatever it accepts must be
//! consistent (frames in order, inside the input, checksums valid).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wal::format::{self, FrameHeader, Tail};

fuzz_target!(|data: &[u8]| {
    for is_last in [true, false] {
        let Ok(scan) = format::scan_file(data, is_last, 1 << 20) else {
            continue;
        };
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
        if !is_last {
            assert!(!matches!(scan.tail, Tail::Torn { .. }));
        }
    }
});
