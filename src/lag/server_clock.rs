//! Server-clock lag: for targets that say when things happened. The 201 of a
//! probe event carries its commit time, the read model carries the time it
//! applied the event, both on the service's clock; their difference is the
//! lag with no network in it at all. Exported beside the client-side
//! estimate so the two can be compared.
//!
//! Timestamps are RFC 3339 strings (any fraction, `Z` or `±HH:MM`), or Unix
//! epoch numbers whose unit is told by their size (seconds, milliseconds,
//! microseconds or nanoseconds; unambiguous for any date after 1973).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::marker::MarkerPrefix;

/// Why a server timestamp could not be read. Each kind is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("the configured pointer is not in the answer")]
    Missing,
    #[error("the value at the pointer is not an RFC 3339 time or a Unix epoch number")]
    Unparseable,
    #[error("the applied time is before the commit time (a clock or a pointer is wrong)")]
    Negative,
}

/// The two pointers of a probe, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerClock {
    /// Into the POST's 201 body.
    pub committed: String,
    /// Into the element of the read that holds the marker (`marker` rule),
    /// or into the whole read (`value` and `increment` rules).
    pub applied: String,
}

/// Parses one timestamp.
pub fn parse(v: &Value) -> Result<SystemTime, StampError> {
    match v {
        Value::String(s) => parse_rfc3339(s).ok_or(StampError::Unparseable),
        Value::Number(n) => n
            .as_f64()
            .and_then(from_epoch)
            .ok_or(StampError::Unparseable),
        _ => Err(StampError::Unparseable),
    }
}

fn from_epoch(n: f64) -> Option<SystemTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    // 1e11 s is year 5138; 1e11 ms is 1973. Each unit owns its range.
    let secs = if n < 1e11 {
        n
    } else if n < 1e14 {
        n / 1e3
    } else if n < 1e17 {
        n / 1e6
    } else {
        n / 1e9
    };
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

/// RFC 3339 with `Z` or a numeric offset (humantime takes `Z` only).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if s.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(&s[..s.len() - 1]).ok();
    }
    let (local, sign, off) = match s
        .len()
        .checked_sub(6)
        .and_then(|i| s.get(i..).zip(s.get(..i)))
    {
        Some((off, local)) if off.starts_with('+') || off.starts_with('-') => {
            (local, off.starts_with('+'), &off[1..])
        }
        _ => return None,
    };
    let (h, m) = off.split_once(':')?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let off = Duration::from_secs(h * 3600 + m * 60);
    // Local time minus a positive offset is UTC.
    if sign {
        t.checked_sub(off)
    } else {
        t.checked_add(off)
    }
}

/// The commit time in a 201 body.
pub fn committed(body: &[u8], pointer: &str) -> Result<SystemTime, StampError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| StampError::Missing)?;
    parse(doc.pointer(pointer).ok_or(StampError::Missing)?)
}

/// The applied time of the event `seq` in a read. For the `marker` rule,
/// `root` is what the rule's pointer selects and the time is read from the
/// element of that array (or object) holding the marker; otherwise `root` is
/// the whole read.
pub fn applied(
    root: &Value,
    marker: Option<(&MarkerPrefix, u64)>,
    pointer: &str,
) -> Result<SystemTime, StampError> {
    let el = match marker {
        None => root,
        Some((prefix, seq)) => {
            let holds = |v: &&Value| contains(v, prefix, seq);
            match root {
                Value::Array(items) => items.iter().find(holds),
                Value::Object(map) => map.values().find(holds),
                other => Some(other),
            }
            .ok_or(StampError::Missing)?
        }
    };
    parse(el.pointer(pointer).ok_or(StampError::Missing)?)
}

fn contains(v: &Value, prefix: &MarkerPrefix, seq: u64) -> bool {
    match v {
        Value::String(s) => prefix.parse(s) == Some(seq),
        Value::Array(items) => items.iter().any(|i| contains(i, prefix, seq)),
        Value::Object(map) => map.values().any(|i| contains(i, prefix, seq)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Applied minus committed.
pub fn lag(committed: SystemTime, applied: SystemTime) -> Result<Duration, StampError> {
    applied
        .duration_since(committed)
        .map_err(|_| StampError::Negative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::marker::RunId;
    use serde_json::json;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn timestamps_in_every_common_form() {
        let t = at(1_764_583_200, 123_456); // 2025-12-01T10:00:00.123456Z
        for (v, want) in [
            (json!("2025-12-01T10:00:00.123456Z"), Some(t)),
            (json!("2025-12-01T11:00:00.123456+01:00"), Some(t)),
            (json!("2025-12-01T07:30:00.123456-02:30"), Some(t)),
            (json!("2025-12-01T10:00:00Z"), Some(at(1_764_583_200, 0))),
            (json!(1_764_583_200.123_456), Some(t)),
            (json!(1_764_583_200_123_456u64), Some(t)),
            (
                json!(1_764_583_200_123u64),
                Some(at(1_764_583_200, 123_000)),
            ),
            (json!("yesterday"), None),
            (json!("2025-12-01T10:00:00+25:00"), None),
            (json!(-5), None),
            (json!(null), None),
        ] {
            let got = parse(&v).ok();
            match (got, want) {
                (Some(g), Some(w)) => {
                    let d = g.duration_since(w).unwrap_or_else(|e| e.duration());
                    assert!(d < Duration::from_micros(2), "{v}: {g:?} vs {w:?}");
                }
                (g, w) => assert_eq!(g, w, "{v}"),
            }
        }
    }

    #[test]
    fn the_applied_time_comes_from_the_marked_element() {
        let p = MarkerPrefix::new("canary-", "stream", RunId(1));
        let read = json!({"events": [
            {"body": {"session_id": p.marker(1)}, "projected_at": "2025-12-01T10:00:00.100Z"},
            {"body": {"session_id": p.marker(2)}, "projected_at": "2025-12-01T10:00:00.200Z"},
        ]});
        let root = read.pointer("/events").unwrap();
        let t = applied(root, Some((&p, 2)), "/projected_at").unwrap();
        assert_eq!(t, at(1_764_583_200, 200_000));
        assert_eq!(
            applied(root, Some((&p, 3)), "/projected_at"),
            Err(StampError::Missing)
        );
        assert_eq!(applied(&read, None, "/nope"), Err(StampError::Missing));
        let c = committed(
            br#"{"committed_at":"2025-12-01T10:00:00.040Z"}"#,
            "/committed_at",
        )
        .unwrap();
        assert_eq!(lag(c, t), Ok(Duration::from_millis(160)));
        assert_eq!(lag(t, c), Err(StampError::Negative));
        assert_eq!(committed(b"<html>", "/x"), Err(StampError::Missing));
    }
}
