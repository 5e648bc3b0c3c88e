//! The client-side lag estimator and its per-sample error bar.
//!
//! Every instant the service acts at (it commits the probe event, or takes a
//! read's snapshot) lies somewhere inside the round trip of its request, and
//! the client sees only the send and the receipt. One convention places all
//! of them: **the midpoint of their own round trip**. The anchor (acceptance)
//! is the POST's midpoint and each poll's observation instant is its own
//! midpoint, so a fixed delay on the request path or on the response path
//! shifts both by the same amount and cancels in the difference. The error
//! does not grow with the round trip; only a *difference* between requests
//! (jitter, a cold connection, a POST slower than a GET) shows through.
//!
//! The visibility instant lies between the last poll that missed the event
//! and the first that saw it; the estimate is the middle of that bracket
//! (the anchor itself when no poll missed). With per-request asymmetry
//! `e = (after − before)/2` (time after the service acted minus time before,
//! halved), the sample's error is at most
//!
//! ```text
//! u = (m_hit − m_low)/2                 half the bracket, midpoints
//!   + (x_low + x_hit)/2                 the bracket ends' own asymmetry
//!   + x_post/2                          the anchor's
//!   + |F_post − F_read|/2               a POST slower than a read
//! ```
//!
//! where `x` is a request's round trip in excess of the recent minimum of
//! its kind (`F`): the variable part of a round trip can sit before or after
//! the service's instant, and only the excess over the floor can vary. This
//! is a bound under one assumption, that the fixed part of a round trip
//! splits the same way for a POST and a read; the last term covers a fixed
//! difference in their cost. The server-clock mode (`server_clock.rs`) needs
//! no such assumption.

use std::time::Duration;

use tokio::time::Instant;

/// How many recent round trips of a kind the floor looks at: enough to
/// catch a quiet moment, few enough to follow a changed network path.
pub const FLOOR_WINDOW: usize = 64;

/// One request's round trip as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub sent: Instant,
    pub recv: Instant,
}

impl Span {
    pub fn rtt(&self) -> Duration {
        self.recv.saturating_duration_since(self.sent)
    }

    /// Where the service is taken to have acted: the round trip's midpoint.
    pub fn mid(&self) -> Instant {
        self.sent + self.rtt() / 2
    }
}

/// The minimum of the last [`FLOOR_WINDOW`] round trips of one kind.
#[derive(Debug)]
pub struct Floor {
    ring: [Duration; FLOOR_WINDOW],
    len: usize,
    next: usize,
}

impl Default for Floor {
    fn default() -> Self {
        Floor {
            ring: [Duration::ZERO; FLOOR_WINDOW],
            len: 0,
            next: 0,
        }
    }
}

impl Floor {
    pub fn push(&mut self, rtt: Duration) {
        self.ring[self.next] = rtt;
        self.next = (self.next + 1) % FLOOR_WINDOW;
        self.len = (self.len + 1).min(FLOOR_WINDOW);
    }

    /// `None` before the first round trip.
    pub fn min(&self) -> Option<Duration> {
        self.ring[..self.len].iter().min().copied()
    }
}

/// The floors a sample is judged against (each includes the sample's own
/// round trips, so no excess is negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floors {
    pub post: Duration,
    pub read: Duration,
}

/// One lag sample with its error bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// From acceptance (the POST's midpoint) to visibility.
    pub lag: Duration,
    /// From the POST's send to visibility: what a client that posts and then
    /// reads waits, its own ingest round trip included.
    pub end_to_end: Duration,
    /// Half-width of the interval the true lag lies in (see the module doc).
    pub uncertainty: Duration,
}

/// One finished poll: its round trip and whether it saw the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    pub span: Span,
    pub hit: bool,
}

/// The bracket around visibility: the first-*sent* poll that saw the
/// event, and the last-sent miss before it (`None`: the anchor is the lower
/// end). `None` without a hit.
///
/// Send order, not midpoint order: picking the hit with the earliest
/// midpoint among several would pick the one whose answer happened to come
/// back fastest, a choice biased by the very jitter the bar accounts for
/// (and the same for the miss with the latest midpoint). Neighbours in send
/// order are chosen independently of the answers' delays.
pub fn bracket(polls: &[Poll]) -> Option<(Option<Span>, Span)> {
    let hit = polls
        .iter()
        .filter(|p| p.hit)
        .map(|p| p.span)
        .min_by_key(|s| s.sent)?;
    let miss = polls
        .iter()
        .filter(|p| !p.hit && p.span.sent < hit.sent)
        .map(|p| p.span)
        .max_by_key(|s| s.sent);
    Some((miss, hit))
}

fn secs(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64()
    } else {
        -from.duration_since(to).as_secs_f64()
    }
}

fn excess(s: &Span, floor: Duration) -> f64 {
    s.rtt().saturating_sub(floor).as_secs_f64()
}

/// The sample of an event acknowledged by `post`, last missed by `miss` and
/// first seen by `hit`.
pub fn estimate(post: Span, miss: Option<Span>, hit: Span, floors: Floors) -> Estimate {
    let anchor = post.mid();
    let x_post = excess(&post, floors.post);
    // A miss before the anchor says less than the acceptance itself: the
    // event cannot be visible before it was accepted.
    let (low, x_low) = match miss {
        Some(m) if m.mid() > anchor => (m.mid(), excess(&m, floors.read)),
        _ => (anchor, x_post),
    };
    let m_hit = hit.mid();
    let x_hit = excess(&hit, floors.read);
    // Jitter can put the miss's midpoint after the hit's; the middle and
    // the half-width are the same either way round.
    let span = secs(low, m_hit);
    let half = span.abs() / 2.0;
    let visible = secs(anchor, low) + span / 2.0;
    let fixed = (floors.post.as_secs_f64() - floors.read.as_secs_f64()).abs() / 2.0;
    let u = half + (x_low + x_hit) / 2.0 + x_post / 2.0 + fixed;
    let dur = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Estimate {
        lag: dur(visible),
        end_to_end: dur(visible + secs(post.sent, anchor)),
        uncertainty: dur(u),
    }
}

/// Whether a sample's error bar is too wide for its value to mean much.
pub fn weak(e: &Estimate, share: f64) -> bool {
    e.uncertainty.as_secs_f64() > share * e.lag.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    /// A service whose requests spend `before` ms before it acts and
    /// `after` ms after, per request.
    struct World {
        t0: Instant,
    }

    impl World {
        fn span(&self, send_ms: f64, before: f64, after: f64) -> (Span, f64) {
            let sent = self.t0 + ms(send_ms);
            let acts = send_ms + before;
            (
                Span {
                    sent,
                    recv: sent + ms(before + after),
                },
                acts,
            )
        }
    }

    /// Polls every `gap` ms from the POST's send; returns the estimate and
    /// the true lag. `post` and `read` give (before, after) per request.
    fn run(
        lag_ms: f64,
        gap: f64,
        post: (f64, f64),
        read: impl Fn(usize) -> (f64, f64),
        floors: Floors,
    ) -> (Estimate, f64) {
        let w = World { t0: Instant::now() };
        let (p, committed) = w.span(0.0, post.0, post.1);
        let visible = committed + lag_ms;
        let mut polls = Vec::new();
        for k in 1..100_000 {
            let (b, a) = read(k);
            let (s, acts) = w.span(gap * k as f64, b, a);
            let hit = acts >= visible;
            polls.push(Poll { span: s, hit });
            if hit {
                break;
            }
        }
        let (miss, hit) = bracket(&polls).unwrap();
        (estimate(p, miss, hit, floors), lag_ms)
    }

    fn err(e: &Estimate, truth: f64) -> f64 {
        (e.lag.as_secs_f64() * 1e3 - truth).abs()
    }

    #[test]
    fn fixed_delays_on_either_path_cancel() {
        // (before, after) for both the POST and the reads.
        for (before, after) in [(0.2, 0.2), (0.2, 30.0), (0.2, 100.0), (30.0, 0.2)] {
            for lag in [40.0, 40.7, 250.0, 251.3] {
                let floors = Floors {
                    post: ms(before + after),
                    read: ms(before + after),
                };
                let (e, truth) = run(lag, 5.0, (before, after), |_| (before, after), floors);
                assert!(
                    err(&e, truth) <= 2.5 + 1e-6,
                    "{before}/{after} lag {lag}: {e:?}"
                );
                assert!(err(&e, truth) <= e.uncertainty.as_secs_f64() * 1e3 + 1e-6);
                // The bar is the bracket, not the round trip.
                assert!(e.uncertainty <= ms(2.5 + 1e-3), "{e:?}");
            }
        }
    }

    #[test]
    fn a_post_slower_than_a_read_widens_the_bar() {
        let floors = Floors {
            post: ms(20.0),
            read: ms(4.0),
        };
        // The POST's extra 16 ms all before the commit: the worst case.
        let (e, truth) = run(40.0, 5.0, (18.0, 2.0), |_| (2.0, 2.0), floors);
        assert!(err(&e, truth) <= e.uncertainty.as_secs_f64() * 1e3 + 1e-6);
        assert!(e.uncertainty >= ms(8.0));
    }

    #[test]
    fn no_miss_brackets_from_the_anchor() {
        let t0 = Instant::now();
        let post = Span {
            sent: t0,
            recv: t0 + ms(10.0),
        };
        let hit = Span {
            sent: t0 + ms(10.0),
            recv: t0 + ms(20.0),
        };
        let floors = Floors {
            post: ms(10.0),
            read: ms(10.0),
        };
        let e = estimate(post, None, hit, floors);
        // Anchor at 5 ms, hit at 15 ms: visible at 10 ms, 5 ms after acceptance.
        assert_eq!(e.lag, ms(5.0));
        assert_eq!(e.end_to_end, ms(10.0));
        assert_eq!(e.uncertainty, ms(5.0));
        // A miss before the anchor changes nothing.
        let early = Span {
            sent: t0,
            recv: t0 + ms(2.0),
        };
        assert_eq!(estimate(post, Some(early), hit, floors), e);
    }

    #[test]
    fn the_bracket_is_neighbours_in_send_order() {
        let t0 = Instant::now();
        let s = |a: f64, b: f64| Span {
            sent: t0 + ms(a),
            recv: t0 + ms(b),
        };
        let polls = [
            Poll {
                span: s(0.0, 10.0),
                hit: false,
            },
            Poll {
                span: s(10.0, 60.0),
                hit: false,
            }, // answered late: still the last miss
            Poll {
                span: s(5.0, 20.0),
                hit: false,
            },
            Poll {
                span: s(20.0, 30.0),
                hit: true,
            }, // mid 25: answered fast
            Poll {
                span: s(15.0, 80.0),
                hit: true,
            }, // sent first
            Poll {
                span: s(25.0, 30.0),
                hit: false,
            }, // after the hit: no use
        ];
        assert_eq!(bracket(&polls), Some((Some(s(10.0, 60.0)), s(15.0, 80.0))));
        assert_eq!(bracket(&polls[..3]), None);
    }

    #[test]
    fn floors_follow_the_recent_minimum() {
        let mut f = Floor::default();
        assert_eq!(f.min(), None);
        f.push(ms(5.0));
        f.push(ms(3.0));
        assert_eq!(f.min(), Some(ms(3.0)));
        for _ in 0..FLOOR_WINDOW {
            f.push(ms(7.0));
        }
        assert_eq!(f.min(), Some(ms(7.0)), "old minimum aged out");
    }

    proptest! {
        /// Whatever splits each round trip's jitter before and after the
        /// service's instant, the true lag lies within the bar.
        #[test]
        fn the_bar_covers_the_error_under_any_jitter(
            lag in 0.0f64..500.0,
            base_before in 0.05f64..20.0,
            base_after in 0.05f64..150.0,
            post_extra in 0.0f64..10.0,
            post_share in 0.0f64..1.0,
            jitter in proptest::collection::vec((0.0f64..100.0, 0.0f64..100.0), 401),
            gap in 1.0f64..50.0,
        ) {
            let post = (
                base_before + post_extra * post_share + jitter[0].0,
                base_after + post_extra * (1.0 - post_share) + jitter[0].1,
            );
            let floors = Floors {
                post: ms(base_before + base_after + post_extra),
                read: ms(base_before + base_after),
            };
            let (e, truth) = run(
                lag,
                gap,
                post,
                |k| {
                    let (b, a) = jitter[k % jitter.len()];
                    (base_before + b, base_after + a)
                },
                floors,
            );
            prop_assert!(
                err(&e, truth) <= e.uncertainty.as_secs_f64() * 1e3 + 1e-6,
                "error {} > bar {:?} ({e:?}, truth {truth})", err(&e, truth), e.uncertainty
            );
        }
    }
}
