//! Supervised background work: every long-running task of a process is owned here.
//!
//! A task is spawned under a name into one [`Supervisor`] (a `JoinSet`). Until shutdown begins,
//! no task is expected to end: one that returns an error, panics, or merely returns is a
//! failure of the process. The first failure is logged once with its cause chain, recorded in
//! [`Health`] (so `/readyz` answers 503 naming the task), and reported to
//! [`crate::startup::Application::run`], which shuts the process down gracefully and exits
//! non-zero so a supervisor (systemd, Kubernetes, compose) restarts it. A process that limps on
//! without its admitter or its concert cache would look healthy while wronging fans.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::task::JoinSet;

/// What `/readyz` reports besides the reachability of Kafka and Redis.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    failed: Mutex<Option<TaskFailure>>,
    /// Parts of the work this process cannot do now, found by its own tasks (`events`: the
    /// events topic is missing or unwritable); `/readyz` lists them in `degraded`.
    degraded: Mutex<std::collections::BTreeSet<&'static str>>,
}

/// A supervised task that ended when it should not have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskFailure {
    /// The task's name ("admitter", "concert cache refresh", …).
    pub task: &'static str,
    /// Why it ended: the error's cause chain, the panic message, or "stopped on its own".
    pub cause: String,
}

impl Health {
    /// Shutdown has begun: readiness is 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The first task that failed, if any.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.failed.lock().expect("never poisoned").clone()
    }

    /// Marks `part` degraded (or no longer): listed in `/readyz`'s `degraded`, never a 503.
    /// Whether that changed anything.
    pub fn set_degraded(&self, part: &'static str, degraded: bool) -> bool {
        let mut parts = self.degraded.lock().expect("never poisoned");
        if degraded {
            parts.insert(part)
        } else {
            parts.remove(part)
        }
    }

    /// The parts marked degraded, in name order.
    pub fn degraded(&self) -> Vec<&'static str> {
        self.degraded.lock().expect("never poisoned").iter().copied().collect()
    }

    fn record(&self, failure: TaskFailure) {
        self.failed.lock().expect("never poisoned").get_or_insert(failure);
    }
}

/// Owns the process's long-running tasks.
pub struct Supervisor {
    tasks: JoinSet<Ended>,
    health: Arc<Health>,
}

/// How a task ended.
struct Ended {
    name: &'static str,
    /// A one-shot task (set-up work) may end successfully at any time.
    once: bool,
    outcome: Result<(), String>,
}

impl Supervisor {
    pub fn new(health: Arc<Health>) -> Self {
        Supervisor { tasks: JoinSet::new(), health }
    }

    /// Runs `work` as the task `name`. Its error, its panic, or its ending before shutdown
    /// fails the process (see the module docs).
    pub fn spawn<F>(&mut self, name: &'static str, work: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.spawn_task(name, false, work);
    }

    /// Runs set-up work as the task `name`: like [`spawn`](Self::spawn), except that ending
    /// successfully is its purpose, not a failure.
    pub fn spawn_once<F>(&mut self, name: &'static str, work: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.spawn_task(name, true, work);
    }

    fn spawn_task<F>(&mut self, name: &'static str, once: bool, work: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.spawn(async move {
            let outcome = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
            };
            Ended { name, once, outcome }
        });
    }

    /// Waits for the first task to end, which before shutdown is always a failure: it is logged,
    /// recorded for `/readyz`, and returned. Pending forever when there are no tasks.
    pub async fn failure(&mut self) -> TaskFailure {
        let failure = loop {
            match self.tasks.join_next().await {
                Some(Ok(Ended { name, once: true, outcome: Ok(()) })) => tracing::debug!(task = name, "set-up done"),
                Some(Ok(Ended { name, outcome: Ok(()), .. })) => {
                    break TaskFailure { task: name, cause: "stopped on its own".into() }
                }
                Some(Ok(Ended { name, outcome: Err(cause), .. })) => break TaskFailure { task: name, cause },
                // Tasks catch their own panics; a join error here means the task was aborted.
                Some(Err(e)) => break TaskFailure { task: "unknown", cause: e.to_string() },
                None => std::future::pending().await,
            }
        };
        tracing::error!(task = failure.task, cause = %failure.cause, "a background task failed; shutting down");
        self.health.record(failure.clone());
        failure
    }

    /// At shutdown: waits up to `grace` until at most `left` tasks are still running (logging
    /// those that end). False when more were still running at the deadline.
    pub async fn drain_to(&mut self, left: usize, grace: std::time::Duration) -> bool {
        let wait = async {
            while self.tasks.len() > left {
                match self.tasks.join_next().await {
                    Some(joined) => log_stopped(joined),
                    None => return,
                }
            }
        };
        tokio::time::timeout(grace, wait).await.is_ok()
    }

    /// At shutdown: waits up to `grace` for every task to end, logging those that end with an
    /// error, then aborts the rest.
    pub async fn drain(mut self, grace: std::time::Duration) {
        let all = async {
            while let Some(joined) = self.tasks.join_next().await {
                log_stopped(joined);
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(left = self.tasks.len(), "tasks still running after the grace period; aborting them");
            self.tasks.abort_all();
        }
    }
}

/// Logs a task that ended during shutdown.
fn log_stopped(joined: Result<Ended, tokio::task::JoinError>) {
    match joined {
        Ok(Ended { name, outcome: Err(cause), .. }) => {
            tracing::warn!(task = name, cause = %cause, "task ended with an error at shutdown")
        }
        Ok(Ended { name, .. }) => tracing::debug!(task = name, "task stopped"),
        Err(e) => tracing::warn!(error = %e, "task aborted"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_with_its_message() {
        let health = Arc::new(Health::default());
        let mut s = Supervisor::new(health.clone());
        s.spawn("forever", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        s.spawn("doomed", async { panic!("the admitter's invariant broke") });
        let f = s.failure().await;
        assert_eq!(f.task, "doomed");
        assert_eq!(f.cause, "panicked: the admitter's invariant broke");
        assert_eq!(health.failure(), Some(f));
        s.drain(std::time::Duration::from_millis(10)).await;
    }

    #[tokio::test]
    async fn an_error_or_a_quiet_exit_is_a_failure_too() {
        let mut s = Supervisor::new(Arc::new(Health::default()));
        s.spawn("erring", async { Err(anyhow::anyhow!("inner").context("outer")) });
        assert_eq!(s.failure().await.cause, "outer: inner");
        s.spawn_once("set-up", async { Ok(()) });
        s.spawn("quitter", async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(())
        });
        let f = s.failure().await;
        assert_eq!((f.task, f.cause.as_str()), ("quitter", "stopped on its own"), "set-up work may end");
    }
}
