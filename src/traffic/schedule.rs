//! The open-model schedule as a pure value: what rate applies at each instant
//! (base rate, start-up ramp, wall-clock-aligned bursts, hard ceiling), and a
//! pacer that turns it into intended send instants.
//!
//! Instants are computed as `segment_origin + n / rate`, never "sleep after the
//! last one", so nothing drifts however long the canary runs; the responses of
//! the target never feed back into it.

use std::time::Duration;

/// Steps of the linear start-up ramp. The ramp is piecewise constant so that
/// each step is an exact constant-rate segment.
const RAMP_STEP_S: f64 = 0.1;

/// Smallest segment, so float rounding at a boundary can never stall the pacer.
const MIN_SEGMENT_S: f64 = 1e-6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub every_s: f64,
    pub duration_s: f64,
    pub multiplier: f64,
}

/// The offered rate over time. Times are seconds since the pacer's start.
#[derive(Debug, Clone, PartialEq)]
pub struct RateProfile {
    /// Sustained rate (per second) outside bursts and ramps.
    pub base: f64,
    pub ramp_up_s: f64,
    pub burst: Option<Burst>,
    /// Hard ceiling that no burst or ramp passes.
    pub ceiling: f64,
    /// Unix time (seconds) at t = 0, so bursts align to the wall clock and
    /// every shard bursts at the same moment.
    pub start_unix_s: f64,
}

impl RateProfile {
    pub fn constant(rate: f64) -> Self {
        RateProfile {
            base: rate,
            ramp_up_s: 0.0,
            burst: None,
            ceiling: f64::INFINITY,
            start_unix_s: 0.0,
        }
    }

    fn burst_phase(&self, b: &Burst, t: f64) -> f64 {
        (self.start_unix_s + t).rem_euclid(b.every_s)
    }

    pub fn burst_active(&self, t: f64) -> bool {
        match &self.burst {
            Some(b) => self.burst_phase(b, t) < b.duration_s,
            None => false,
        }
    }

    /// The rate in force at `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut r = self.base;
        if self.ramp_up_s > 0.0 && t < self.ramp_up_s {
            // Value at the middle of the step, so the ramp's integral is exact.
            let step = (t / RAMP_STEP_S).floor();
            let mid = ((step + 0.5) * RAMP_STEP_S).min(self.ramp_up_s);
            r *= mid / self.ramp_up_s;
        }
        if let Some(b) = &self.burst {
            if self.burst_phase(b, t) < b.duration_s {
                r *= b.multiplier;
            }
        }
        r.clamp(0.0, self.ceiling)
    }

    /// Whether the rate is 0 at every instant: a 0 base is 0 through every
    /// ramp step and burst, and so is a 0 ceiling.
    pub fn never_sends(&self) -> bool {
        self.base <= 0.0 || self.ceiling <= 0.0
    }

    /// The next instant after `t` at which the rate may change
    /// (`INFINITY` when it never does).
    pub fn next_change(&self, t: f64) -> f64 {
        let mut next = f64::INFINITY;
        if self.ramp_up_s > 0.0 && t < self.ramp_up_s {
            let step_end = ((t / RAMP_STEP_S).floor() + 1.0) * RAMP_STEP_S;
            next = next.min(step_end.min(self.ramp_up_s));
        }
        if let Some(b) = &self.burst {
            let phase = self.burst_phase(b, t);
            let edge = if phase < b.duration_s {
                t + (b.duration_s - phase)
            } else {
                t + (b.every_s - phase)
            };
            next = next.min(edge);
        }
        if next <= t {
            t + MIN_SEGMENT_S
        } else {
            next
        }
    }
}

/// Turns a [`RateProfile`] into intended send instants. Rate changes carry the
/// fractional progress of the interval in flight, so a burst edge neither
/// loses nor adds a tick.
#[derive(Debug, Clone)]
pub struct Pacer {
    profile: RateProfile,
    /// Scale from the profile's rate to ticks (e.g. reads on top of events).
    scale: f64,
    origin: f64,
    rate: f64,
    n: u64,
    seg_end: f64,
    frac: f64,
    changed: bool,
}

impl Pacer {
    pub fn new(profile: RateProfile, scale: f64, start_t: f64) -> Self {
        let mut p = Pacer {
            profile,
            scale,
            origin: start_t,
            rate: 0.0,
            n: 0,
            seg_end: start_t,
            frac: 0.0,
            changed: true,
        };
        p.begin_segment(start_t);
        p
    }

    fn begin_segment(&mut self, at: f64) {
        self.rate = self.profile.rate_at(at) * self.scale;
        self.seg_end = self.profile.next_change(at);
        self.n = 0;
        self.origin = if self.rate > 0.0 {
            at - self.frac / self.rate
        } else {
            at
        };
        self.changed = true;
    }

    /// Replaces the profile from `now_t` on (a reload); counting restarts there.
    pub fn set_profile(&mut self, profile: RateProfile, scale: f64, now_t: f64) {
        self.profile = profile;
        self.scale = scale;
        self.frac = 0.0;
        self.begin_segment(now_t);
    }

    pub fn profile(&self) -> &RateProfile {
        &self.profile
    }

    /// True once after the rate changed; lets the caller update gauges only then.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Passes over every tick due at or before `t` and returns how many: a
    /// saturated sender drops them in one count instead of judging each.
    pub fn skip_until(&mut self, t: f64) -> u64 {
        let mut skipped = 0;
        loop {
            if self.rate > 0.0 {
                // Ticks n+1 ..= k lie at or before both `t` and the segment end.
                let until = t.min(self.seg_end);
                let k = ((until - self.origin) * self.rate).floor().max(0.0) as u64;
                if k > self.n {
                    // The segment end itself belongs to the next segment.
                    let k = if self.origin + k as f64 / self.rate >= self.seg_end {
                        k - 1
                    } else {
                        k
                    };
                    skipped += k.saturating_sub(self.n);
                    self.n = self.n.max(k);
                }
            }
            if t < self.seg_end || !self.seg_end.is_finite() || self.profile.never_sends() {
                return skipped;
            }
            // Step into the next segment exactly as `next_instant` would.
            let last = self.origin + self.n as f64 / self.rate.max(f64::MIN_POSITIVE);
            if self.rate > 0.0 {
                self.frac = ((self.seg_end - last) * self.rate).clamp(0.0, 1.0);
            }
            let at = self.seg_end;
            self.begin_segment(at);
        }
    }

    /// The next intended instant, or `None` if the rate is 0 from here on.
    pub fn next_instant(&mut self) -> Option<f64> {
        loop {
            if self.rate > 0.0 {
                let candidate = self.origin + (self.n + 1) as f64 / self.rate;
                if candidate < self.seg_end {
                    self.n += 1;
                    return Some(candidate);
                }
                let last = self.origin + self.n as f64 / self.rate;
                self.frac = ((self.seg_end - last) * self.rate).clamp(0.0, 1.0);
            }
            // A profile that never sends still has burst edges: without
            // this check the walk over its segments would never end.
            if !self.seg_end.is_finite() || self.profile.never_sends() || self.scale <= 0.0 {
                return None;
            }
            let at = self.seg_end;
            self.begin_segment(at);
        }
    }
}

/// Smooth weighted round-robin (as in nginx): exact proportions over every
/// window of `sum(weights)` picks, with no randomness to widen the error.
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin<const N: usize> {
    weights: [i64; N],
    current: [i64; N],
    total: i64,
}

impl<const N: usize> WeightedRoundRobin<N> {
    pub fn new(weights: [u32; N]) -> Self {
        let weights = weights.map(i64::from);
        WeightedRoundRobin {
            weights,
            current: [0; N],
            total: weights.iter().sum(),
        }
    }

    pub fn pick(&mut self) -> usize {
        let mut best = 0;
        for i in 0..N {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

/// Seconds as a `Duration`, saturating on nonsense instead of panicking.
pub fn secs(t: f64) -> Duration {
    Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_until(p: &mut Pacer, end: f64) -> usize {
        let mut n = 0;
        while let Some(t) = p.next_instant() {
            if t >= end {
                break;
            }
            n += 1;
        }
        n
    }

    #[test]
    fn constant_rate_is_exact_and_evenly_spaced() {
        let mut p = Pacer::new(RateProfile::constant(1000.0), 1.0, 0.0);
        let first: Vec<f64> = (0..3).map(|_| p.next_instant().unwrap()).collect();
        assert!((first[0] - 0.001).abs() < 1e-12);
        assert!((first[2] - 0.003).abs() < 1e-12);
        let mut p = Pacer::new(RateProfile::constant(1000.0), 1.0, 0.0);
        assert_eq!(count_until(&mut p, 60.0), 59_999);
    }

    #[test]
    fn no_drift_over_a_month() {
        let mut p = Pacer::new(RateProfile::constant(3.0), 1.0, 0.0);
        let mut last = 0.0;
        for _ in 0..(3 * 86_400 * 30) {
            last = p.next_instant().unwrap();
        }
        assert!((last - 86_400.0 * 30.0).abs() < 1e-6, "{last}");
    }

    #[test]
    fn skipping_counts_the_same_ticks_as_walking_them() {
        let bursty = RateProfile {
            burst: Some(Burst {
                every_s: 1.0,
                duration_s: 0.3,
                multiplier: 7.0,
            }),
            ramp_up_s: 0.5,
            start_unix_s: 1_764_590_270.25,
            ..RateProfile::constant(333.0)
        };
        for until in [0.0, 0.0031, 0.2, 0.77, 1.3, 2.0, 5.55] {
            let mut walked = Pacer::new(bursty.clone(), 1.0, 0.0);
            let mut n = 0;
            let mut next = walked.next_instant().unwrap();
            while next <= until {
                n += 1;
                next = walked.next_instant().unwrap();
            }
            let mut skipped = Pacer::new(bursty.clone(), 1.0, 0.0);
            assert_eq!(skipped.skip_until(until), n, "until {until}");
            let after = skipped.next_instant().unwrap();
            assert!(
                (after - next).abs() < 1e-9,
                "until {until}: {after} vs {next}"
            );
        }
    }

    #[test]
    fn zero_rate_never_ticks() {
        let mut p = Pacer::new(RateProfile::constant(0.0), 1.0, 0.0);
        assert_eq!(p.next_instant(), None);
        // Bursts of nothing are still nothing, and the pacer says so at once
        // instead of walking burst edges for ever (the daemon hung on stop).
        let bursty = RateProfile {
            burst: Some(Burst {
                every_s: 4.0,
                duration_s: 2.0,
                multiplier: 4.0,
            }),
            ramp_up_s: 10.0,
            ..RateProfile::constant(0.0)
        };
        let mut p = Pacer::new(bursty, 1.0, 0.0);
        assert_eq!(p.next_instant(), None);
    }

    #[test]
    fn bursts_are_wall_clock_aligned_and_multiply_the_rate() {
        let profile = RateProfile {
            burst: Some(Burst {
                every_s: 10.0,
                duration_s: 2.0,
                multiplier: 5.0,
            }),
            // Start 7 s into a burst period: the first burst begins at t = 3.
            start_unix_s: 1_000_007.0,
            ..RateProfile::constant(100.0)
        };
        assert!(!profile.burst_active(0.0));
        assert!(profile.burst_active(3.0));
        assert!(profile.burst_active(4.99));
        assert!(!profile.burst_active(5.0));
        assert_eq!(profile.rate_at(3.5), 500.0);
        assert_eq!(profile.next_change(0.0), 3.0);
        assert_eq!(profile.next_change(3.0), 5.0);

        let mut p = Pacer::new(profile, 1.0, 0.0);
        let ts: Vec<f64> = std::iter::from_fn(|| p.next_instant())
            .take_while(|t| *t < 13.0)
            .collect();
        let in_range = |a: f64, b: f64| ts.iter().filter(|t| **t >= a && **t < b).count();
        assert!((in_range(0.0, 3.0) as i64 - 300).abs() <= 1);
        assert!((in_range(3.0, 5.0) as i64 - 1000).abs() <= 1);
        assert!(
            (in_range(5.0, 13.0) as i64 - 800).abs() <= 1,
            "{}",
            in_range(5.0, 13.0)
        );
        assert!(
            (in_range(0.0, 13.0) as i64 - 2100).abs() <= 1,
            "{}",
            in_range(0.0, 13.0)
        );
    }

    #[test]
    fn ceiling_caps_bursts() {
        let profile = RateProfile {
            burst: Some(Burst {
                every_s: 10.0,
                duration_s: 5.0,
                multiplier: 10.0,
            }),
            ceiling: 150.0,
            ..RateProfile::constant(100.0)
        };
        assert_eq!(profile.rate_at(1.0), 150.0);
        assert_eq!(profile.rate_at(6.0), 100.0);
    }

    #[test]
    fn ramp_integrates_to_half_the_rate_times_duration() {
        let profile = RateProfile {
            ramp_up_s: 10.0,
            ..RateProfile::constant(1000.0)
        };
        assert!(profile.rate_at(0.05) < 10.0);
        assert_eq!(profile.rate_at(10.0), 1000.0);
        let mut p = Pacer::new(profile, 1.0, 0.0);
        let ramped = count_until(&mut p, 10.0) as i64;
        assert!((ramped - 5000).abs() <= 2, "{ramped}");
    }

    #[test]
    fn scale_multiplies_ticks() {
        let mut p = Pacer::new(RateProfile::constant(70.0), 100.0 / 70.0, 0.0);
        assert_eq!(count_until(&mut p, 10.0), 999);
    }

    #[test]
    fn set_profile_rebases_from_now() {
        let mut p = Pacer::new(RateProfile::constant(10.0), 1.0, 0.0);
        for _ in 0..5 {
            p.next_instant();
        }
        p.set_profile(RateProfile::constant(100.0), 1.0, 0.5);
        assert!(p.take_changed());
        assert!((p.next_instant().unwrap() - 0.51).abs() < 1e-9);
        assert!(!p.take_changed());
    }

    #[test]
    fn weighted_round_robin_is_exact_per_cycle() {
        let mut w = WeightedRoundRobin::new([70, 20, 10]);
        let mut counts = [0; 3];
        for _ in 0..100 {
            counts[w.pick()] += 1;
        }
        assert_eq!(counts, [70, 20, 10]);
        let mut w = WeightedRoundRobin::new([1, 0, 0]);
        assert!((0..10).all(|_| w.pick() == 0));
    }
}
