//! systemd's service protocol (`sd_notify`): `READY=1` once every listener is bound,
//! `RELOADING=1` with `MONOTONIC_USEC` and then `READY=1` around a reload (what
//! `Type=notify-reload` expects), `STOPPING=1` when draining, and `WATCHDOG=1` pings at half the
//! unit's `WatchdogSec`. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!("sd_notify: {e}");
    }
}

/// Every listener is bound: the service is up.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts now (`ready` ends it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => debug!("sd_notify: monotonic clock: {e}"),
    }
}

/// Draining before exit.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Pings systemd's watchdog at half its interval, forever; never resolves when the unit has
/// no watchdog. Run it beside the daemon's work: a wedged runtime stops the pings and systemd
/// restarts the service.
pub async fn watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
