//! The simulator's one service clock: wall-clock timestamps derived from
//! monotonic instants through a single anchor, so the difference of two
//! published timestamps (`committed_at`, `projected_at`) equals the
//! difference of the instants the ground truth uses, to the microsecond.
//! Reading `SystemTime` twice would let NTP steps leak into that difference.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

fn anchor() -> &'static Anchor {
    static A: OnceLock<Anchor> = OnceLock::new();
    A.get_or_init(|| Anchor {
        instant: Instant::now(),
        wall: SystemTime::now(),
    })
}

/// The wall-clock time of `at` on the service clock.
pub fn wall(at: Instant) -> SystemTime {
    let a = anchor();
    match at.checked_duration_since(a.instant) {
        Some(d) => a.wall + d,
        None => a.wall - a.instant.saturating_duration_since(at),
    }
}

/// RFC 3339 with microseconds (`2026-12-01T10:00:00.123456Z`).
pub fn rfc3339_us(at: Instant) -> String {
    let t = wall(at).max(UNIX_EPOCH);
    // humantime panics past year 9999; an Instant cannot get there.
    let t = t.min(UNIX_EPOCH + Duration::from_secs(253_402_300_799));
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_of_stamps_equal_differences_of_instants() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_micros(40_123);
        let parse = |s: String| humantime::parse_rfc3339(&s).unwrap();
        let d = parse(rfc3339_us(t1))
            .duration_since(parse(rfc3339_us(t0)))
            .unwrap();
        assert_eq!(d, Duration::from_micros(40_123));
        assert!(rfc3339_us(t0).ends_with('Z'));
    }
}
