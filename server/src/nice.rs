//! CPU priority of work that must not slow ingest down: each query (once it
//! holds its snapshot of the engine) and each background compaction runs on a
//! thread of its own at a lower priority than the rest of the server (queries:
//! `[limits] query_priority`), so that when the cores are busy the scheduler runs
//! ingest, acknowledgements and flushes first
//! (docs/decisions/0008-query-cpu-priority.md). The threads such work starts
//! (a query's segment scans) inherit its priority. Linux only; elsewhere the
//! work runs at the server's priority.
//!
//! Priority alone does not bound how long a write waits: Linux's scheduler
//! (EEVDF) lets a running thread finish its time slice (about 1.4 ms on 2 cores)
//! before a thread that wakes up takes the CPU, unless the woken one asks for a
//! shorter slice. So the server's own threads ask for a short one
//! ([`set_latency_slice`], `[limits] latency_slice`, Linux 6.12 and later), and
//! lowered threads go back to the kernel's default.
//!
//! The server's only `unsafe`: calls into libc on the calling thread's
//! scheduling.
#![allow(unsafe_code)]

use std::time::Duration;

/// Starts `f` on a new thread named `name`, inside the caller's Tokio runtime if
/// it has one (so `f` may use its timers and `Handle::block_on`). `f` lowers its
/// priority itself ([`lower_priority`]) once it holds no lock that ingest takes.
pub fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
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
pub enum Priority {
    /// `SCHED_IDLE`: runs on what the server's other threads leave idle, and any
    /// of them that wakes up takes the CPU at once.
    Idle,
    /// 10 nice steps lower: keeps about a tenth of a CPU the server's other
    /// threads want.
    Low,
    /// No change.
    Normal,
}

/// The kernel's `struct sched_attr` (its first version, 48 bytes), for
/// `sched_setattr(2)`.
#[cfg(target_os = "linux")]
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// For `SCHED_OTHER` and `SCHED_BATCH` (Linux 6.12+): the time slice in
    /// nanoseconds, 0 for the default; clamped by the kernel to 0.1-100 ms.
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Sets the calling thread's policy, nice value and time slice (`None`: the
/// kernel's default) in one call.
#[cfg(target_os = "linux")]
fn set_attr(policy: i32, nice: i32, slice: Option<Duration>) -> std::io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy as u32,
        flags: 0,
        nice,
        priority: 0,
        runtime: slice.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        deadline: 0,
        period: 0,
    };
    // SAFETY: sched_setattr reads `attr` (which lives across the call and whose
    // `size` says how much of it to read) for the calling thread (pid 0) and
    // writes no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn nice_now() -> i32 {
    // SAFETY: getpriority reads the nice value of the calling thread (who = 0;
    // on Linux it is per thread) and touches no memory of ours.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Asks for time slices of `slice` on the calling thread, and so on every
/// thread it starts afterwards (they inherit it): a thread that wakes up with a
/// shorter slice than the running one's takes the CPU at once. The server calls
/// it before it starts its runtime. Needs no privilege; a kernel older than
/// 6.12 accepts the call and ignores the slice. A zero `slice` keeps the
/// kernel's default.
#[cfg(target_os = "linux")]
pub fn set_latency_slice(slice: Duration) {
    if slice.is_zero() {
        return;
    }
    if let Err(e) = set_attr(libc::SCHED_OTHER, nice_now(), Some(slice)) {
        tracing::warn!(error = %e, "cannot set the threads' time slice ([limits] latency_slice)");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_latency_slice(_slice: Duration) {}

/// Lowers the calling thread's CPU priority to `p`, with the kernel's default
/// time slice. Lowering needs no privilege; raising it back would, so it is
/// done only on threads that end with their work.
#[cfg(target_os = "linux")]
pub fn lower_priority(p: Priority) {
    let res = match p {
        Priority::Normal => Ok(()),
        Priority::Idle => set_attr(libc::SCHED_IDLE, nice_now(), None),
        Priority::Low => set_attr(libc::SCHED_OTHER, (nice_now() + 10).min(19), None),
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "cannot lower the thread's CPU priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_priority(_p: Priority) {}

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

    /// The calling thread's time slice in ns (`se.slice` of
    /// `/proc/thread-self/sched`), if the kernel shows it.
    fn slice_now() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(' ').next()?.trim().parse().ok()
    }

    #[test]
    fn a_latency_slice_holds_for_the_threads_started_after_and_lowering_drops_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn_thread("test", move || {
            let default = slice_now();
            super::set_latency_slice(std::time::Duration::from_micros(300));
            let mine = slice_now();
            let child = std::thread::scope(|s| s.spawn(slice_now).join().unwrap_or_default());
            super::lower_priority(Priority::Low);
            let _ = tx.send((default, mine, child, slice_now()));
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"));
        let (default, mine, child, lowered) = rx.recv().unwrap_or_default();
        let Some(default) = default else {
            eprintln!("the kernel shows no se.slice: not checked");
            return;
        };
        if mine == Some(default) {
            eprintln!("the kernel keeps its own slice (before 6.12): not checked");
            return;
        }
        assert_eq!(mine, Some(300_000));
        assert_eq!(child, mine);
        assert_eq!(lowered, Some(default));
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
