//! The only place that reads the wall clock.
//!
//! Service and scheduler code take a [`Clock`] and ask it for `now` and for
//! sleeps, so tests drive time with a [`ManualClock`]: advancing it wakes
//! anything sleeping on it, and a 30-minute grant expires without a real
//! 30-minute wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::domain::Timestamp;

/// A boxed future, so the trait stays object safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Source of the current time and of sleeps measured in that time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Resolves once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// The shared handle the app passes around.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = self.now().until(deadline);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to. Used by tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves the clock forward and wakes every sleeper whose deadline passed.
    pub fn advance(&self, by: std::time::Duration) {
        self.now.send_modify(|t| *t = t.plus(by));
    }

    /// Sets the clock to `t` (which may be earlier, to model a skewed replica).
    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock was dropped: nothing will ever wake us.
            if rx.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn advancing_a_manual_clock_wakes_sleepers() {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let sleep = clock.sleep_until(Timestamp::from_millis(60_000));
        let handle = tokio::spawn(sleep);
        tokio::task::yield_now().await;
        assert!(!handle.is_finished());
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!handle.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), handle).await.unwrap().unwrap();
    }
}
