//! Visibility rules: how one read body shows (or not) that a probe event has
//! reached a read model. Three rules, configurable per probe so the probes fit
//! the service's variants:
//!
//! - `marker`: collect every string under a JSON pointer that is one of this
//!   run's markers. The probe's own sequence being among them means visible;
//!   the whole list also feeds duplicate, reordering and late detection.
//! - `value`: the value at a pointer equals an expected value, with
//!   `{marker}` substituted (e.g. `/last_session/session_id` = `{marker}`).
//! - `increment`: the number at a pointer is at least one more than it was
//!   just before the POST (e.g. a session count).
//!
//! A body that is not JSON, or lacks what the rule needs, is a read failure
//! (counted as `error` by the caller), never a panic and never a "not yet".

use serde_json::Value;

use super::marker::MarkerPrefix;
use crate::config::lag::RuleKind;

/// Why a read could not be judged. Each kind is logged once, not per poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    #[error("the read answered status {0}")]
    Status(u16),
    #[error(
        "the read failed in transport (timeout, connect, TLS, reset, or a body over target.max_body_bytes)"
    )]
    Transport,
    #[error("the read body is not JSON")]
    NotJson,
    #[error(
        "the read body lacks what the visibility rule needs (pointer missing or not a number)"
    )]
    Shape,
}

impl ReadFailure {
    /// One of each kind (the status code is a placeholder).
    pub const ALL: [ReadFailure; 4] = [
        ReadFailure::Status(0),
        ReadFailure::Transport,
        ReadFailure::NotJson,
        ReadFailure::Shape,
    ];

    /// The kind's position in [`ReadFailure::ALL`], whatever the status code.
    pub const fn index(self) -> usize {
        match self {
            ReadFailure::Status(_) => 0,
            ReadFailure::Transport => 1,
            ReadFailure::NotJson => 2,
            ReadFailure::Shape => 3,
        }
    }
}

/// A probe's resolved rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Visibility {
    pub kind: RuleKind,
    pub pointer: String,
    /// The `value` rule's expected value, before `{marker}` substitution.
    pub expect: String,
}

/// Parses a read body; anything but JSON is [`ReadFailure::NotJson`].
pub fn parse(body: &[u8]) -> Result<Value, ReadFailure> {
    serde_json::from_slice(body).map_err(|_| ReadFailure::NotJson)
}

impl Visibility {
    /// What the rule's pointer selects in a read.
    pub fn at<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        if self.pointer.is_empty() {
            Some(doc)
        } else {
            doc.pointer(&self.pointer)
        }
    }

    /// The value the `value` rule expects for one event.
    pub fn expected(&self, marker: &str) -> String {
        self.expect.replace("{marker}", marker)
    }

    /// The number the `increment` rule watches.
    pub fn number(&self, doc: &Value) -> Result<f64, ReadFailure> {
        self.at(doc)
            .and_then(Value::as_f64)
            .ok_or(ReadFailure::Shape)
    }

    /// Every marker of `prefix` under the pointer, in document order, into
    /// `out` (cleared first; reused across polls so polling does not allocate
    /// once it has grown).
    pub fn markers(
        &self,
        doc: &Value,
        prefix: &MarkerPrefix,
        out: &mut Vec<u64>,
    ) -> Result<(), ReadFailure> {
        out.clear();
        let root = self.at(doc).ok_or(ReadFailure::Shape)?;
        collect(root, prefix, out);
        Ok(())
    }

    /// Whether the event is visible in `doc`. `seq` and `marker` identify the
    /// event, `expected` is [`Visibility::expected`] and `baseline` the
    /// number read before the POST (for `increment`). For `marker`, `seqs`
    /// receives every marker found (see [`Visibility::markers`]).
    pub fn check(
        &self,
        doc: &Value,
        probe: &Check<'_>,
        seqs: &mut Vec<u64>,
    ) -> Result<bool, ReadFailure> {
        match self.kind {
            RuleKind::Marker => {
                self.markers(doc, probe.prefix, seqs)?;
                Ok(seqs.contains(&probe.seq))
            }
            RuleKind::Value => Ok(self.at(doc).is_some_and(|v| match v {
                Value::String(s) => s == probe.expected,
                // Numbers and booleans compare as JSON values (`12`, `true`).
                other => serde_json::from_str::<Value>(probe.expected).is_ok_and(|e| e == *other),
            })),
            RuleKind::Increment => Ok(self.number(doc)? >= probe.baseline + 1.0),
        }
    }
}

/// What identifies one probe event to [`Visibility::check`].
#[derive(Debug)]
pub struct Check<'a> {
    pub prefix: &'a MarkerPrefix,
    pub seq: u64,
    pub expected: &'a str,
    pub baseline: f64,
}

fn collect(v: &Value, prefix: &MarkerPrefix, out: &mut Vec<u64>) {
    match v {
        Value::String(s) => {
            if let Some(seq) = prefix.parse(s) {
                out.push(seq);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, prefix, out)),
        Value::Object(map) => map.values().for_each(|i| collect(i, prefix, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::marker::RunId;
    use serde_json::json;

    fn rule(kind: RuleKind, pointer: &str, expect: &str) -> Visibility {
        Visibility {
            kind,
            pointer: pointer.into(),
            expect: expect.into(),
        }
    }

    #[test]
    fn rules_judge_reads() {
        let p = MarkerPrefix::new("canary-", "stream", RunId(1));
        let old = MarkerPrefix::new("canary-", "stream", RunId(2));
        let m7 = p.marker(7);
        let doc = json!({
            "events": [
                {"body": {"session_id": p.marker(6)}},
                {"body": {"session_id": old.marker(7)}},
                {"body": {"session_id": m7}, "meta": {"correlation_id": "rehab-canary-probe"}},
                {"body": {"session_id": m7}},
            ],
            "last_session": {"session_id": m7},
            "sessions": 12,
        });
        let check = |seq: u64, baseline: f64| {
            let p = &p;
            let doc = &doc;
            move |r: &Visibility| {
                let m = p.marker(seq);
                let expected = r.expected(&m);
                let c = Check {
                    prefix: p,
                    seq,
                    expected: &expected,
                    baseline,
                };
                let mut seqs = Vec::new();
                r.check(doc, &c, &mut seqs).map(|hit| (hit, seqs))
            }
        };
        // Markers under /events only, in document order, other runs ignored.
        let r = rule(RuleKind::Marker, "/events", "");
        assert_eq!(check(7, 0.0)(&r), Ok((true, vec![6, 7, 7])));
        assert_eq!(check(8, 0.0)(&r).map(|x| x.0), Ok(false));
        // The whole body also sees last_session.
        assert_eq!(
            check(7, 0.0)(&rule(RuleKind::Marker, "", ""))
                .unwrap()
                .1
                .len(),
            4
        );
        let v = rule(RuleKind::Value, "/last_session/session_id", "{marker}");
        assert_eq!(check(7, 0.0)(&v).map(|x| x.0), Ok(true));
        assert_eq!(check(6, 0.0)(&v).map(|x| x.0), Ok(false));
        // A missing pointer is "not yet" for the value rule...
        let v = rule(RuleKind::Value, "/nope", "{marker}");
        assert_eq!(check(7, 0.0)(&v).map(|x| x.0), Ok(false));
        // ...and a shape error for the others.
        let m = rule(RuleKind::Marker, "/nope", "");
        assert_eq!(check(7, 0.0)(&m), Err(ReadFailure::Shape));
        let inc = rule(RuleKind::Increment, "/sessions", "");
        assert_eq!(check(7, 11.0)(&inc).map(|x| x.0), Ok(true));
        assert_eq!(check(7, 12.0)(&inc).map(|x| x.0), Ok(false));
        let inc = rule(RuleKind::Increment, "/events", "");
        assert_eq!(check(7, 0.0)(&inc), Err(ReadFailure::Shape));
        // Numbers compare through their JSON text.
        let v = rule(RuleKind::Value, "/sessions", "12");
        assert_eq!(check(7, 0.0)(&v).map(|x| x.0), Ok(true));
    }

    #[test]
    fn garbage_is_not_json() {
        for body in [
            &b"<html><body>502 upstream garbage \0\x01</body></html>"[..],
            b"",
            b"{\"events\": [",
        ] {
            assert_eq!(parse(body), Err(ReadFailure::NotJson));
        }
    }
}
