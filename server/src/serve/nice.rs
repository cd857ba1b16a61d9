//! CPU priority of work that must not slow ingest down: each query, and each
//! background compaction, runs on a thread of its own made nicer than the rest of
//! the server (`[limits] query_nice`), so that when the cores are busy the
//! scheduler runs ingest, acknowledgements and flushes first
//! (docs/decisions/0008-query-cpu-priority.md). The threads such work starts
//! (a query's segment scans) inherit its priority. Linux only; elsewhere the
//! work runs at the server's priority.
//!
//! The server's only `unsafe`: two calls into libc that take and return plain
//! integers.
#![allow(unsafe_code)]

/// Starts `f` on a new thread named `name`, `nice` steps below the calling
/// thread's CPU priority, inside the caller's Tokio runtime if it has one (so `f`
/// may use its timers and `Handle::block_on`).
pub(crate) fn spawn_nice(
    name: &str,
    nice: u8,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _inside = runtime.as_ref().map(tokio::runtime::Handle::enter);
            lower_priority(nice);
            f();
        })
        .map(drop)
}

/// Makes the calling thread `by` nice steps lower in CPU priority (at most to 19).
/// Lowering needs no privilege; raising it back would, so it is done only on
/// threads that end with their query.
#[cfg(target_os = "linux")]
fn lower_priority(by: u8) {
    if by == 0 {
        return;
    }
    // SAFETY: getpriority and setpriority read and write the scheduling priority
    // of the calling thread (who = 0; on Linux the nice value is per thread) and
    // touch no memory of ours.
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let target = (now + i32::from(by)).min(19);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the query thread's priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_by: u8) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value of the calling thread, from `/proc/thread-self/stat`.
    fn nice_now() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // Fields after the command (which may hold spaces) start after ") ";
        // the nice value is field 19, the 17th after it.
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(16)?.parse().ok())
            .unwrap_or(i32::MIN)
    }

    #[test]
    fn a_query_thread_and_its_scan_threads_run_nicer_and_the_caller_does_not() {
        let before = nice_now();
        assert_ne!(before, i32::MIN, "/proc/thread-self/stat unreadable");
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn_nice("test", 10, move || {
            let mine = nice_now();
            let child = std::thread::scope(|s| s.spawn(nice_now).join().unwrap_or(i32::MIN));
            let _ = tx.send((mine, child));
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"));
        let (mine, child) = rx.recv().unwrap_or((i32::MIN, i32::MIN));
        assert_eq!(mine, (before + 10).min(19));
        assert_eq!(child, mine);
        assert_eq!(nice_now(), before);
    }
}
