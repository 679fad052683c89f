//! Reconnection as pure logic: when to retry ([`ReconnectSchedule`]), what to try
//! ([`EscalationPlan`] → [`ReconnectStep`]), and when to stop hammering a dead peer
//! ([`CircuitBreaker`]).
//!
//! Nothing here reads a clock or a random source: time comes in as `now: Instant`, randomness as
//! numbers in [0, 1) from a caller-supplied source (e.g. [`JitterRng`]), so every transition is
//! reproducible in tests. The backoff arithmetic itself lives in
//! [`ReconnectionPolicy::delay_ms`](crate::config::ReconnectionPolicy::delay_ms).

use crate::config::ReconnectionPolicy;
use std::time::{Duration, Instant};

/// Something that yields numbers in [0, 1) for backoff jitter.
pub trait UnitSource {
    fn next_unit(&mut self) -> f64;
}

impl<F: FnMut() -> f64> UnitSource for F {
    fn next_unit(&mut self) -> f64 {
        self()
    }
}

/// A small seeded generator (SplitMix64) for jitter; seed it per peer (e.g. from the peer id
/// hash and the connection start time) so peers that lost the same link do not retry in step.
#[derive(Debug, Clone)]
pub struct JitterRng {
    state: u64,
}

impl JitterRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl UnitSource for JitterRng {
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 high bits → [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one reconnection attempt should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectStep {
    /// Keep the peer connection, gather new ICE credentials and candidates
    /// (`createOffer({ iceRestart: true })`) and exchange them over signaling.
    IceRestart,
    /// Tear the peer connection down and build a new one: fresh offer/answer, DTLS, SCTP;
    /// data channels and tracks are re-added by the peer.
    FullRenegotiation,
    /// The policy's retries are spent: emit `reconnect-failed` and close the peer.
    GiveUp,
}

/// Which step each attempt takes.
///
/// Rule, for attempt `n` (1-based) under a policy with `max_retries = M`:
/// - `n > M` → [`ReconnectStep::GiveUp`];
/// - `n ≤ k` → [`ReconnectStep::IceRestart`], where `k = min(ice_restart_attempts, M − 1)` when
///   `M ≥ 2` (so at least one full renegotiation is always tried), and
///   `k = min(ice_restart_attempts, M)` when `M ≤ 1` (a single retry is the cheap one);
/// - otherwise → [`ReconnectStep::FullRenegotiation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationPlan {
    pub max_retries: u32,
    pub ice_restart_attempts: u32,
}

impl EscalationPlan {
    /// ICE restarts tried before escalating, by default.
    pub const DEFAULT_ICE_RESTARTS: u32 = 2;

    pub fn new(max_retries: u32, ice_restart_attempts: u32) -> Self {
        Self {
            max_retries,
            ice_restart_attempts,
        }
    }

    pub fn from_policy(policy: &ReconnectionPolicy) -> Self {
        Self::new(policy.max_retries, Self::DEFAULT_ICE_RESTARTS)
    }

    /// How many of the attempts are ICE restarts (`k` in the rule above).
    pub fn ice_restarts(&self) -> u32 {
        if self.max_retries >= 2 {
            self.ice_restart_attempts.min(self.max_retries - 1)
        } else {
            self.ice_restart_attempts.min(self.max_retries)
        }
    }

    /// The step for attempt `attempt` (1-based; 0 is treated as 1).
    pub fn next_step(&self, attempt: u32) -> ReconnectStep {
        let attempt = attempt.max(1);
        if attempt > self.max_retries {
            ReconnectStep::GiveUp
        } else if attempt <= self.ice_restarts() {
            ReconnectStep::IceRestart
        } else {
            ReconnectStep::FullRenegotiation
        }
    }
}

/// One planned attempt: wait `delay`, then do `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledAttempt {
    /// 1-based.
    pub attempt: u32,
    pub delay: Duration,
    pub step: ReconnectStep,
}

/// The attempts of one outage, in order: `max_retries` items, then `None` (give up).
///
/// Each delay is [`ReconnectionPolicy::delay_ms`] for that attempt with a fresh unit from the
/// source (ignored when the policy has no jitter).
#[derive(Debug, Clone)]
pub struct ReconnectSchedule<R> {
    policy: ReconnectionPolicy,
    plan: EscalationPlan,
    next_attempt: u32,
    units: R,
}

impl<R: UnitSource> ReconnectSchedule<R> {
    pub fn new(policy: ReconnectionPolicy, units: R) -> Self {
        let plan = EscalationPlan::from_policy(&policy);
        Self::with_plan(policy, plan, units)
    }

    /// A schedule whose steps follow `plan` (its `max_retries` is taken from the policy).
    pub fn with_plan(policy: ReconnectionPolicy, plan: EscalationPlan, units: R) -> Self {
        let plan = EscalationPlan::new(policy.max_retries, plan.ice_restart_attempts);
        Self {
            policy,
            plan,
            next_attempt: 1,
            units,
        }
    }

    pub fn plan(&self) -> EscalationPlan {
        self.plan
    }

    /// Attempts handed out so far.
    pub fn attempts_made(&self) -> u32 {
        self.next_attempt - 1
    }

    /// The step after the last handed-out attempt failed: the next attempt's, or `GiveUp`.
    pub fn peek_step(&self) -> ReconnectStep {
        self.plan.next_step(self.next_attempt)
    }
}

impl<R: UnitSource> Iterator for ReconnectSchedule<R> {
    type Item = ScheduledAttempt;

    fn next(&mut self) -> Option<ScheduledAttempt> {
        let attempt = self.next_attempt;
        if attempt > self.policy.max_retries {
            return None;
        }
        self.next_attempt += 1;
        let unit = if self.policy.jitter {
            self.units.next_unit()
        } else {
            0.0
        };
        Some(ScheduledAttempt {
            attempt,
            delay: Duration::from_millis(self.policy.delay_ms(attempt, unit)),
            step: self.plan.next_step(attempt),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.policy.max_retries + 1).saturating_sub(self.next_attempt) as usize;
        (left, Some(left))
    }
}

impl<R: UnitSource> ExactSizeIterator for ReconnectSchedule<R> {}

/// Circuit breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures (while closed) that open the breaker.
    pub failure_threshold: u32,
    /// First open period.
    pub cool_down: Duration,
    /// Each failed half-open trial multiplies the open period by this (≥ 1)…
    pub cool_down_multiplier: f64,
    /// …up to this.
    pub max_cool_down: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cool_down: Duration::from_secs(5),
            cool_down_multiplier: 2.0,
            max_cool_down: Duration::from_secs(60),
        }
    }
}

/// The breaker's state as seen at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Attempts pass; counts consecutive failures.
    Closed { consecutive_failures: u32 },
    /// Attempts are refused until `until`.
    Open { until: Instant },
    /// The cool-down is over: one trial may pass; `trial_in_flight` once it has been admitted.
    HalfOpen { trial_in_flight: bool },
}

/// What [`CircuitBreaker::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: this is the one trial; report its outcome.
    Trial,
    /// Refused. `retry_at` is when the breaker turns half-open, or `None` while a half-open
    /// trial is still in flight (ask again after reporting it).
    Rejected { retry_at: Option<Instant> },
}

impl Admission {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Admission::Rejected { .. })
    }
}

/// Per-peer circuit breaker (closed → open → half-open → closed / open).
///
/// - Closed: every attempt passes; `failure_threshold` consecutive failures open it for
///   `cool_down`. A success resets the count.
/// - Open: attempts are rejected until the open period ends; then it is half-open.
/// - Half-open: exactly one trial passes. Success → closed (and the open period is reset to
///   `cool_down`); failure → open again for the previous period × `cool_down_multiplier`,
///   capped at `max_cool_down`.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    state: Inner,
    /// The open period to use the next time the breaker opens.
    next_cool_down: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

impl CircuitBreaker {
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            next_cool_down: config.cool_down.min(config.max_cool_down),
            config,
            state: Inner::Closed { failures: 0 },
        }
    }

    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// The state at `now` (an expired open period reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            Inner::Closed { failures } => BreakerState::Closed {
                consecutive_failures: failures,
            },
            Inner::Open { until } if now < until => BreakerState::Open { until },
            Inner::Open { .. } => BreakerState::HalfOpen {
                trial_in_flight: false,
            },
            Inner::HalfOpen { trial_in_flight } => BreakerState::HalfOpen { trial_in_flight },
        }
    }

    /// Asks to make an attempt at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            Inner::Closed { .. } => Admission::Allowed,
            Inner::Open { until } if now < until => Admission::Rejected {
                retry_at: Some(until),
            },
            Inner::Open { .. }
            | Inner::HalfOpen {
                trial_in_flight: false,
            } => {
                self.state = Inner::HalfOpen {
                    trial_in_flight: true,
                };
                Admission::Trial
            }
            Inner::HalfOpen {
                trial_in_flight: true,
            } => Admission::Rejected { retry_at: None },
        }
    }

    /// The attempt succeeded: close, forget failures, reset the open period.
    pub fn record_success(&mut self) {
        self.state = Inner::Closed { failures: 0 };
        self.next_cool_down = self.config.cool_down.min(self.config.max_cool_down);
    }

    /// The attempt failed at `now`.
    pub fn record_failure(&mut self, now: Instant) {
        match self.state {
            Inner::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold.max(1) {
                    self.open(now);
                } else {
                    self.state = Inner::Closed { failures };
                }
            }
            Inner::HalfOpen { .. } => self.open(now),
            // Expired open period: the failure of an attempt admitted before it opened counts as
            // a failed trial; while still open it changes nothing.
            Inner::Open { until } if now >= until => self.open(now),
            Inner::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Instant) {
        let period = self.next_cool_down;
        self.state = Inner::Open {
            until: now + period,
        };
        let grown = period.as_secs_f64() * self.config.cool_down_multiplier.max(1.0);
        let grown = if grown.is_finite() {
            Duration::from_secs_f64(grown.min(self.config.max_cool_down.as_secs_f64()))
        } else {
            self.config.max_cool_down
        };
        self.next_cool_down = grown.min(self.config.max_cool_down);
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(CircuitBreakerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_retries: u32, jitter: bool) -> ReconnectionPolicy {
        ReconnectionPolicy {
            max_retries,
            backoff_initial_ms: 250,
            backoff_max_ms: 8_000,
            backoff_multiplier: 1.7,
            jitter,
        }
    }

    #[test]
    fn rng_units_are_in_range_and_spread() {
        let mut r = JitterRng::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| r.next_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!(xs.iter().any(|&x| x < 0.05) && xs.iter().any(|&x| x > 0.95));
        // Different seeds, different sequences.
        assert_ne!(JitterRng::new(1).next_unit(), JitterRng::new(2).next_unit());
    }

    #[test]
    fn schedule_length_is_max_retries() {
        for m in [0, 1, 2, 5, 17] {
            for jitter in [false, true] {
                let s = ReconnectSchedule::new(policy(m, jitter), JitterRng::new(7));
                assert_eq!(s.len(), m as usize);
                let items: Vec<_> = s.collect();
                assert_eq!(items.len(), m as usize, "max_retries {m}");
                let numbers: Vec<u32> = items.iter().map(|a| a.attempt).collect();
                assert_eq!(numbers, (1..=m).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn without_jitter_delays_are_exactly_the_base() {
        let p = policy(12, false);
        // A source that would move the delay if it were consulted.
        let s = ReconnectSchedule::new(p.clone(), || 0.0);
        for a in s {
            assert_eq!(a.delay.as_millis() as u64, p.base_delay_ms(a.attempt));
        }
    }

    #[test]
    fn base_is_monotone_and_capped() {
        for mult in [1.0, 1.3, 2.0, 3.5, 10.0] {
            let p = ReconnectionPolicy {
                backoff_multiplier: mult,
                ..policy(40, false)
            };
            let bases: Vec<u64> = (1..=40).map(|a| p.base_delay_ms(a)).collect();
            assert_eq!(bases[0], p.backoff_initial_ms);
            for w in bases.windows(2) {
                assert!(w[0] <= w[1], "not monotone at ×{mult}: {bases:?}");
            }
            assert!(bases.iter().all(|&b| b <= p.backoff_max_ms));
            if mult > 1.0 {
                assert_eq!(*bases.last().unwrap(), p.backoff_max_ms);
            }
        }
    }

    #[test]
    fn with_jitter_every_delay_is_within_half_base_and_base() {
        for seed in 0..50u64 {
            let p = policy(20, true);
            let s = ReconnectSchedule::new(p.clone(), JitterRng::new(seed));
            for a in s {
                let base = p.base_delay_ms(a.attempt);
                let d = a.delay.as_millis() as u64;
                assert!(
                    d >= base / 2 && d <= base,
                    "attempt {} delay {d} outside [{}, {base}]",
                    a.attempt,
                    base / 2
                );
                assert!(d <= p.backoff_max_ms);
            }
        }
        // Jitter actually spreads: two seeds disagree somewhere.
        let a: Vec<_> = ReconnectSchedule::new(policy(10, true), JitterRng::new(1)).collect();
        let b: Vec<_> = ReconnectSchedule::new(policy(10, true), JitterRng::new(2)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn escalation_rule() {
        use ReconnectStep::*;
        let steps = |m, k| -> Vec<ReconnectStep> {
            let p = EscalationPlan::new(m, k);
            (1..=m + 1).map(|a| p.next_step(a)).collect()
        };
        assert_eq!(steps(0, 2), vec![GiveUp]);
        assert_eq!(steps(1, 2), vec![IceRestart, GiveUp]);
        assert_eq!(steps(2, 2), vec![IceRestart, FullRenegotiation, GiveUp]);
        assert_eq!(
            steps(5, 2),
            vec![
                IceRestart,
                IceRestart,
                FullRenegotiation,
                FullRenegotiation,
                FullRenegotiation,
                GiveUp
            ]
        );
        assert_eq!(
            steps(3, 0),
            vec![FullRenegotiation; 3]
                .into_iter()
                .chain([GiveUp])
                .collect::<Vec<_>>()
        );
        assert_eq!(EscalationPlan::new(4, 9).ice_restarts(), 3);
        // Never goes back to an ICE restart once escalated, and the schedule agrees with the plan.
        for m in 0..8 {
            for k in 0..5 {
                let p = EscalationPlan::new(m, k);
                let s: Vec<_> = (1..=m + 3).map(|a| p.next_step(a)).collect();
                let first_full = s.iter().position(|x| *x != IceRestart).unwrap();
                assert!(s[first_full..].iter().all(|x| *x != IceRestart), "{s:?}");
                assert_eq!(s.iter().filter(|x| **x != GiveUp).count(), m as usize);
                let sched = ReconnectSchedule::with_plan(policy(m, true), p, JitterRng::new(3));
                for a in sched {
                    assert_eq!(a.step, p.next_step(a.attempt));
                }
            }
        }
    }

    #[test]
    fn peek_step_gives_up_after_the_last_attempt() {
        let mut s = ReconnectSchedule::new(policy(3, false), || 0.5);
        assert_eq!(s.peek_step(), ReconnectStep::IceRestart);
        s.next();
        s.next();
        assert_eq!(s.peek_step(), ReconnectStep::FullRenegotiation);
        s.next();
        assert_eq!(s.attempts_made(), 3);
        assert_eq!(s.peek_step(), ReconnectStep::GiveUp);
        assert_eq!(s.next(), None);
    }

    fn cfg() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(2),
            cool_down_multiplier: 2.0,
            max_cool_down: Duration::from_secs(5),
        }
    }

    #[test]
    fn breaker_closed_counts_and_opens_at_threshold() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        assert_eq!(b.admit(t0), Admission::Allowed);
        b.record_failure(t0);
        b.record_failure(t0);
        assert_eq!(
            b.state(t0),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        );
        // A success in between resets the count.
        b.record_success();
        b.record_failure(t0);
        b.record_failure(t0);
        assert!(matches!(b.state(t0), BreakerState::Closed { .. }));
        b.record_failure(t0);
        let until = t0 + Duration::from_secs(2);
        assert_eq!(b.state(t0), BreakerState::Open { until });
        assert_eq!(
            b.admit(t0 + Duration::from_millis(1999)),
            Admission::Rejected {
                retry_at: Some(until)
            }
        );
    }

    #[test]
    fn breaker_half_open_allows_one_trial_and_success_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            b.state(t1),
            BreakerState::HalfOpen {
                trial_in_flight: false
            }
        );
        assert_eq!(b.admit(t1), Admission::Trial);
        assert_eq!(b.admit(t1), Admission::Rejected { retry_at: None });
        assert_eq!(
            b.state(t1),
            BreakerState::HalfOpen {
                trial_in_flight: true
            }
        );
        b.record_success();
        assert_eq!(
            b.state(t1),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        assert_eq!(b.admit(t1), Admission::Allowed);
        // After closing, the cool-down is back to the first period.
        for _ in 0..3 {
            b.record_failure(t1);
        }
        assert_eq!(
            b.state(t1),
            BreakerState::Open {
                until: t1 + Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn breaker_failed_trial_reopens_longer_and_capped() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let mut now = t0;
        let mut periods = vec![];
        for _ in 0..5 {
            let BreakerState::Open { until } = b.state(now) else {
                panic!("expected open, got {:?}", b.state(now));
            };
            periods.push((until - now).as_millis());
            now = until;
            assert_eq!(b.admit(now), Admission::Trial);
            b.record_failure(now);
        }
        assert_eq!(periods, vec![2000, 4000, 5000, 5000, 5000]);
    }

    #[test]
    fn breaker_failures_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let before = b.state(t0);
        b.record_failure(t0 + Duration::from_millis(500));
        assert_eq!(b.state(t0), before);
        // Late failure after the period ended counts as a failed trial: reopens, longer.
        let t2 = t0 + Duration::from_secs(3);
        b.record_failure(t2);
        assert_eq!(
            b.state(t2),
            BreakerState::Open {
                until: t2 + Duration::from_secs(4)
            }
        );
    }

    #[test]
    fn threshold_zero_acts_as_one() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 0,
            ..cfg()
        });
        b.record_failure(t0);
        assert!(matches!(b.state(t0), BreakerState::Open { .. }));
        assert!(!b.admit(t0).is_allowed());
    }
}
