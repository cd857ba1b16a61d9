//! CPU priority of work that must not slow ingest down: each query (once it
//! holds its snapshot of the engine) and each background compaction runs on a
//! thread of its own at a lower priority than the rest of the server (queries:
//! `[limits] query_priority`), so that when the cores are busy the scheduler runs
//! ingest, acknowledgements and flushes first
//! (docs/decisions/0008-query-cpu-priority.md). The threads such work starts
//! (a query's segment scans) inherit its priority. Linux only; elsewhere the
//! work runs at the server's priority.
//!
//! The server's only `unsafe`: three calls into libc on the calling thread's
//! scheduling.
#![allow(unsafe_code)]

/// Starts `f` on a new thread named `name`, inside the caller's Tokio runtime if
/// it has one (so `f` may use its timers and `Handle::block_on`). `f` lowers its
/// priority itself ([`lower_priority`]) once it holds no lock that ingest takes.
pub(crate) fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _inside = runtime.as_ref().map(tokio::runtime::Handle::enter);
            f();
        })
        .map(drop)
}

/// How much lower than the rest of the server a thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    /// `SCHED_IDLE`: runs on what the server's other threads leave idle, and any
    /// of them that wakes up takes the CPU at once.
    Idle,
    /// 10 nice steps lower: keeps about a tenth of a CPU the server's other
    /// threads want.
    Low,
    /// No change.
    Normal,
}

/// Lowers the calling thread's CPU priority to `p`. Lowering needs no
/// privilege; raising it back would, so it is done only on threads that end with
/// their work.
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority(p: Priority) {
    let failed = match p {
        Priority::Normal => false,
        Priority::Idle => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the scheduling policy of the calling thread (pid 0;
            // on Linux a policy is per thread) from a parameter that lives across
            // the call; touches no other memory of ours.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 }
        }
        Priority::Low => {
            // SAFETY: getpriority and setpriority read and write the nice value
            // of the calling thread (who = 0; on Linux it is per thread) and
            // touch no memory of ours.
            let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            // SAFETY: as above.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, (now + 10).min(19)) != 0 }
        }
    };
    if failed {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the thread's CPU priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority(_p: Priority) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::Priority;

    /// The calling thread's (nice value, scheduling policy), from
    /// `/proc/thread-self/stat` (fields 19 and 41).
    fn sched_now() -> (i32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // Fields after the command (which may hold spaces) start after ") ",
        // with field 3.
        let rest: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or(Vec::new(), |(_, r)| r.split(' ').collect());
        let field = |n: usize| {
            rest.get(n - 3)
                .and_then(|v| v.parse().ok())
                .unwrap_or(i32::MIN)
        };
        (field(19), field(41))
    }

    /// `p` on a new thread: what it and a thread it starts run at.
    fn lowered(p: Priority) -> ((i32, i32), (i32, i32)) {
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn_thread("test", move || {
            super::lower_priority(p);
            let mine = sched_now();
            let child = std::thread::scope(|s| s.spawn(sched_now).join().unwrap_or_default());
            let _ = tx.send((mine, child));
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"));
        rx.recv().unwrap_or_default()
    }

    #[test]
    fn lowered_threads_and_the_threads_they_start_run_lower_and_the_caller_does_not() {
        let before = sched_now();
        assert_ne!(before.0, i32::MIN, "/proc/thread-self/stat unreadable");
        assert_eq!(before.1, libc::SCHED_OTHER);
        let (mine, child) = lowered(Priority::Low);
        assert_eq!(mine, ((before.0 + 10).min(19), libc::SCHED_OTHER));
        assert_eq!(child, mine);
        let (mine, child) = lowered(Priority::Idle);
        assert_eq!(mine.1, libc::SCHED_IDLE);
        assert_eq!(child, mine);
        assert_eq!(lowered(Priority::Normal).0, before);
        assert_eq!(sched_now(), before);
    }
}
