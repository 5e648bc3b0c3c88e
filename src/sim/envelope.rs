//! Parsing of incoming events: both envelope shapes (`kind`/`subject_id`/
//! `body`/`meta`, and flat `patient_id`/`event_type`) are normalized into one
//! stored form, and the few domain fields the projections need are extracted
//! once here so the projector never re-parses JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::clock;
use crate::api::EventKind;

/// Why an event was refused; maps to 400, 413 or 422.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvelopeError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error("unknown event kind `{0}`")]
    UnknownKind(String),
    #[error("event is {0} bytes, over the limit")]
    TooLarge(usize),
}

/// Longest accepted patient, therapist or event id.
pub const MAX_ID_LEN: usize = 128;

/// The projector-relevant facts of one event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Domain {
    /// Event time in Unix milliseconds (from the body, else receive time).
    pub ts_ms: i64,
    pub session_id: Option<Box<str>>,
    pub prescribed_reps: Option<u32>,
    pub completed_reps: Option<u32>,
    pub completion_status: Option<Box<str>>,
    /// A session completion (as opposed to a session start).
    pub is_completion: bool,
    /// `overall_quality` of a completion or `quality_score` of a rep.
    pub quality: Option<f64>,
    /// `alert_type` and `priority` of an `alert` event.
    pub alert: Option<(Box<str>, Box<str>)>,
}

/// A validated, normalized event ready for the queue.
#[derive(Clone, Debug)]
pub struct Event {
    /// The stored `event_id`: the ground truth's key.
    pub id: Arc<str>,
    pub patient_id: Arc<str>,
    pub kind: EventKind,
    /// The stored JSON object (what reads return), shared by duplicates.
    pub json: Bytes,
    pub domain: Domain,
    pub consent_id: Option<Box<str>>,
    pub therapist_id: Option<Box<str>>,
}

/// Top-level keys that belong to the envelope rather than to the body.
const RESERVED: &[&str] = &[
    "kind",
    "event_type",
    "subject_id",
    "patient_id",
    "body",
    "meta",
    "event_id",
];

/// Flat-shape `event_type` spellings seen in the service's controllers.
fn parse_kind(s: &str) -> Option<EventKind> {
    EventKind::parse(s).or(match s {
        "session_started"
        | "session_start"
        | "session_completed"
        | "session_complete"
        | "exercise_session_started"
        | "exercise_session_completed" => Some(EventKind::ExerciseSession),
        "rep" | "rep_observed" => Some(EventKind::RepObservation),
        _ => None,
    })
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

fn new_event_id() -> Box<str> {
    // A per-process random prefix keeps ids unique across restarts.
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random::<u32>);
    let n = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("evt_{prefix:08x}{n:012x}").into_boxed_str()
}

/// Ids appear in URLs and headers, so keep them to a safe alphabet.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

fn id_field(map: &Map<String, Value>, key: &str) -> Result<Option<Box<str>>, EnvelopeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_id(s) => Ok(Some(s.as_str().into())),
        Some(_) => Err(EnvelopeError::Invalid(format!(
            "`{key}` must be an id of 1-{MAX_ID_LEN} characters [A-Za-z0-9_.:@-]"
        ))),
    }
}

fn str_field(map: &Map<String, Value>, key: &str) -> Option<Box<str>> {
    match map.get(key) {
        Some(Value::String(s)) if s.len() <= MAX_ID_LEN => Some(s.as_str().into()),
        _ => None,
    }
}

fn u32_field(map: &Map<String, Value>, key: &str) -> Option<u32> {
    map.get(key)
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
}

fn quality_field(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key)
        .and_then(Value::as_f64)
        .filter(|q| (0.0..=1.0).contains(q))
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
pub fn parse_ts_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

/// Last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// RFC 3339 with milliseconds. Clamped to years 1970-9999: humantime's
/// formatter panics past year 9999 (found by fuzzing).
pub fn format_ts_ms(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_RFC3339_MS);
    let t = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When an event was received: wall milliseconds for the domain fields, and
/// the acceptance instant, published as `committed_at` on the service clock
/// and used as the start of the true projection lag.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub ms: i64,
    pub at: Instant,
}

impl Received {
    pub fn now() -> Self {
        Received {
            ms: now_ms(),
            at: Instant::now(),
        }
    }
}

/// Tests and fuzzers give a wall time only; the instant is now.
impl From<i64> for Received {
    fn from(ms: i64) -> Self {
        Received {
            ms,
            at: Instant::now(),
        }
    }
}

/// Parses one event from raw JSON bytes.
pub fn parse_event(
    raw: &[u8],
    max_bytes: usize,
    received: impl Into<Received>,
) -> Result<Event, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    from_value(value, max_bytes, received)
}

/// Normalizes one already-parsed event (batch items come this way).
pub fn from_value(
    value: Value,
    max_bytes: usize,
    received: impl Into<Received>,
) -> Result<Event, EnvelopeError> {
    let received = received.into();
    let now_ms = received.ms;
    let Value::Object(mut top) = value else {
        return Err(EnvelopeError::Invalid(
            "an event must be a JSON object".into(),
        ));
    };
    let kind_str = match (top.get("kind"), top.get("event_type")) {
        (Some(Value::String(k)), _) => k.clone(),
        (_, Some(Value::String(k))) => k.clone(),
        _ => {
            return Err(EnvelopeError::Invalid(
                "missing `kind` (or `event_type`)".into(),
            ))
        }
    };
    let Some(kind) = parse_kind(&kind_str) else {
        let mut shown = kind_str;
        shown.truncate(MAX_ID_LEN);
        return Err(EnvelopeError::UnknownKind(shown));
    };
    let patient = id_field(&top, "subject_id")?
        .or(id_field(&top, "patient_id")?)
        .ok_or_else(|| EnvelopeError::Invalid("missing `subject_id` (or `patient_id`)".into()))?;
    let client_event_id = id_field(&top, "event_id")?;

    let mut body = match top.remove("body") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(EnvelopeError::Invalid("`body` must be an object".into())),
    };
    let meta = match top.remove("meta") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(EnvelopeError::Invalid("`meta` must be an object".into())),
    };
    // Fields at top level (the flat shape, or `exercise_id` of the envelope)
    // belong to the body; explicit body fields win.
    for (k, v) in top {
        if !RESERVED.contains(&k.as_str()) {
            body.entry(k).or_insert(v);
        }
    }

    let consent_id = id_field(&meta, "consent_id")?.or(id_field(&body, "consent_id")?);
    let therapist_id = id_field(&meta, "therapist_id")?.or(id_field(&body, "therapist_id")?);
    let domain = extract_domain(kind, &kind_str, &body, &meta, now_ms);
    let event_id = client_event_id.unwrap_or_else(new_event_id);

    let stored = serde_json::json!({
        "event_id": &*event_id,
        "patient_id": &*patient,
        "subject_id": &*patient,
        "kind": kind.as_str(),
        "event_type": kind_str,
        "timestamp": format_ts_ms(domain.ts_ms),
        "received_at": format_ts_ms(now_ms),
        "committed_at": clock::rfc3339_us(received.at),
        "body": body,
        "meta": meta,
    });
    let json = serde_json::to_vec(&stored).map_err(|e| EnvelopeError::Invalid(e.to_string()))?;
    if json.len() > max_bytes {
        return Err(EnvelopeError::TooLarge(json.len()));
    }
    Ok(Event {
        id: Arc::from(&*event_id),
        patient_id: Arc::from(&*patient),
        kind,
        json: Bytes::from(json),
        domain,
        consent_id,
        therapist_id,
    })
}

fn extract_domain(
    kind: EventKind,
    kind_str: &str,
    body: &Map<String, Value>,
    meta: &Map<String, Value>,
    now_ms: i64,
) -> Domain {
    let ts_ms = ["end_time", "timestamp", "start_time", "occurred_at"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str).and_then(parse_ts_ms))
        .or_else(|| {
            meta.get("timestamp")
                .and_then(Value::as_str)
                .and_then(parse_ts_ms)
        })
        .unwrap_or(now_ms);
    let mut d = Domain {
        ts_ms,
        session_id: str_field(body, "session_id").or_else(|| str_field(meta, "correlation_id")),
        ..Domain::default()
    };
    match kind {
        EventKind::ExerciseSession => {
            d.prescribed_reps = u32_field(body, "prescribed_reps");
            d.completed_reps = u32_field(body, "completed_reps");
            d.completion_status = str_field(body, "completion_status");
            d.quality = quality_field(body, "overall_quality");
            d.is_completion = kind_str.ends_with("completed")
                || kind_str.ends_with("complete")
                || body.contains_key("end_time")
                || d.completion_status.is_some()
                || d.completed_reps.is_some();
        }
        EventKind::RepObservation => {
            d.quality = quality_field(body, "quality_score");
        }
        EventKind::Alert => {
            let alert_type = str_field(body, "alert_type").unwrap_or_else(|| "custom".into());
            let priority = str_field(body, "priority").unwrap_or_else(|| "medium".into());
            d.alert = Some((alert_type, priority));
        }
        EventKind::Feedback | EventKind::Consent => {}
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32 * 1024;

    #[test]
    fn envelope_shape() {
        let raw = br#"{"kind":"exercise_session","subject_id":"patient_001","exercise_id":"knee",
            "body":{"session_id":"s1","start_time":"2025-09-08T10:00:00Z","prescribed_reps":15},
            "meta":{"consent_id":"c1","therapist_id":"t1"}}"#;
        let e = parse_event(raw, MAX, 0).unwrap();
        assert_eq!(&*e.patient_id, "patient_001");
        assert_eq!(e.kind, EventKind::ExerciseSession);
        assert_eq!(e.domain.prescribed_reps, Some(15));
        assert!(!e.domain.is_completion);
        assert_eq!(e.domain.ts_ms, parse_ts_ms("2025-09-08T10:00:00Z").unwrap());
        assert_eq!(e.consent_id.as_deref(), Some("c1"));
        assert_eq!(e.therapist_id.as_deref(), Some("t1"));
        let stored: Value = serde_json::from_slice(&e.json).unwrap();
        assert_eq!(stored["body"]["exercise_id"], "knee");
    }

    #[test]
    fn flat_shape() {
        let raw = br#"{"patient_id":"p2","event_type":"exercise_session","session_id":"s1",
            "end_time":"2025-09-08T10:30:00Z","completed_reps":12,"overall_quality":0.8}"#;
        let e = parse_event(raw, MAX, 0).unwrap();
        assert_eq!(&*e.patient_id, "p2");
        assert!(e.domain.is_completion);
        assert_eq!(e.domain.completed_reps, Some(12));
        assert_eq!(e.domain.quality, Some(0.8));
    }

    fn class(e: &EnvelopeError) -> &'static str {
        match e {
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::Invalid(_) => "invalid",
            EnvelopeError::UnknownKind(_) => "unknown_kind",
            EnvelopeError::TooLarge(_) => "too_large",
        }
    }

    #[test]
    fn errors_are_classified() {
        let cases: &[(&str, &str)] = &[
            ("{not json", "malformed"),
            ("[1]", "invalid"),
            (r#"{"subject_id":"p"}"#, "invalid"),
            (r#"{"kind":"teleport","subject_id":"p"}"#, "unknown_kind"),
            (r#"{"kind":"feedback"}"#, "invalid"),
            (r#"{"kind":"feedback","subject_id":"a b"}"#, "invalid"),
            (
                r#"{"kind":"feedback","subject_id":"p","body":3}"#,
                "invalid",
            ),
        ];
        for (raw, want) in cases {
            let err = parse_event(raw.as_bytes(), MAX, 0).unwrap_err();
            assert_eq!(class(&err), *want, "{raw}");
        }
    }

    #[test]
    fn too_large() {
        let big = "x".repeat(MAX);
        let raw = format!(r#"{{"kind":"feedback","subject_id":"p","body":{{"t":"{big}"}}}}"#);
        assert!(matches!(
            parse_event(raw.as_bytes(), MAX, 0),
            Err(EnvelopeError::TooLarge(_))
        ));
    }

    #[test]
    fn timestamps_default_to_receive_time() {
        let e = parse_event(br#"{"kind":"feedback","subject_id":"p"}"#, MAX, 1234).unwrap();
        assert_eq!(e.domain.ts_ms, 1234);
    }
}

/// Property tests: the parser of incoming events never panics, whatever the
/// bytes or the JSON shape, and what it accepts is a well-formed event.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Cases per property; `PROPTEST_CASES=20000` searches deeper by hand.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500)
    }

    /// Field names the parser looks at, so generated objects reach its
    /// branches instead of failing on the first missing key.
    const KEYS: &[&str] = &[
        "kind",
        "subject_id",
        "body",
        "meta",
        "patient_id",
        "event_type",
        "event_id",
        "session_id",
        "start_time",
        "end_time",
        "occurred_at",
        "timestamp",
        "received_at",
        "prescribed_reps",
        "completed_reps",
        "completion_status",
        "overall_quality",
        "quality_score",
        "alert_type",
        "priority",
        "consent_id",
        "therapist_id",
        "exercise_id",
        "correlation_id",
        "x",
    ];

    fn json() -> impl Strategy<Value = Value> {
        let kinds: Vec<Value> = EventKind::ALL
            .iter()
            .map(|k| Value::from(k.as_str()))
            .chain(
                [
                    "session_start",
                    "session_completed",
                    "rep",
                    "exercise_session_completed",
                    "teleport",
                ]
                .map(Value::from),
            )
            .collect();
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(kinds),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z"
                .prop_map(Value::from),
            "patient_[0-9]{1,3}|[a-z0-9_.:-]{0,12}".prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    fn check(result: Result<Event, EnvelopeError>) -> Result<(), TestCaseError> {
        if let Ok(e) = result {
            prop_assert!(
                valid_id(&e.patient_id),
                "accepted a bad id {:?}",
                e.patient_id
            );
            let stored: Result<Value, _> = serde_json::from_slice(&e.json);
            prop_assert!(matches!(stored, Ok(Value::Object(_))));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(
            raw in prop::collection::vec(any::<u8>(), 0..512),
            max in 0usize..1024,
            now in any::<i64>(),
        ) {
            check(parse_event(&raw, max, now))?;
        }

        #[test]
        fn arbitrary_json_never_panics(v in json(), now in any::<i64>()) {
            let raw = serde_json::to_vec(&v).unwrap();
            check(parse_event(&raw, 32 * 1024, now))?;
            check(from_value(v, 32 * 1024, now))?;
        }

        #[test]
        fn timestamps_never_panic(s in "\\PC{0,40}", ms in any::<i64>()) {
            let _ = parse_ts_ms(&s);
            let _ = format_ts_ms(ms);
            let _ = valid_id(&s);
        }
    }
}
