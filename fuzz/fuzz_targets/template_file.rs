//! Fuzz the template file: its decoder on any bytes, and on a well-framed file
//! (magic, version, checksum, zstd) around any JSON, as a damaged-but-checksummed
//! state would arrive. Decoding never panics; a state that decodes restores miners
//! that mine, list and resolve ids without panicking.
#![no_main]

use engine::engine::{check_template_file, frame_template_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_template_file(data);
    let _ = check_template_file(&frame_template_json(data));
});
