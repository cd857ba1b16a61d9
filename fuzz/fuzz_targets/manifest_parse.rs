//! Fuzz the manifest parser: any bytes are a parsed manifest or a typed error
//! naming the file, never a panic; what parses re-serialises to itself.
#![no_main]

use engine::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("MANIFEST");
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = Manifest::parse(&text, path) {
        let again = serde_json::to_string(&m).expect("a manifest serialises");
        let m2 = Manifest::parse(&again, path).expect("a serialised manifest parses");
        assert_eq!(m, m2);
        let _ = m.local_bytes();
        let _ = m.remote();
    } else if let Err(e) = Manifest::parse(&text, path) {
        assert!(e.to_string().contains("MANIFEST"));
    }
});
