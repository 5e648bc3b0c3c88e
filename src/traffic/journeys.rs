//! What to send: realistic journeys of synthetic patients (session start, reps,
//! completion), therapists (stream, then quality) and admins (work queue, then
//! alerts), rendered in the configured payload shape.
//!
//! Every subject lives in a reserved namespace (`subject_prefix`), every event
//! says `meta.synthetic: true`, and nothing resembles real PHI. Journeys are
//! owned by the single scheduling loop, so no locks are needed here.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
use http::Uri;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Url;

use crate::api::{Endpoint, EventKind};
use crate::config::{BatchConfig, JourneyConfig, PayloadConfig, PayloadShape};

/// The three user kinds of the mix, in `[patient, therapist, admin]` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyKind {
    Patient,
    Therapist,
    Admin,
}

impl JourneyKind {
    pub const ALL: [JourneyKind; 3] = [
        JourneyKind::Patient,
        JourneyKind::Therapist,
        JourneyKind::Admin,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStep {
    Start,
    Rep,
    Completion,
}

/// One unit of work the engine sends at one intended instant.
#[derive(Debug, Clone)]
pub enum Job {
    /// One event POST (one step of a patient session).
    Post {
        kind: EventKind,
        step: SessionStep,
        body: Bytes,
    },
    /// A batched session's reps and completion in one
    /// `POST /api/v1/events/batch` (a JSON array of `reps + 1` events).
    Batch { reps: u32, body: Bytes },
    /// Two reads sent one after the other, as a person clicking through.
    /// Each read's origin-form URI was rendered once, at start: sending one
    /// clones a reference, not a string.
    Reads([(Endpoint, Uri); 2]),
}

#[derive(Debug, Clone)]
struct Session {
    patient: u32,
    seq: u64,
    /// Uploads its reps and completion as one batch.
    batched: bool,
    prescribed: u32,
    done_reps: u32,
    quality_sum: f64,
    ready_at: f64,
}

/// Ready-made URLs, so the hot path clones instead of formatting.
#[derive(Debug, Clone)]
pub struct Urls {
    pub events: Uri,
    pub batch: Uri,
    alerts: Uri,
    stream: Vec<Uri>,
    quality: Vec<Uri>,
    work_queue: Vec<Uri>,
}

/// A journey's route that is not a valid request target.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("target.base_url: {0}")]
    Url(#[from] url::ParseError),
    #[error("target.base_url: {0}")]
    Uri(#[from] http::uri::InvalidUri),
}

/// The origin form (`/path?query`) of `path` under `base`.
fn origin(base: &Url, path: &str) -> Result<Uri, RouteError> {
    let url = base.join(path)?;
    Ok(Uri::try_from(&url[url::Position::BeforePath..])?)
}

/// How subjects are named. `namespace` is the prefix plus any shard segment.
#[derive(Debug, Clone)]
pub struct Naming {
    pub namespace: String,
    /// Distinguishes session ids across restarts of the canary.
    pub run_id: String,
}

impl Naming {
    pub fn patient(&self, n: u32) -> String {
        format!("{}p{:06}", self.namespace, n)
    }

    pub fn therapist(&self, n: u32) -> String {
        format!("{}t{:04}", self.namespace, n)
    }
}

pub struct Journeys {
    cfg: JourneyConfig,
    base: Url,
    naming: Naming,
    urls: Urls,
    payload: PayloadWriter,
    patient_ids: Vec<String>,
    therapist_ids: Vec<String>,
    sessions: VecDeque<Session>,
    next_patient: u32,
    next_seq: u64,
    /// Patients known to have consented (a session start was sent), for reads.
    recent: Vec<u32>,
    recent_pos: usize,
    rng: SmallRng,
    batch: BatchConfig,
    /// Patient ticks still to absorb: events that already went out in a batch.
    absorbed: u32,
    /// A burst with `as_batches` is on: every new session is batched.
    bursting: bool,
}

const RECENT: usize = 256;

impl Journeys {
    pub fn new(
        cfg: &JourneyConfig,
        payload: &PayloadConfig,
        base: &Url,
        naming: Naming,
    ) -> Result<Self, RouteError> {
        let patient_ids: Vec<String> = (0..cfg.patients).map(|n| naming.patient(n)).collect();
        let therapist_ids: Vec<String> = (0..cfg.therapists).map(|n| naming.therapist(n)).collect();
        let join = |path: &str| origin(base, path);
        let mut stream = Vec::with_capacity(patient_ids.len());
        let mut quality = Vec::with_capacity(patient_ids.len());
        for id in &patient_ids {
            stream.push(join(&format!("api/v1/patients/{id}/stream?limit=50"))?);
            quality.push(join(&format!(
                "api/v1/projections/quality?patient_id={id}&window={}",
                cfg.quality_window
            ))?);
        }
        let work_queue = therapist_ids
            .iter()
            .map(|t| join(&format!("api/v1/projections/work-queue?therapist_id={t}")))
            .collect::<Result<_, _>>()?;
        let urls = Urls {
            events: join("api/v1/events")?,
            batch: join("api/v1/events/batch")?,
            alerts: join("api/v1/alerts?alert_type=quality_degradation")?,
            stream,
            quality,
            work_queue,
        };
        Ok(Journeys {
            cfg: cfg.clone(),
            base: base.clone(),
            naming,
            urls,
            payload: PayloadWriter::new(payload),
            patient_ids,
            therapist_ids,
            sessions: VecDeque::new(),
            next_patient: 0,
            next_seq: 0,
            recent: Vec::with_capacity(RECENT),
            recent_pos: 0,
            rng: SmallRng::from_os_rng(),
            batch: BatchConfig::default(),
            absorbed: 0,
            bursting: false,
        })
    }

    /// Batches a share of the sessions opened from now on.
    pub fn with_batch(mut self, batch: &BatchConfig) -> Self {
        self.set_batch(batch);
        self
    }

    pub fn set_batch(&mut self, batch: &BatchConfig) {
        self.batch = batch.clone();
    }

    /// While true, every session opened is batched (a burst of batches).
    pub fn set_bursting(&mut self, on: bool) {
        self.bursting = on;
    }

    /// True when this patient tick's event already went out in a batch:
    /// the tick sends nothing (call before anything else for the tick).
    pub fn absorb(&mut self) -> bool {
        if self.absorbed > 0 {
            self.absorbed -= 1;
            true
        } else {
            false
        }
    }

    /// Journeys for a reloaded config: same target and run id, new pools,
    /// prefix and payload shape. Sessions in progress are dropped, not corrupted.
    pub fn rebuild(
        &self,
        cfg: &JourneyConfig,
        payload: &PayloadConfig,
    ) -> Result<Self, RouteError> {
        let naming = Naming {
            namespace: cfg.subject_prefix.clone(),
            run_id: self.naming.run_id.clone(),
        };
        Journeys::new(cfg, payload, &self.base, naming)
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    /// Sessions currently open (started, not completed).
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The job for one tick of `kind` at schedule time `now_t` (seconds).
    pub fn next(&mut self, kind: JourneyKind, now_t: f64) -> Job {
        match kind {
            JourneyKind::Patient => self.next_event(now_t),
            JourneyKind::Therapist => {
                let p = self.pick_recent_patient() as usize;
                Job::Reads([
                    (Endpoint::PatientStream, self.urls.stream[p].clone()),
                    (Endpoint::Quality, self.urls.quality[p].clone()),
                ])
            }
            JourneyKind::Admin => {
                let t = self.rng.random_range(0..self.therapist_ids.len());
                Job::Reads([
                    (Endpoint::WorkQueue, self.urls.work_queue[t].clone()),
                    (Endpoint::Alerts, self.urls.alerts.clone()),
                ])
            }
        }
    }

    fn pick_recent_patient(&mut self) -> u32 {
        if self.recent.is_empty() {
            // Nobody has started a session yet: read the first patient, whose
            // 403 (no consent) is then a true answer of the target.
            return 0;
        }
        self.recent[self.rng.random_range(0..self.recent.len())]
    }

    /// Takes the oldest session whose next step is due; if none is due, opens a
    /// new one. The event rate stays exact while reps keep their spacing.
    fn next_event(&mut self, now_t: f64) -> Job {
        let due = self.sessions.front().is_some_and(|s| s.ready_at <= now_t);
        let mut session = if due {
            self.sessions.pop_front().expect("front checked above")
        } else {
            let patient = self.next_patient;
            self.next_patient = (self.next_patient + 1) % self.cfg.patients;
            self.next_seq += 1;
            let batched = self.bursting
                || (self.batch.share > 0.0 && self.rng.random::<f64>() < self.batch.share);
            // A batch holds the reps and the completion.
            let prescribed = if batched {
                self.rng
                    .random_range(self.batch.size.min..=self.batch.size.max)
                    .saturating_sub(1)
            } else {
                self.rng.random_range(self.cfg.reps_min..=self.cfg.reps_max)
            };
            let s = Session {
                patient,
                seq: self.next_seq,
                batched,
                prescribed,
                done_reps: 0,
                quality_sum: 0.0,
                ready_at: now_t,
            };
            let body = self.render_start(&s);
            self.remember(patient);
            self.push_back(s, now_t);
            return Job::Post {
                kind: EventKind::ExerciseSession,
                step: SessionStep::Start,
                body,
            };
        };
        if session.batched {
            return self.batch_of(&mut session);
        }
        if session.done_reps < session.prescribed {
            session.done_reps += 1;
            let q = self
                .rng
                .random_range(self.cfg.quality_min..=self.cfg.quality_max);
            session.quality_sum += q;
            let body = self.render_rep(&session, q);
            self.push_back(session, now_t);
            Job::Post {
                kind: EventKind::RepObservation,
                step: SessionStep::Rep,
                body,
            }
        } else {
            let body = self.render_completion(&session);
            Job::Post {
                kind: EventKind::ExerciseSession,
                step: SessionStep::Completion,
                body,
            }
        }
    }

    /// Every rep and the completion of `s` as one JSON array; the ticks of
    /// all but one of its events are absorbed afterwards.
    fn batch_of(&mut self, s: &mut Session) -> Job {
        let mut body = Vec::with_capacity(512 * (s.prescribed as usize + 1));
        body.push(b'[');
        while s.done_reps < s.prescribed {
            s.done_reps += 1;
            let q = self
                .rng
                .random_range(self.cfg.quality_min..=self.cfg.quality_max);
            s.quality_sum += q;
            body.extend_from_slice(&self.render_rep(s, q));
            body.push(b',');
        }
        body.extend_from_slice(&self.render_completion(s));
        body.push(b']');
        self.absorbed += s.prescribed;
        Job::Batch {
            reps: s.prescribed,
            body: body.into(),
        }
    }

    fn push_back(&mut self, mut s: Session, now_t: f64) {
        s.ready_at = now_t + self.cfg.rep_interval.as_secs_f64();
        self.sessions.push_back(s);
    }

    fn remember(&mut self, patient: u32) {
        if self.recent.len() < RECENT {
            self.recent.push(patient);
        } else {
            self.recent[self.recent_pos] = patient;
            self.recent_pos = (self.recent_pos + 1) % RECENT;
        }
    }

    fn session_id(&self, s: &Session) -> String {
        format!(
            "{}s-{}-{}",
            self.naming.namespace, self.naming.run_id, s.seq
        )
    }

    fn meta(&self, s: &Session, session_id: &str) -> Meta<'_> {
        Meta {
            consent_id: format!("{}consent-{:06}", self.naming.namespace, s.patient),
            therapist: &self.therapist_ids[(s.patient % self.cfg.therapists) as usize],
            correlation_id: session_id.to_owned(),
        }
    }

    /// Every event of a session carries the same subject, meta and
    /// `session_id`, and is stamped when it is rendered.
    fn render_session(
        &self,
        kind: EventKind,
        s: &Session,
        fields: impl FnOnce(&mut ObjWriter, humantime::Rfc3339Timestamp),
    ) -> Bytes {
        let sid = self.session_id(s);
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        self.payload.render(
            kind,
            &self.patient_ids[s.patient as usize],
            &self.meta(s, &sid),
            |b| {
                b.str("session_id", &sid);
                fields(b, now);
            },
        )
    }

    fn render_start(&self, s: &Session) -> Bytes {
        self.render_session(EventKind::ExerciseSession, s, |b, now| {
            b.str("prescribed_exercise_id", "canary_template_knee");
            b.str("exercise_id", "canary_knee_flexion");
            b.display_str("start_time", now);
            b.display("prescribed_reps", s.prescribed);
            b.raw(
                "device_info",
                concat!(
                    "{\"model\":\"rehab-canary\",\"app_version\":\"",
                    env!("CARGO_PKG_VERSION"),
                    "\"}"
                ),
            );
        })
    }

    fn render_rep(&mut self, s: &Session, quality: f64) -> Bytes {
        let confidence = self.rng.random_range(0.90..=1.0f64);
        let duration_ms = self.rng.random_range(2500..=3500u32);
        self.render_session(EventKind::RepObservation, s, |b, now| {
            b.display("rep_number", s.done_reps);
            b.display("quality_score", Round2(quality));
            b.display("confidence_rating", Round2(confidence));
            b.display("duration_ms", duration_ms);
            b.display_str("timestamp", now);
        })
    }

    fn render_completion(&self, s: &Session) -> Bytes {
        let overall = if s.done_reps > 0 {
            s.quality_sum / f64::from(s.done_reps)
        } else {
            0.0
        };
        self.render_session(EventKind::ExerciseSession, s, |b, now| {
            b.display_str("end_time", now);
            b.str("completion_status", "completed");
            b.display("completed_reps", s.done_reps);
            b.display("prescribed_reps", s.prescribed);
            b.display("overall_quality", Round2(overall));
        })
    }
}

/// Two decimals, as the service's own load test writes scores.
struct Round2(f64);

impl std::fmt::Display for Round2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

pub struct Meta<'a> {
    pub consent_id: String,
    pub therapist: &'a str,
    pub correlation_id: String,
}

/// Renders events as JSON with the configured shape and field names. Keys are
/// escaped once at construction; values are generated (ids from a validated
/// prefix, numbers, timestamps) and escaped through serde_json where they are
/// strings.
#[derive(Debug, Clone)]
pub struct PayloadWriter {
    shape: PayloadShape,
    kind: String,
    subject: String,
    body: String,
    meta: String,
    patient: String,
    event_type: String,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

impl PayloadWriter {
    pub fn new(cfg: &PayloadConfig) -> Self {
        PayloadWriter {
            shape: cfg.shape,
            kind: quoted(&cfg.kind_field),
            subject: quoted(&cfg.subject_field),
            body: quoted(&cfg.body_field),
            meta: quoted(&cfg.meta_field),
            patient: quoted(&cfg.patient_field),
            event_type: quoted(&cfg.event_type_field),
        }
    }

    /// Renders one event; `fields` writes the kind-specific fields.
    pub fn render(
        &self,
        kind: EventKind,
        subject: &str,
        meta: &Meta<'_>,
        fields: impl FnOnce(&mut ObjWriter),
    ) -> Bytes {
        let mut w = ObjWriter::with_capacity(512);
        w.open();
        match self.shape {
            PayloadShape::Envelope => {
                w.raw_key(&self.kind);
                w.quoted_value(kind.as_str());
                w.raw_key(&self.subject);
                w.quoted_value(subject);
                w.raw_key(&self.body);
                w.open();
                fields(&mut w);
                w.close();
            }
            PayloadShape::Flat => {
                w.raw_key(&self.patient);
                w.quoted_value(subject);
                w.raw_key(&self.event_type);
                w.quoted_value(kind.as_str());
                fields(&mut w);
            }
        }
        w.raw_key(&self.meta);
        w.open();
        w.raw("synthetic", "true");
        w.raw("phi", "false");
        w.str("consent_id", &meta.consent_id);
        w.str("therapist_id", meta.therapist);
        w.str("site_id", "canary");
        w.str("correlation_id", &meta.correlation_id);
        w.str("source", "rehab-canary");
        w.close();
        w.close();
        Bytes::from(w.buf.into_bytes())
    }
}

/// A minimal JSON object writer: one buffer, no intermediate values.
pub struct ObjWriter {
    buf: String,
    first: bool,
}

impl ObjWriter {
    fn with_capacity(n: usize) -> Self {
        ObjWriter {
            buf: String::with_capacity(n),
            first: true,
        }
    }

    fn open(&mut self) {
        self.buf.push('{');
        self.first = true;
    }

    fn close(&mut self) {
        self.buf.push('}');
        self.first = false;
    }

    fn raw_key(&mut self, quoted_key: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.buf.push_str(quoted_key);
        self.buf.push(':');
    }

    fn key(&mut self, key: &'static str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.buf.push('"');
        self.buf.push_str(key);
        self.buf.push_str("\":");
    }

    fn quoted_value(&mut self, v: &str) {
        if v.bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            self.buf.push('"');
            self.buf.push_str(v);
            self.buf.push('"');
        } else {
            self.buf.push_str(&quoted(v));
        }
    }

    pub fn str(&mut self, key: &'static str, v: &str) {
        self.key(key);
        self.quoted_value(v);
    }

    /// A value whose `Display` is a JSON string's content (timestamps).
    pub fn display_str(&mut self, key: &'static str, v: impl std::fmt::Display) {
        self.key(key);
        let _ = write!(self.buf, "\"{v}\"");
    }

    /// A number or other value whose `Display` is valid JSON.
    pub fn display(&mut self, key: &'static str, v: impl std::fmt::Display) {
        self.key(key);
        let _ = write!(self.buf, "{v}");
    }

    pub fn raw(&mut self, key: &'static str, json: &str) {
        self.key(key);
        self.buf.push_str(json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JourneyConfig;
    use serde_json::Value;

    fn journeys(shape: PayloadShape) -> Journeys {
        let cfg = JourneyConfig {
            patients: 3,
            therapists: 2,
            rep_interval: std::time::Duration::from_millis(100),
            reps_min: 10,
            reps_max: 15,
            ..JourneyConfig::default()
        };
        let payload = PayloadConfig {
            shape,
            ..PayloadConfig::default()
        };
        let base = Url::parse("http://127.0.0.1:1/").unwrap();
        let naming = Naming {
            namespace: "canary-".into(),
            run_id: "r1".into(),
        };
        Journeys::new(&cfg, &payload, &base, naming).unwrap()
    }

    fn post(job: Job) -> (EventKind, SessionStep, Value) {
        match job {
            Job::Post { kind, step, body } => (kind, step, serde_json::from_slice(&body).unwrap()),
            Job::Reads(_) | Job::Batch { .. } => panic!("expected a post"),
        }
    }

    #[test]
    fn a_session_is_start_reps_completion_with_spacing() {
        let mut j = journeys(PayloadShape::Envelope);
        let (kind, step, start) = post(j.next(JourneyKind::Patient, 0.0));
        assert_eq!(
            (kind, step),
            (EventKind::ExerciseSession, SessionStep::Start)
        );
        assert_eq!(start["kind"], "exercise_session");
        assert_eq!(start["subject_id"], "canary-p000000");
        assert_eq!(start["meta"]["synthetic"], true);
        assert_eq!(start["meta"]["consent_id"], "canary-consent-000000");
        let prescribed = start["body"]["prescribed_reps"].as_u64().unwrap();
        assert!((10..=15).contains(&prescribed));
        let sid = start["body"]["session_id"].as_str().unwrap().to_owned();
        assert!(sid.starts_with("canary-s-r1-"));

        // Before the rep interval passed, a new session opens instead.
        let (_, step, other) = post(j.next(JourneyKind::Patient, 0.05));
        assert_eq!(step, SessionStep::Start);
        assert_eq!(other["subject_id"], "canary-p000001");

        let mut t = 0.1;
        let mut reps = Vec::new();
        loop {
            let (kind, step, v) = post(j.next(JourneyKind::Patient, t));
            t += 0.1;
            if v["body"]["session_id"] != sid.as_str() {
                continue;
            }
            match step {
                SessionStep::Rep => {
                    assert_eq!(kind, EventKind::RepObservation);
                    let q = v["body"]["quality_score"].as_f64().unwrap();
                    assert!((0.6..=0.95).contains(&q));
                    reps.push(v["body"]["rep_number"].as_u64().unwrap());
                }
                SessionStep::Completion => {
                    assert_eq!(v["body"]["completed_reps"].as_u64(), Some(prescribed));
                    assert_eq!(v["body"]["completion_status"], "completed");
                    break;
                }
                SessionStep::Start => panic!("session restarted"),
            }
            assert!(t < 100.0);
        }
        assert_eq!(reps, (1..=prescribed).collect::<Vec<_>>());
    }

    #[test]
    fn flat_shape_uses_configured_fields() {
        let mut j = journeys(PayloadShape::Flat);
        let (_, _, v) = post(j.next(JourneyKind::Patient, 0.0));
        assert_eq!(v["patient_id"], "canary-p000000");
        assert_eq!(v["event_type"], "exercise_session");
        assert!(v["session_id"].is_string());
        assert!(v.get("body").is_none());
        assert_eq!(v["meta"]["synthetic"], true);
    }

    #[test]
    fn reads_target_consented_patients_and_known_routes() {
        let mut j = journeys(PayloadShape::Envelope);
        j.next(JourneyKind::Patient, 0.0);
        match j.next(JourneyKind::Therapist, 0.0) {
            Job::Reads([(e1, u1), (e2, u2)]) => {
                assert_eq!((e1, e2), (Endpoint::PatientStream, Endpoint::Quality));
                assert_eq!(u1.path(), "/api/v1/patients/canary-p000000/stream");
                assert!(u2.query().unwrap().contains("window=14d"));
            }
            Job::Post { .. } | Job::Batch { .. } => panic!("expected reads"),
        }
        match j.next(JourneyKind::Admin, 0.0) {
            Job::Reads([(e1, u1), (e2, _)]) => {
                assert_eq!((e1, e2), (Endpoint::WorkQueue, Endpoint::Alerts));
                assert!(u1.query().unwrap().starts_with("therapist_id=canary-t"));
            }
            Job::Post { .. } | Job::Batch { .. } => panic!("expected reads"),
        }
    }

    #[test]
    fn rebuild_applies_new_pools_and_shape_with_the_same_target() {
        let j = journeys(PayloadShape::Envelope);
        let cfg = JourneyConfig {
            patients: 1,
            therapists: 1,
            subject_prefix: "other-".into(),
            ..JourneyConfig::default()
        };
        let payload = PayloadConfig {
            shape: PayloadShape::Flat,
            ..PayloadConfig::default()
        };
        let mut r = j.rebuild(&cfg, &payload).unwrap();
        assert_eq!(r.urls().events, j.urls().events);
        let (_, _, v) = post(r.next(JourneyKind::Patient, 0.0));
        assert_eq!(v["patient_id"], "other-p000000");
        let (_, _, v) = post(r.next(JourneyKind::Patient, 0.0));
        assert_eq!(v["patient_id"], "other-p000000", "one patient in the pool");
    }

    #[test]
    fn odd_field_names_stay_valid_json() {
        let payload = PayloadConfig {
            kind_field: "ki\"nd".into(),
            ..PayloadConfig::default()
        };
        let w = PayloadWriter::new(&payload);
        let meta = Meta {
            consent_id: "c".into(),
            therapist: "t",
            correlation_id: "x".into(),
        };
        let body = w.render(EventKind::Feedback, "canary-\u{1}p", &meta, |b| {
            b.str("note", "a\"b")
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ki\"nd"], "feedback");
        assert_eq!(v["subject_id"], "canary-\u{1}p");
    }

    /// Every patient tick is one event, sent alone, in a batch, or absorbed
    /// because its event already left in one: over 20 s at 500 events/s the
    /// events sent equal the ticks plus the ticks still to absorb (< one
    /// batch), so the offered rate is exact to 1 %.
    #[test]
    fn batched_sessions_keep_the_offered_event_rate_exact() {
        for shape in [PayloadShape::Envelope, PayloadShape::Flat] {
            let mut j = journeys(shape).with_batch(&BatchConfig {
                share: 0.5,
                size: crate::config::SizeRange { min: 10, max: 100 },
            });
            let ticks: u32 = 500 * 20;
            let (mut events, mut batches, mut batch_events) = (0u64, 0u64, 0u64);
            for k in 0..ticks {
                if j.absorb() {
                    continue;
                }
                match j.next(JourneyKind::Patient, f64::from(k) / 500.0) {
                    Job::Post { .. } => events += 1,
                    Job::Batch { reps, body } => {
                        let n = u64::from(reps) + 1;
                        events += n;
                        batches += 1;
                        batch_events += n;
                        assert!((10..=100).contains(&n), "batch of {n}");
                        let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        assert_eq!(items.len() as u64, n);
                        let subject = |v: &Value| {
                            v.get("subject_id")
                                .or(v.get("patient_id"))
                                .cloned()
                                .unwrap()
                        };
                        assert!(items.iter().all(|v| subject(v) == subject(&items[0])));
                        let last = items.last().unwrap().to_string();
                        assert!(last.contains("completion_status"), "{last}");
                    }
                    Job::Reads(_) => unreachable!(),
                }
            }
            assert_eq!(
                events,
                u64::from(ticks) + u64::from(j.absorbed),
                "{shape:?}"
            );
            let err = (events as f64 / f64::from(ticks) - 1.0).abs();
            assert!(err < 0.01, "offered rate off by {err}");
            // About half the sessions are batched, so batches carry most events.
            assert!(batches > 20, "{batches} batches");
            let share = batch_events as f64 / events as f64;
            assert!(
                (0.6..0.95).contains(&share),
                "batched share of events {share}"
            );
        }
    }

    #[test]
    fn a_burst_as_batches_batches_every_new_session() {
        let mut j = journeys(PayloadShape::Envelope);
        j.set_bursting(true);
        // Each new session: its start alone, then one batch of 10..=100.
        for k in 0..5 {
            while j.absorb() {}
            let (_, step, _) = post(j.next(JourneyKind::Patient, f64::from(k)));
            assert_eq!(step, SessionStep::Start);
            match j.next(JourneyKind::Patient, f64::from(k) + 10.0) {
                Job::Batch { reps, .. } => assert!((9..=99).contains(&reps), "{reps}"),
                other => panic!("expected a batch, got {other:?}"),
            }
        }
        j.set_bursting(false);
        while j.absorb() {}
        let (_, step, _) = post(j.next(JourneyKind::Patient, 100.0));
        assert_eq!(step, SessionStep::Start);
        assert!(matches!(
            j.next(JourneyKind::Patient, 200.0),
            Job::Post { .. }
        ));
    }
}
