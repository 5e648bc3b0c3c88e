//! Windowed rates derived from monotonic counters, for the status page.
//!
//! Instead of counting twice on the hot path, a [`RateWindow`] remembers the
//! counter's total at each window rotation (a handful of `(instant, total)`
//! marks). The rate over the window is then `(total_now - total_at_oldest_mark)
//! / (now - oldest_mark)`, measured with real elapsed time, so it stays exact
//! even if the rotation timer is late.

use std::time::Instant;

use parking_lot::Mutex;

use super::window::SLOTS;

#[derive(Debug)]
struct Marks {
    /// Ring of marks; `None` until that many rotations happened.
    ring: [Option<(Instant, u64)>; SLOTS],
    /// Index of the newest mark.
    newest: usize,
}

/// A rate over the same span as the latency windows (the last `SLOTS`
/// rotation periods plus the partial current one).
#[derive(Debug)]
pub struct RateWindow {
    marks: Mutex<Marks>,
}

impl RateWindow {
    /// Starts with one mark at `now`, where the counter stands at `total`.
    pub fn new(now: Instant, total: u64) -> Self {
        let mut ring = [None; SLOTS];
        ring[0] = Some((now, total));
        RateWindow {
            marks: Mutex::new(Marks { ring, newest: 0 }),
        }
    }

    /// Called at each window rotation with the counter's current total.
    pub fn mark(&self, now: Instant, total: u64) {
        let mut m = self.marks.lock();
        let next = (m.newest + 1) % SLOTS;
        m.ring[next] = Some((now, total));
        m.newest = next;
    }

    /// Events per second between the oldest mark and `now`; 0 when no time
    /// has passed (there is no rate to speak of yet).
    pub fn rate(&self, now: Instant, total: u64) -> f64 {
        let m = self.marks.lock();
        // The oldest mark is the one after the newest, if the ring is full;
        // otherwise it is slot 0.
        let oldest = m.ring[(m.newest + 1) % SLOTS].or(m.ring[0]);
        let Some((t0, n0)) = oldest else {
            return 0.0;
        };
        let secs = now.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(n0) as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_before_first_rotation() {
        let t0 = Instant::now();
        let r = RateWindow::new(t0, 0);
        assert_eq!(r.rate(t0, 0), 0.0);
        assert!((r.rate(t0 + Duration::from_secs(4), 400) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn rate_forgets_what_left_the_window() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(10 * n);
        let r = RateWindow::new(t0, 0);
        // 1000/s for the first 10 s, then 100/s.
        let mut total = 10_000;
        r.mark(s(1), total);
        for i in 2..=SLOTS as u64 + 1 {
            total += 1_000;
            r.mark(s(i), total);
        }
        // The oldest mark is now at s(2): only the 100/s part remains.
        let now = s(SLOTS as u64 + 1) + Duration::from_secs(5);
        let got = r.rate(now, total + 500);
        assert!((got - 100.0).abs() < 1e-9, "{got}");
    }
}
