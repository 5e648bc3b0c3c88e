//! `rehab_canary_backpressure_total{endpoint,kind}`: the target pushing back,
//! as the seed's "backpressure event count" reads it. `kind="429"` and
//! `kind="503"` count those answers; `kind="retry_after"` counts the 429s
//! that carried a `Retry-After` the canary then waited out (so it is a
//! subset of `429`, not an addition to it). Every series exists from the
//! start: 3 kinds per endpoint.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::registered;
use crate::api::Endpoint;
use crate::client::{Outcome, Response};

/// The `kind` label values, in index order.
pub const KINDS: [&str; 3] = ["429", "503", "retry_after"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    endpoint: &'static str,
    kind: &'static str,
}

#[derive(Debug)]
pub struct Backpressure {
    counts: [[Counter; KINDS.len()]; Endpoint::ALL.len()],
}

impl Backpressure {
    pub fn register(registry: &mut Registry) -> Self {
        let family = registered(
            registry,
            "rehab_canary_backpressure",
            "The target pushing back on the traffic, by endpoint and kind: 429 and 503 answers, \
             and retry_after (429s whose Retry-After the canary waited out; a subset of 429)",
            Family::<Labels, Counter>::default(),
        );
        let counts = Endpoint::ALL.map(|ep| {
            KINDS.map(|kind| {
                family.get_or_create_owned(&Labels {
                    endpoint: ep.as_str(),
                    kind,
                })
            })
        });
        Backpressure { counts }
    }

    /// Counts what `resp` (an answer of `ep`) says about backpressure.
    pub fn observe(&self, ep: Endpoint, resp: &Response) {
        let c = &self.counts[ep.index()];
        match resp.outcome {
            Outcome::Status(429) => {
                c[0].inc();
                if resp.retry_after.is_some() {
                    c[2].inc();
                }
            }
            Outcome::Status(503) => {
                c[1].inc();
            }
            _ => {}
        }
    }

    /// The count of `kind` (an index into [`KINDS`]) over every endpoint.
    pub fn total(&self, kind: usize) -> u64 {
        self.counts.iter().map(|c| c[kind].get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(status: u16, retry_after: Option<u64>) -> Response {
        let mut r = Response::failed(Outcome::Status(status));
        r.retry_after = retry_after.map(Duration::from_secs);
        r
    }

    #[test]
    fn counts_429_503_and_retry_after_waits_by_endpoint() {
        let mut r = Registry::default();
        let b = Backpressure::register(&mut r);
        b.observe(Endpoint::EventsCreate, &answer(429, Some(2)));
        b.observe(Endpoint::EventsCreate, &answer(429, None));
        b.observe(Endpoint::Adherence, &answer(503, Some(1)));
        b.observe(Endpoint::Adherence, &answer(500, None));
        b.observe(Endpoint::Adherence, &answer(201, Some(1)));
        assert_eq!((b.total(0), b.total(1), b.total(2)), (2, 1, 1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "rehab_canary_backpressure_total{endpoint=\"events_create\",kind=\"429\"} 2",
            "rehab_canary_backpressure_total{endpoint=\"events_create\",kind=\"retry_after\"} 1",
            "rehab_canary_backpressure_total{endpoint=\"adherence\",kind=\"503\"} 1",
            "rehab_canary_backpressure_total{endpoint=\"alerts\",kind=\"429\"} 0",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }
}
