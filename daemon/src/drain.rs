//! The one drain primitive handed to every service and connection: a [`Drain`] says when
//! the process (or one publish) is stopping, a [`Trigger`] starts it.
//!
//! A task selects on [`Drain::stopped`] beside its work and winds down when it resolves:
//! listeners stop accepting, connections send GOAWAY and finish what is in flight. Tests that
//! run a service on its own use [`Drain::disabled`].

use tokio::sync::watch;

/// Starts the drain every [`Drain`] made from it sees. Dropping it also counts as a drain,
/// so no task outlives what started it.
#[derive(Debug, Clone)]
pub struct Trigger(watch::Sender<bool>);

/// Whether to stop: cheap to clone, one per task. `None`: a drain that never starts.
#[derive(Debug, Clone)]
pub struct Drain(Option<watch::Receiver<bool>>);

/// A new trigger and the drain it starts.
pub fn channel() -> (Trigger, Drain) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Drain(Some(rx)))
}

impl Trigger {
    /// Starts the drain (again: no effect).
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Another handle on this drain.
    pub fn drain(&self) -> Drain {
        Drain(Some(self.0.subscribe()))
    }
}

impl Drain {
    /// A drain that never starts, for services run on their own (tests).
    pub fn disabled() -> Self {
        Drain(None)
    }

    /// Resolves once the drain has started (or its trigger is gone).
    pub async fn stopped(&mut self) {
        match &mut self.0 {
            // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
            Some(rx) => {
                let _ = rx.wait_for(|s| *s).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_drain() {
        let (trigger, mut a) = channel();
        let mut b = trigger.drain();
        assert!(!a.is_draining());
        trigger.start();
        a.stopped().await;
        b.stopped().await;
        assert!(b.is_draining());
    }

    #[tokio::test]
    async fn a_dropped_trigger_drains_and_a_disabled_drain_never_does() {
        let (trigger, mut a) = channel();
        drop(trigger);
        a.stopped().await;
        let d = Drain::disabled();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), {
            let mut d = d.clone();
            async move { d.stopped().await }
        });
        assert!(waited.await.is_err());
        assert!(!d.is_draining());
    }
}
