//! Micro benchmarks of the WAL's CPU-side work (framing, decoding) and of one durable
//! append per backend. `cargo bench -p heimdall-benches --bench wal`

use bytes::Bytes;
use divan::Bencher;
use wal::format;

fn main() {
    divan::main();
}

fn frames(n: usize, size: usize) -> Vec<u8> {
    let mut b = format::encode_header(1, 0).to_vec();
    for i in 0..n {
        format::encode_frame(&mut b, 1 + i as u64, &vec![b'x'; size]);
    }
    b
}

/// Framing one append batch: 100 records of 200 bytes.
#[divan::bench]
fn encode_batch_100x200(bencher: Bencher<'_, '_>) {
    let payload = vec![b'x'; 200];
    let mut buf = Vec::with_capacity(64 << 10);
    bencher
        .counter(divan::counter::BytesCount::new(100 * 216usize))
        .bench_local(|| {
            buf.clear();
            for i in 0..100u64 {
                format::encode_frame(&mut buf, i + 1, &payload);
            }
            divan::black_box(buf.len())
        });
}

/// Recovery-side decoding of a 4 MiB file of 200-byte records.
#[divan::bench]
fn scan_file_4mib(bencher: Bencher<'_, '_>) {
    let file = frames((4 << 20) / 216, 200);
    bencher
        .counter(divan::counter::BytesCount::new(file.len()))
        .bench_local(|| {
            divan::black_box(format::scan_file(&file, 1 << 20).map(|s| s.frames.len()))
        });
}

/// One durable append of one 200-byte record (write + fdatasync), per backend.
#[divan::bench(args = ["pwrite", "io_uring"], sample_count = 50, sample_size = 10)]
fn durable_append_one(bencher: Bencher<'_, '_>, backend: &str) {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let choice = if backend == "pwrite" {
        wal::BackendChoice::Pwrite
    } else {
        wal::BackendChoice::IoUring
    };
    let wal = wal::Wal::open(
        dir.path(),
        wal::WalConfig {
            backend: choice,
            ..wal::WalConfig::default()
        },
    )
    .expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let payload = Bytes::from(vec![b'x'; 200]);
    bencher.bench_local(|| rt.block_on(wal.append(payload.clone())).expect("append"));
}
