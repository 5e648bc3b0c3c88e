//! The `traceparent` of recent requests, per route, on `GET /sim/traces`:
//! the ground truth for "the exemplar's trace id is the one the service
//! received". A real service would hand these to its tracer; the reference
//! API keeps the last [`PER_ROUTE`] per route (bounded route names, so
//! bounded memory).

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

use crate::client::trace::parse_traceparent;

/// Entries kept per route (about 250 KB each at most).
pub const PER_ROUTE: usize = 2048;

/// One request as the service saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Received {
    /// 32 hex digits; `null` when the request had no valid `traceparent`.
    pub trace_id: Option<String>,
    pub sampled: Option<bool>,
    pub status: u16,
    /// The id of the event a POST created.
    pub event_id: Option<String>,
}

/// Marks a response with the id of the event it created.
#[derive(Clone, Debug)]
pub struct CreatedEvent(pub std::sync::Arc<str>);

#[derive(Debug, Default)]
pub struct TraceLog {
    routes: Mutex<HashMap<&'static str, VecDeque<Received>>>,
}

impl TraceLog {
    pub fn record(
        &self,
        route: &'static str,
        traceparent: Option<&[u8]>,
        status: u16,
        event: Option<&str>,
    ) {
        let parsed = traceparent
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(parse_traceparent);
        let entry = Received {
            trace_id: parsed.map(|(t, _, _)| t.to_hex()),
            sampled: parsed.map(|(_, _, s)| s),
            status,
            event_id: event.map(str::to_owned),
        };
        let mut routes = self.routes.lock();
        let ring = routes.entry(route).or_default();
        if ring.len() == PER_ROUTE {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Every route's recent requests, oldest first.
    pub fn snapshot(&self) -> HashMap<&'static str, Vec<Received>> {
        self.routes
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.iter().cloned().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries_per_route_and_parses_the_header() {
        let log = TraceLog::default();
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        for k in 0..PER_ROUTE + 5 {
            log.record("events_create", Some(tp), 201, Some(&format!("e{k}")));
        }
        log.record("health", Some(b"garbage"), 200, None);
        let s = log.snapshot();
        let events = &s["events_create"];
        assert_eq!(events.len(), PER_ROUTE);
        assert_eq!(events[0].event_id.as_deref(), Some("e5"));
        assert_eq!(
            events[0].trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(events[0].sampled, Some(false));
        assert_eq!(s["health"][0].trace_id, None);
    }
}
