//! Pacing of Slack Web API calls, so jitbot stays inside Slack's documented
//! rate limits instead of learning them from 429s.
//!
//! Each method has a token bucket sized by its tier (Slack's "Tier 3" is
//! about 50 calls a minute, "Tier 4" about 100, both with short bursts);
//! `chat.postMessage` also has one bucket per channel (about one message a
//! second, short bursts allowed). A call reserves a slot in every bucket it
//! touches and sleeps until that slot comes, unless it would wait longer
//! than the caller allows: then nothing is reserved and the caller is told
//! how long to stay away, so a notice job gives its worker back instead of
//! sleeping for minutes.
//!
//! A 429 blocks the method (for `chat.postMessage`, that channel) until its
//! `Retry-After` has passed. That block is kept in the application's clock,
//! the clock jobs are rescheduled in, so the retried job finds it lifted.
//! The buckets themselves refill in real time: they measure Slack's clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::domain::Timestamp;

/// How hard Slack lets an app call one method (or post to one channel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    /// Sustained calls per minute.
    pub per_minute: f64,
    /// Calls that may go at once after a quiet spell.
    pub burst: f64,
}

/// `chat.postMessage` to one channel: about one message a second, with
/// short bursts allowed.
pub const PER_CHANNEL: Tier = Tier { per_minute: 60.0, burst: 8.0 };

/// The tier of a Web API method, from Slack's documentation of each.
pub fn tier(method: &str) -> Tier {
    match method {
        // "Special": per channel (above); the workspace as a whole may post
        // several hundred messages a minute.
        "chat.postMessage" => Tier { per_minute: 300.0, burst: 30.0 },
        // Tier 3.
        "chat.update" => Tier { per_minute: 50.0, burst: 15.0 },
        // Tier 4.
        "views.publish" | "views.open" | "views.update" | "users.info" => Tier { per_minute: 100.0, burst: 20.0 },
        // Tier 3 for anything else jitbot may call one day.
        _ => Tier { per_minute: 50.0, burst: 10.0 },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens at `at`; negative when slots in the future are reserved.
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    /// Keys blocked by a 429, until when (application clock).
    blocked: HashMap<String, Timestamp>,
    /// Per bucket, when the next refused caller is told to come back (see
    /// [`Pacer::defer`]).
    deferred: HashMap<String, Instant>,
}

/// The buckets and blocks of one Slack client.
pub struct Pacer {
    clock: SharedClock,
    state: Mutex<State>,
}

/// The keys a call counts against: the method, and for `chat.postMessage`
/// also its channel.
fn keys(method: &str, channel: Option<&str>) -> Vec<(String, Tier)> {
    let mut keys = vec![(method.to_owned(), tier(method))];
    if let (Some(channel), "chat.postMessage") = (channel, method) {
        keys.push((block_key(method, Some(channel)), PER_CHANNEL));
    }
    keys
}

/// What a 429 blocks: the channel for `chat.postMessage`, else the method.
fn block_key(method: &str, channel: Option<&str>) -> String {
    match (method, channel) {
        ("chat.postMessage", Some(channel)) => format!("{method} {channel}"),
        _ => method.to_owned(),
    }
}

impl Pacer {
    /// A pacer with full buckets.
    pub fn new(clock: SharedClock) -> Self {
        Self { clock, state: Mutex::new(State::default()) }
    }

    /// Reserves a slot for one call: `Ok(wait)` is how long to sleep before
    /// making it; `Err(retry_after)` means it would wait longer than
    /// `max_wait` (or the method is blocked by a 429) and nothing was
    /// reserved.
    pub fn reserve(&self, method: &str, channel: Option<&str>, max_wait: Duration) -> Result<Duration, Duration> {
        self.reserve_at(Instant::now(), method, channel, max_wait)
    }

    /// [`Self::reserve`] at the real instant `now`.
    fn reserve_at(
        &self,
        now: Instant,
        method: &str,
        channel: Option<&str>,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let app_now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let blocked = state
            .blocked
            .get(&block_key(method, channel))
            .filter(|until| **until > app_now)
            .map(|until| app_now.until(*until));
        if let Some(left) = blocked {
            return Err(left);
        }
        let keys = keys(method, channel);
        let mut wait = Duration::ZERO;
        let mut binding = None;
        let mut refilled = Vec::with_capacity(keys.len());
        for (key, tier) in &keys {
            let rate = tier.per_minute / 60.0;
            let b = state.buckets.get(key).copied().unwrap_or(Bucket { tokens: tier.burst, at: now });
            let tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(tier.burst);
            if tokens < 1.0 {
                let this = Duration::from_secs_f64((1.0 - tokens) / rate);
                if this > wait {
                    wait = this;
                    binding = Some((key, *tier));
                }
            }
            refilled.push((key.clone(), tokens));
        }
        if wait > max_wait {
            return Err(match binding {
                Some((key, tier)) => Self::defer(&mut state, now, key, tier, wait),
                None => wait,
            });
        }
        for (key, tokens) in refilled {
            state.buckets.insert(key, Bucket { tokens: tokens - 1.0, at: now });
        }
        Ok(wait)
    }

    /// How long a refused caller stays away. Refused callers are spread one
    /// slot of the slowest bucket apart, in the order they were refused:
    /// told the same "come back in 2 s", a backlog of notices would all
    /// return at once, be refused again and again, and spend the database
    /// on rescheduling instead of on revocations. Spread out, each comes
    /// back about when a slot is free for it.
    fn defer(state: &mut State, now: Instant, key: &str, tier: Tier, wait: Duration) -> Duration {
        let earliest = now + wait;
        let at = state.deferred.get(key).copied().filter(|t| *t > earliest).unwrap_or(earliest);
        state.deferred.insert(key.to_owned(), at + Duration::from_secs_f64(60.0 / tier.per_minute));
        at.saturating_duration_since(now)
    }

    /// Slack answered 429: nothing more for this method (or channel) until
    /// `retry_after` has passed.
    pub fn block(&self, method: &str, channel: Option<&str>, retry_after: Duration) {
        let until = self.clock.now().plus(retry_after);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = state.blocked.entry(block_key(method, channel)).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn pacer() -> (Pacer, ManualClock) {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        (Pacer::new(Arc::new(clock.clone())), clock)
    }

    #[test]
    fn a_channel_takes_a_burst_then_about_one_message_a_second() {
        let (p, _) = pacer();
        let t0 = Instant::now();
        let max = Duration::from_secs(2);
        for _ in 0..8 {
            assert_eq!(p.reserve_at(t0, "chat.postMessage", Some("C1"), max), Ok(Duration::ZERO));
        }
        let wait = p.reserve_at(t0, "chat.postMessage", Some("C1"), max).unwrap();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        // Another channel is not held up by the first.
        assert_eq!(p.reserve_at(t0, "chat.postMessage", Some("C2"), max), Ok(Duration::ZERO));
        // A caller that may not wait long is told when to come back, and reserves nothing.
        p.reserve_at(t0, "chat.postMessage", Some("C1"), max).unwrap();
        let refused = p.reserve_at(t0, "chat.postMessage", Some("C1"), Duration::from_millis(500)).unwrap_err();
        assert!(refused > Duration::from_millis(500), "{refused:?}");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve_at(later, "chat.postMessage", Some("C1"), max), Ok(Duration::ZERO));
    }

    #[test]
    fn refused_callers_are_told_to_come_back_one_slot_apart() {
        let (p, _) = pacer();
        let t0 = Instant::now();
        let max = Duration::from_secs(2);
        // Fill chat.update's burst and two seconds of slots (Tier 3: 1.2 s each).
        while p.reserve_at(t0, "chat.update", None, max).is_ok() {}
        let backs: Vec<Duration> = (0..5).map(|_| p.reserve_at(t0, "chat.update", None, max).unwrap_err()).collect();
        for pair in backs.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap > Duration::from_millis(1150) && gap < Duration::from_millis(1250), "{backs:?}");
        }
        assert!(backs[0] > max, "{backs:?}");
        // Once the spread has passed, a refusal starts from the bucket again.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(p.reserve_at(later, "chat.update", None, max), Ok(Duration::ZERO));
    }

    #[test]
    fn chat_update_is_paced_at_tier_3() {
        let (p, _) = pacer();
        let t0 = Instant::now();
        let mut waited = Duration::ZERO;
        for _ in 0..65 {
            match p.reserve_at(t0, "chat.update", None, Duration::from_secs(3600)) {
                Ok(w) => waited = w,
                Err(e) => panic!("refused: {e:?}"),
            }
        }
        // 15 at once, then 50 more at 50 a minute: the last waits about a minute.
        assert!(waited > Duration::from_secs(58) && waited <= Duration::from_secs(60), "{waited:?}");
    }

    #[test]
    fn a_429_blocks_the_method_or_channel_until_retry_after() {
        let (p, clock) = pacer();
        let t0 = Instant::now();
        let max = Duration::from_secs(2);
        p.block("chat.postMessage", Some("C1"), Duration::from_secs(30));
        assert_eq!(p.reserve_at(t0, "chat.postMessage", Some("C1"), max), Err(Duration::from_secs(30)));
        assert_eq!(p.reserve_at(t0, "chat.postMessage", Some("C2"), max), Ok(Duration::ZERO));
        p.block("chat.update", None, Duration::from_secs(5));
        assert_eq!(p.reserve_at(t0, "chat.update", None, max), Err(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(30));
        assert_eq!(p.reserve_at(t0, "chat.postMessage", Some("C1"), max), Ok(Duration::ZERO));
        assert_eq!(p.reserve_at(t0, "chat.update", None, max), Ok(Duration::ZERO));
    }
}
