//! The task supervisor: a node's background work as named tasks.
//!
//! A task runs its work once every `every`, or at once when its wake-up is
//! notified, until the supervisor stops. Each run is a tokio task of its own, so a
//! run that panics is a failure like one that returns an error: the task backs
//! off (1 s, then doubling up to `backoff_max`) and runs again; a run that
//! succeeds resets the back-off. A fatal error ([`TaskError::Fatal`]) leaves the
//! task `failed`, not run again. What each task did (state, runs, failures, last
//! duration, last error) is listed by [`Supervisor::list`] (the `tasks` Flight
//! action, `heimdall tasks`, `/metrics`). [`Supervisor::stop`] stops every task
//! after its current run: the caller then drains, flushes and syncs in order.
//! A service ([`Schedule::service`], a Kafka source) is a task whose run lasts
//! until it stops or fails: it is restarted by the same back-off.
//!
//! Work that is CPU-heavy (flushes, compaction) runs on blocking threads inside
//! the work future, never on the async workers.
//!
//! Tests inject failures with `HEIMDALL_TEST_TASK_FAULTS=name:n,...`: the first
//! `n` runs of task `name` fail with "injected fault" without running the work.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskState {
    /// Registered, not run yet.
    Starting,
    /// Its work is running.
    Running,
    /// Waiting for its next run.
    Idle,
    /// Its last run failed; waiting before running again.
    BackingOff,
    /// Ended by a fatal error; not run again.
    Failed,
    /// The supervisor stopped it.
    Stopped,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Starting,
        TaskState::Running,
        TaskState::Idle,
        TaskState::BackingOff,
        TaskState::Failed,
        TaskState::Stopped,
    ];

    /// The state's name: `starting`, `running`, `idle`, `backing_off`, `failed`,
    /// `stopped`.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Idle => "idle",
            TaskState::BackingOff => "backing_off",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
        }
    }
}

/// Why a run of a task's work failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Try again after the back-off.
    #[error("{0}")]
    Retry(String),
    /// Do not run again (the node needs an operator: e.g. a failed flush).
    #[error("{0}")]
    Fatal(String),
}

/// What a task has done.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// Its name (`flush`, `offload`, ...).
    pub name: String,
    /// What it says it does.
    pub about: String,
    /// Its state now.
    pub state: TaskState,
    /// Runs of its work, failed ones included.
    pub runs: u64,
    /// Failed runs.
    pub failures: u64,
    /// Failed runs since the last one that succeeded.
    pub failures_in_a_row: u32,
    /// How long the last run took.
    pub last_duration: Option<Duration>,
    /// The last failure's error (kept after it recovers).
    pub last_error: Option<String>,
    /// When it runs next, backing off.
    pub retry_in: Option<Duration>,
}

impl TaskInfo {
    /// As JSON (the `tasks` action's items): durations in seconds.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "about": self.about,
            "state": self.state.name(),
            "runs": self.runs,
            "failures": self.failures,
            "failures_in_a_row": self.failures_in_a_row,
            "last_duration_seconds": self.last_duration.map(|d| d.as_secs_f64()),
            "last_error": self.last_error,
            "retry_in_seconds": self.retry_in.map(|d| d.as_secs_f64()),
        })
    }
}

/// When a task runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Once every this long (after the previous run ended).
    pub every: Duration,
    /// Notified: run now.
    pub wake: Option<Arc<Notify>>,
    /// The longest back-off after failures.
    pub backoff_max: Duration,
}

impl Schedule {
    /// Every `every`, backing off up to a minute.
    pub fn every(every: Duration) -> Schedule {
        Schedule {
            every,
            wake: None,
            backoff_max: Duration::from_secs(60),
        }
    }

    /// A service: a run lasts as long as the work does (a Kafka consumer's life,
    /// ending when the supervisor stops or with an error), and the next starts
    /// at once, or after the back-off (up to 30 s) when it failed.
    pub fn service() -> Schedule {
        Schedule {
            every: Duration::ZERO,
            wake: None,
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Also run when `wake` is notified.
    pub fn or_when(mut self, wake: Arc<Notify>) -> Schedule {
        self.wake = Some(wake);
        self
    }
}

/// The first back-off; each failure in a row doubles it.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    info: Mutex<TaskInfo>,
    /// Injected failures left (tests).
    faults: Mutex<u32>,
}

impl Entry {
    fn update(&self, f: impl FnOnce(&mut TaskInfo)) {
        f(&mut self.info.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The supervisor of a node's tasks; see the module docs.
#[derive(Debug)]
pub struct Supervisor {
    tasks: Mutex<BTreeMap<String, Arc<Entry>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    faults: BTreeMap<String, u32>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A supervisor with no tasks.
    pub fn new() -> Supervisor {
        let faults = std::env::var("HEIMDALL_TEST_TASK_FAULTS")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|p| {
                        let (name, n) = p.rsplit_once(':')?;
                        Some((name.trim().to_string(), n.trim().parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Supervisor {
            tasks: Mutex::new(BTreeMap::new()),
            handles: Mutex::new(Vec::new()),
            stop: watch::channel(false).0,
            faults,
        }
    }

    /// Runs `work` as task `name` on `schedule` (on the current tokio runtime)
    /// until [`Self::stop`].
    pub fn spawn<F, Fut>(&self, name: &str, about: &str, schedule: Schedule, mut work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let entry = Arc::new(Entry {
            info: Mutex::new(TaskInfo {
                name: name.to_string(),
                about: about.to_string(),
                state: TaskState::Starting,
                runs: 0,
                failures: 0,
                failures_in_a_row: 0,
                last_duration: None,
                last_error: None,
                retry_in: None,
            }),
            faults: Mutex::new(self.faults.get(name).copied().unwrap_or(0)),
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::clone(&entry));
        let mut stop = self.stop.subscribe();
        let handle = tokio::spawn(async move {
            let mut wait = schedule.every;
            loop {
                let woken = async {
                    match &schedule.wake {
                        Some(w) => w.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // A stop first: a service's next run is due at once.
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(wait) => {}
                    _ = woken => {}
                }
                entry.update(|i| {
                    i.state = TaskState::Running;
                    i.retry_in = None;
                });
                let started = Instant::now();
                let injected = {
                    let mut f = entry.faults.lock().unwrap_or_else(|p| p.into_inner());
                    (*f > 0).then(|| *f -= 1).is_some()
                };
                let result = if injected {
                    Err(TaskError::Retry(
                        "injected fault (HEIMDALL_TEST_TASK_FAULTS)".into(),
                    ))
                } else {
                    // A run of its own: a panic is a failure, not the task's end.
                    match tokio::spawn(work()).await {
                        Ok(r) => r,
                        Err(e) => Err(TaskError::Retry(format!("the run panicked: {e}"))),
                    }
                };
                let took = started.elapsed();
                let mut fatal = false;
                entry.update(|i| {
                    i.runs += 1;
                    i.last_duration = Some(took);
                    match &result {
                        Ok(()) => {
                            i.failures_in_a_row = 0;
                            i.state = TaskState::Idle;
                            wait = schedule.every;
                        }
                        Err(e) => {
                            i.failures += 1;
                            i.failures_in_a_row = i.failures_in_a_row.saturating_add(1);
                            i.last_error = Some(e.to_string());
                            if matches!(e, TaskError::Fatal(_)) {
                                i.state = TaskState::Failed;
                                fatal = true;
                            } else {
                                let doublings = i.failures_in_a_row.saturating_sub(1).min(16);
                                wait = (BACKOFF_FIRST * 2u32.pow(doublings))
                                    .min(schedule.backoff_max.max(BACKOFF_FIRST));
                                i.state = TaskState::BackingOff;
                                i.retry_in = Some(wait);
                            }
                        }
                    }
                });
                if let Err(e) = &result {
                    tracing::warn!(task = %entry.info.lock().unwrap_or_else(|p| p.into_inner()).name,
                        error = %e, "background task failed");
                }
                if fatal {
                    let _ = stop.wait_for(|s| *s).await;
                    return;
                }
            }
            entry.update(|i| {
                i.state = TaskState::Stopped;
                i.retry_in = None;
            });
        });
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Whether [`Self::stop`] was called: long runs (a compaction's merges)
    /// check it between steps, so that a shutdown does not wait for all of them.
    pub fn stopping(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let rx = self.stop.subscribe();
        move || *rx.borrow()
    }

    /// Every task, by name.
    pub fn list(&self) -> Vec<TaskInfo> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.info.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Stops every task after its current run and waits for them.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    // Paused time: the back-offs (1 + 2 + 4 s) pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_failing_task_backs_off_and_recovers_and_a_panic_is_a_failure() {
        let s = Supervisor::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        s.spawn(
            "flaky",
            "fails twice, panics once, then works",
            Schedule::every(Duration::from_millis(10)),
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 | 1 => Err(TaskError::Retry(format!("failure {n}"))),
                        2 => panic!("boom"),
                        _ => Ok(()),
                    }
                }
            },
        );
        let wake = Arc::new(Notify::new());
        s.spawn(
            "broken",
            "fails for good",
            Schedule::every(Duration::from_millis(10)).or_when(Arc::clone(&wake)),
            || async { Err(TaskError::Fatal("disk gone".into())) },
        );
        // Backing off after the first failure (1 s), then 2 s, 4 s: within 10 s
        // the third failure (the panic) is behind it and a run succeeded.
        let started = tokio::time::Instant::now();
        let mut seen_backoff = false;
        loop {
            let flaky = s.list().into_iter().find(|t| t.name == "flaky").unwrap();
            seen_backoff |= flaky.state == TaskState::BackingOff && flaky.retry_in.is_some();
            if flaky.runs >= 4 && flaky.state == TaskState::Idle {
                assert_eq!(flaky.failures, 3);
                assert_eq!(flaky.failures_in_a_row, 0);
                assert!(flaky.last_error.unwrap().contains("panicked"));
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "{flaky:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen_backoff);
        // Backing off took 1 + 2 + 4 s.
        assert!(started.elapsed() >= Duration::from_secs(6));
        let broken = s.list().into_iter().find(|t| t.name == "broken").unwrap();
        assert_eq!((broken.state, broken.runs), (TaskState::Failed, 1));
        wake.notify_one();
        s.stop().await;
        let states: Vec<_> = s.list().into_iter().map(|t| (t.name, t.state)).collect();
        assert_eq!(
            states,
            [
                ("broken".to_string(), TaskState::Failed),
                ("flaky".to_string(), TaskState::Stopped)
            ]
        );
        assert!(calls.load(Ordering::SeqCst) >= 4);
    }

    /// A service's run lasts until the supervisor stops it; a failed life is
    /// restarted after the back-off; the stop ends the live one (it watches
    /// `stopping`) and the task is `stopped`.
    #[tokio::test(start_paused = true)]
    async fn a_service_runs_until_stopped_and_a_failed_life_is_restarted() {
        let s = Arc::new(Supervisor::new());
        let lives = Arc::new(AtomicU32::new(0));
        let (l, stopping) = (Arc::clone(&lives), s.stopping());
        let stopping = Arc::new(stopping);
        s.spawn("svc", "a consumer", Schedule::service(), move || {
            let (n, stopping) = (l.fetch_add(1, Ordering::SeqCst), Arc::clone(&stopping));
            async move {
                if n == 0 {
                    return Err(TaskError::Retry("the broker went away".into()));
                }
                while !stopping() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let svc = s.list().into_iter().find(|t| t.name == "svc").unwrap();
        // One failed life, then one running for the rest (1 s of back-off).
        assert_eq!(
            (svc.state, svc.runs, svc.failures),
            (TaskState::Running, 1, 1)
        );
        assert_eq!(lives.load(Ordering::SeqCst), 2);
        s.stop().await;
        let svc = s.list().into_iter().find(|t| t.name == "svc").unwrap();
        assert_eq!((svc.state, svc.runs), (TaskState::Stopped, 2));
        assert_eq!(lives.load(Ordering::SeqCst), 2, "no life after the stop");
    }
}
