//! Fuzz the Flight `DoPut` path: Arrow IPC stream bytes decoded by arrow-ipc's
//! reader (the decoder `DoPut`'s `FlightRecordBatchStream` uses, with validation
//! on), then converted by `heimdall_server::convert::arrow_records`, the function
//! the server runs. The first byte picks the `DoPut` command.
//!
//! Nothing panics; an accepted batch keeps one record per row, within the limits,
//! and its WAL payload decodes to the same records.
#![no_main]

mod common;

use std::io::Cursor;

use arrow_ipc::reader::StreamReader;
use engine::model::Tenant;
use heimdall_server::convert::{arrow_records, PutCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, ipc)) = data.split_first() else {
        return;
    };
    let mut cmd = PutCommand::default();
    if pick & 1 == 1 {
        cmd.stream_fields = vec!["host".into(), "service".into()];
    }
    if pick & 2 == 2 {
        cmd.stream.insert("source".into(), "fuzz".into());
    }
    let Ok(reader) = StreamReader::try_new(Cursor::new(ipc), None) else {
        return;
    };
    for batch in reader.take(16) {
        let Ok(batch) = batch else { return };
        let Ok(records) = arrow_records(&batch, &cmd, 42) else {
            continue;
        };
        assert_eq!(records.len(), batch.num_rows());
        common::check_accepted(&Tenant::default(), &records, None);
    }
});
