//! One lifecycle type for every daihuo process: readiness, the drain its tasks watch, the
//! tasks themselves, and the admin listener, which outlives the drain so `/readyz` answers
//! 503 while it runs.
//!
//! A daemon's `start` binds its listeners, spawns its services with [`Lifecycle::spawn`]
//! (each given [`Lifecycle::drain`]), serves its admin listener, then calls
//! [`Lifecycle::set_ready`]. Shutdown is [`Lifecycle::unready`] (the lame-duck period, see
//! `crate::cli`), then [`Lifecycle::shutdown`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::warn;

use crate::admin::Admin;
use crate::drain::{self, Drain, Trigger};

/// Readiness, drain, tasks and the admin listener of one process.
pub struct Lifecycle {
    ready: Arc<AtomicBool>,
    trigger: Trigger,
    drain: Drain,
    tasks: JoinSet<()>,
    /// The admin listener's own drain and task, stopped last.
    admin: Option<(Trigger, JoinHandle<()>)>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// Not ready, not draining, no tasks.
    pub fn new() -> Self {
        let (trigger, drain) = drain::channel();
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            trigger,
            drain,
            tasks: JoinSet::new(),
            admin: None,
        }
    }

    /// The drain every service and connection of this process watches.
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Runs `task` until it ends; [`Lifecycle::shutdown`] waits for it (within the grace).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The task set, for components that spawn their own tasks into it.
    pub fn tasks(&mut self) -> &mut JoinSet<()> {
        &mut self.tasks
    }

    /// The readiness flag `/readyz` reads (for [`Admin::new`]).
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Serves `admin` on `listener` until the end of [`Lifecycle::shutdown`].
    pub fn serve_admin(&mut self, listener: TcpListener, admin: Admin) {
        let (trigger, drain) = drain::channel();
        let task = tokio::spawn(crate::serve::serve_plain(listener, Arc::new(admin), drain));
        self.admin = Some((trigger, task));
    }

    /// Every listener is bound and serving: `/readyz` may say so.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// `/readyz` answers 503 from now on; everything keeps serving.
    pub fn unready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Drains: readiness false, every task told to stop, and given `grace` to finish before
    /// what is left is aborted; then the admin listener stops.
    pub async fn shutdown(mut self, grace: Duration) {
        self.unready();
        self.trigger.start();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!(
                left = self.tasks.len(),
                "grace period over, aborting the rest"
            );
            self.tasks.abort_all();
            // Until each is dropped, it may still hold what the caller closes next.
            while self.tasks.join_next().await.is_some() {}
        }
        if let Some((trigger, task)) = self.admin.take() {
            trigger.start();
            let _ = task.await;
        }
    }
}
