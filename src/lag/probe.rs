//! The plug-in contract of a lag probe: what marked event to post, on which
//! synthetic probe patient, and which read to poll with which visibility rule.
//! The shared scheduler (`mod.rs`) owns timing, polling and accounting; a
//! probe only answers "what do I post for sequence n" and "where do I look".
//!
//! The four built-in probes, with their defaults (each overridable in
//! `[lag.probes.NAME]`):
//!
//! | probe | posts | reads | rule |
//! |---|---|---|---|
//! | `stream` | a session start | `patients/{patient}/stream?limit=50` | marker under `/events` |
//! | `adherence` | a session completion | `projections/adherence` | marker under `/recent_sessions` |
//! | `quality` | a completion (quality 0.9) | `projections/quality?window=7d` | increment of `/sessions` |
//! | `work_queue` | a low-quality completion (0.4) on a fresh patient | the probe therapist's work queue | marker under `/items` |
//!
//! The marker is the event's `session_id` (and, for the work queue, the
//! fresh patient's id, which is what an alert carries). Probe patients live in
//! the synthetic namespace: `{prefix}probe-stream`, `{prefix}probe-adherence`,
//! `{prefix}probe-quality`, and `{marker}` for the work queue.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Url;

use super::marker::{MarkerPrefix, RunId};
use super::server_clock::{self, ServerClock, StampError};
use super::visibility::Visibility;
use crate::api::EventKind;
pub use crate::config::lag::Projection;
use crate::config::lag::{LagConfig, ProbeConfig, RuleKind};
use crate::config::PayloadConfig;
use crate::traffic::journeys::{Meta, ObjWriter, PayloadWriter};

/// `overall_quality` of the work-queue probe's session: below the service's
/// 0.70 alert threshold.
const LOW_QUALITY: &str = "0.40";
/// Sessions of quality 1.0 posted after the alert was seen, so the patient's
/// average (0.4 + 2) / 3 = 0.8 recovers, the alert resolves and the probe
/// therapist's work queue stays short.
const RECOVERY_SESSIONS: u32 = 2;
/// The probe events' `meta.correlation_id`: constant, so the marker occurs
/// once per stored event and a second occurrence means a real duplicate.
pub(super) const CORRELATION_ID: &str = "rehab-canary-probe";

struct Defaults {
    route: &'static str,
    rule: RuleKind,
    pointer: &'static str,
    /// At least this interval when `interval` is unset.
    min_interval: Duration,
    /// The integrity audit's read of one old event, and the pointer to an
    /// event's version in the listed items; `None` where the read model
    /// cannot show old events by contract (adherence lists the 20 newest
    /// sessions, the work queue only open alerts, quality is a count).
    audit_route: Option<&'static str>,
    audit_version: Option<&'static str>,
}

fn defaults(p: Projection) -> Defaults {
    match p {
        Projection::Stream => Defaults {
            route: "api/v1/patients/{patient}/stream?limit=50",
            rule: RuleKind::Marker,
            pointer: "/events",
            min_interval: Duration::ZERO,
            // From the version before the event: the read then shows the
            // event between its neighbours, and an older version proves
            // it reaches back far enough to judge an absence.
            audit_route: Some(
                "api/v1/patients/{patient}/stream?start_version={prev_version}&limit=3",
            ),
            audit_version: Some("/version"),
        },
        Projection::Adherence => Defaults {
            route: "api/v1/projections/adherence?patient_id={patient}",
            rule: RuleKind::Marker,
            pointer: "/recent_sessions",
            min_interval: Duration::ZERO,
            audit_route: None,
            audit_version: None,
        },
        Projection::Quality => Defaults {
            route: "api/v1/projections/quality?patient_id={patient}&window=7d",
            rule: RuleKind::Increment,
            pointer: "/sessions",
            min_interval: Duration::ZERO,
            audit_route: None,
            audit_version: None,
        },
        Projection::WorkQueue => Defaults {
            route: "api/v1/projections/work-queue?therapist_id={therapist}",
            rule: RuleKind::Marker,
            pointer: "/items",
            // Alert generation is slower to set up and to clean after (a
            // fresh patient per event), so it runs less often.
            min_interval: Duration::from_secs(30),
            audit_route: None,
            audit_version: None,
        },
    }
}

/// What every probe needs from the daemon.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The target base URL, with a trailing slash.
    pub base: Url,
    /// The synthetic subject namespace (`traffic.journeys.subject_prefix`).
    pub namespace: String,
    pub payload: PayloadConfig,
    pub run: RunId,
}

/// One marked event, ready to post.
#[derive(Debug)]
pub struct ProbeEvent {
    pub marker: String,
    pub body: Bytes,
    pub read_url: Url,
}

/// A configured probe.
#[derive(Debug)]
pub struct Probe {
    pub projection: Projection,
    pub prefix: MarkerPrefix,
    pub rule: Visibility,
    pub interval: Duration,
    pub events_url: Url,
    /// Where the service's own timestamps are, if it has them.
    pub server_clock: Option<ServerClock>,
    base: Url,
    route: String,
    /// The read URL when it does not depend on the event.
    fixed_read: Option<Url>,
    /// The integrity audit's route template; `None`: not audited.
    audit_route: Option<String>,
    audit_version: Option<String>,
    writer: PayloadWriter,
    /// The fixed probe patient; `None` means a fresh patient per event.
    patient: Option<String>,
    therapist: String,
    consent: String,
}

impl Probe {
    pub fn new(
        projection: Projection,
        cfg: &ProbeConfig,
        lag: &LagConfig,
        setup: &Setup,
    ) -> Result<Probe, url::ParseError> {
        let d = defaults(projection);
        let ns = &setup.namespace;
        let (patient, therapist) = match projection {
            // A fresh patient per event: its alert is its own, and carries
            // the marker as its patient id. A therapist per run keeps the
            // queue free of a previous run's leftovers.
            Projection::WorkQueue => (None, format!("{ns}probe-therapist-{:016x}", setup.run.0)),
            p => (
                Some(format!("{ns}probe-{}", p.as_str())),
                format!("{ns}probe-therapist"),
            ),
        };
        let route = cfg.route.clone().unwrap_or_else(|| d.route.to_owned());
        let rule = cfg.rule.unwrap_or(d.rule);
        let audit_route = match cfg.audit_route.as_deref() {
            Some("") => None,
            Some(r) => Some(r.to_owned()),
            None => d.audit_route.map(str::to_owned),
        }
        .filter(|_| rule == RuleKind::Marker);
        let audit_version = cfg
            .audit_version
            .clone()
            .or_else(|| d.audit_version.map(str::to_owned));
        let mut probe = Probe {
            projection,
            prefix: MarkerPrefix::new(ns, projection.as_str(), setup.run),
            rule: Visibility {
                kind: rule,
                pointer: cfg.pointer.clone().unwrap_or_else(|| d.pointer.to_owned()),
                expect: cfg.expect.clone().unwrap_or_default(),
            },
            interval: cfg.interval.unwrap_or(lag.interval.max(d.min_interval)),
            events_url: setup.base.join("api/v1/events")?,
            server_clock: match &cfg.server_clock {
                crate::config::lag::ServerClockConfig {
                    committed: Some(committed),
                    applied: Some(applied),
                } => Some(ServerClock {
                    committed: committed.clone(),
                    applied: applied.clone(),
                }),
                _ => None,
            },
            base: setup.base.clone(),
            route,
            fixed_read: None,
            audit_route,
            audit_version,
            writer: PayloadWriter::new(&setup.payload),
            patient,
            therapist,
            consent: format!("{ns}probe-consent"),
        };
        let per_event = probe.route.contains("{marker}")
            || (probe.patient.is_none() && probe.route.contains("{patient}"));
        if !per_event {
            probe.fixed_read = Some(probe.read_url("")?);
        }
        Ok(probe)
    }

    /// Whether the events share one patient stream, whose order the service
    /// promises (reordering is only judged then).
    pub fn ordered(&self) -> bool {
        self.patient.is_some()
    }

    /// The read URL that does not depend on the event, if the route has one;
    /// the late watch needs it.
    pub fn fixed_read(&self) -> Option<&Url> {
        self.fixed_read.as_ref()
    }

    /// Whether the integrity audit re-reads this probe's events.
    pub fn audited(&self) -> bool {
        self.audit_route.is_some()
    }

    /// Whether the audit route needs each event's version.
    pub fn audit_needs_version(&self) -> bool {
        self.audit_route
            .as_deref()
            .is_some_and(|r| r.contains("{version}") || r.contains("{prev_version}"))
    }

    /// The pointer to an event's version in the listed items.
    pub fn audit_version(&self) -> Option<&str> {
        self.audit_version.as_deref()
    }

    /// The audit read of event `seq` (of `version`, if known); `None` when
    /// not audited, or the route needs a version the event lacks.
    pub fn audit_url(&self, seq: u64, version: Option<u64>) -> Option<Url> {
        let route = self.audit_route.as_deref()?;
        let marker = self.prefix.marker(seq);
        let mut path = route
            .replace("{patient}", self.subject(&marker))
            .replace("{therapist}", &self.therapist)
            .replace("{marker}", &marker);
        if self.audit_needs_version() {
            let v = version?;
            path = path
                .replace("{prev_version}", &v.saturating_sub(1).to_string())
                .replace("{version}", &v.to_string());
        }
        self.base.join(&path).ok()
    }

    fn subject<'a>(&'a self, marker: &'a str) -> &'a str {
        self.patient.as_deref().unwrap_or(marker)
    }

    fn read_url(&self, marker: &str) -> Result<Url, url::ParseError> {
        let path = self
            .route
            .replace("{patient}", self.subject(marker))
            .replace("{therapist}", &self.therapist)
            .replace("{marker}", marker);
        self.base.join(&path)
    }

    /// The marked event of sequence `seq`.
    pub fn event(&self, seq: u64) -> Result<ProbeEvent, url::ParseError> {
        let marker = self.prefix.marker(seq);
        let read_url = match &self.fixed_read {
            Some(u) => u.clone(),
            None => self.read_url(&marker)?,
        };
        let body = match self.projection {
            Projection::Stream => self.render(&marker, |b| session_start(b, &marker)),
            Projection::Adherence | Projection::Quality => {
                self.render(&marker, |b| completion(b, &marker, "0.90"))
            }
            Projection::WorkQueue => self.render(&marker, |b| completion(b, &marker, LOW_QUALITY)),
        };
        Ok(ProbeEvent {
            marker,
            body,
            read_url,
        })
    }

    /// The service's applied time of event `seq` in a read that shows it:
    /// from the marked element for the `marker` rule, from the whole read
    /// for the others.
    pub fn applied(
        &self,
        doc: &serde_json::Value,
        seq: u64,
        pointer: &str,
    ) -> Result<SystemTime, StampError> {
        match self.rule.kind {
            RuleKind::Marker => {
                let root = self.rule.at(doc).ok_or(StampError::Missing)?;
                server_clock::applied(root, Some((&self.prefix, seq)), pointer)
            }
            RuleKind::Value | RuleKind::Increment => server_clock::applied(doc, None, pointer),
        }
    }

    /// Whether [`Probe::cleanup`] ever has something to post.
    pub fn has_cleanup(&self) -> bool {
        self.projection == Projection::WorkQueue
    }

    /// Events to post once the event `marker` was seen (or given up on):
    /// the work-queue probe's recovery sessions; nothing for the others.
    pub fn cleanup(&self, marker: &str) -> Vec<Bytes> {
        if !self.has_cleanup() {
            return Vec::new();
        }
        (1..=RECOVERY_SESSIONS)
            .map(|k| {
                // `{marker}.rK` is not a marker (the suffix fails parsing),
                // so recovery sessions are never taken for probe events.
                let sid = format!("{marker}.r{k}");
                self.render(marker, |b| completion(b, &sid, "1.00"))
            })
            .collect()
    }

    fn render(&self, marker: &str, fields: impl FnOnce(&mut ObjWriter)) -> Bytes {
        let meta = Meta {
            consent_id: self.consent.clone(),
            therapist: &self.therapist,
            correlation_id: CORRELATION_ID.to_owned(),
        };
        self.writer.render(
            EventKind::ExerciseSession,
            self.subject(marker),
            &meta,
            fields,
        )
    }
}

fn now() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(SystemTime::now())
}

/// A session start marked with `session_id` (the stream and batch probes').
pub(super) fn session_start(b: &mut ObjWriter, session_id: &str) {
    b.str("session_id", session_id);
    b.str("prescribed_exercise_id", "canary_probe_template");
    b.str("exercise_id", "canary_probe");
    b.display_str("start_time", now());
    b.display("prescribed_reps", 10);
}

fn completion(b: &mut ObjWriter, session_id: &str, quality: &str) {
    b.str("session_id", session_id);
    b.str("exercise_id", "canary_probe");
    b.display_str("end_time", now());
    b.str("completion_status", "completed");
    b.display("completed_reps", 10);
    b.display("prescribed_reps", 10);
    b.raw("overall_quality", quality);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PayloadShape;
    use serde_json::Value;

    fn setup(shape: PayloadShape) -> Setup {
        Setup {
            base: Url::parse("http://127.0.0.1:1/rehab/").unwrap(),
            namespace: "canary-".into(),
            payload: PayloadConfig {
                shape,
                ..PayloadConfig::default()
            },
            run: RunId(0x1234),
        }
    }

    fn probe(p: Projection, shape: PayloadShape) -> Probe {
        let lag = LagConfig::default();
        let cfg = lag.probes[p].clone();
        Probe::new(p, &cfg, &lag, &setup(shape)).unwrap()
    }

    #[test]
    fn probe_events_are_marked_synthetic_and_on_probe_patients() {
        for p in Projection::ALL {
            let probe = probe(p, PayloadShape::Envelope);
            let ev = probe.event(3).unwrap();
            assert_eq!(probe.prefix.parse(&ev.marker), Some(3));
            let v: Value = serde_json::from_slice(&ev.body).unwrap();
            assert_eq!(v["body"]["session_id"], ev.marker.as_str(), "{p:?}");
            assert_eq!(v["meta"]["synthetic"], true);
            assert_eq!(v["meta"]["correlation_id"], CORRELATION_ID);
            let subject = v["subject_id"].as_str().unwrap();
            assert!(subject.starts_with("canary-probe-"), "{subject}");
            // The marker occurs once in the event (a second copy is a duplicate).
            let text = std::str::from_utf8(&ev.body).unwrap();
            let expected = if p == Projection::WorkQueue { 2 } else { 1 };
            assert_eq!(text.matches(ev.marker.as_str()).count(), expected, "{text}");
            assert!(ev
                .read_url
                .as_str()
                .starts_with("http://127.0.0.1:1/rehab/api/v1/"));
        }
    }

    #[test]
    fn reads_and_rules_default_per_probe() {
        let s = probe(Projection::Stream, PayloadShape::Envelope);
        assert_eq!(
            s.fixed_read().unwrap().as_str(),
            "http://127.0.0.1:1/rehab/api/v1/patients/canary-probe-stream/stream?limit=50"
        );
        assert_eq!(
            (s.rule.kind, s.rule.pointer.as_str()),
            (RuleKind::Marker, "/events")
        );
        assert!(s.ordered());
        let q = probe(Projection::Quality, PayloadShape::Envelope);
        assert_eq!(q.rule.kind, RuleKind::Increment);
        let w = probe(Projection::WorkQueue, PayloadShape::Envelope);
        assert!(!w.ordered());
        assert_eq!(w.interval, Duration::from_secs(30));
        assert_eq!(
            w.fixed_read().unwrap().query(),
            Some("therapist_id=canary-probe-therapist-0000000000001234")
        );
        let ev = w.event(1).unwrap();
        let v: Value = serde_json::from_slice(&ev.body).unwrap();
        assert_eq!(v["subject_id"], ev.marker.as_str());
        assert_eq!(v["body"]["overall_quality"], 0.4);
        let cleanup = w.cleanup(&ev.marker);
        assert_eq!(cleanup.len(), 2);
        for c in cleanup {
            let v: Value = serde_json::from_slice(&c).unwrap();
            assert_eq!(v["subject_id"], ev.marker.as_str());
            assert_eq!(
                w.prefix.parse(v["body"]["session_id"].as_str().unwrap()),
                None
            );
        }
        assert!(s.cleanup("x").is_empty());
    }

    #[test]
    fn only_the_stream_is_audited_by_default() {
        let s = probe(Projection::Stream, PayloadShape::Envelope);
        assert!(s.audited() && s.audit_needs_version());
        assert_eq!(s.audit_version(), Some("/version"));
        assert_eq!(s.audit_url(7, None), None, "the route needs the version");
        let u = s.audit_url(7, Some(42)).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/rehab/api/v1/patients/canary-probe-stream/stream?start_version=41&limit=3"
        );
        for p in [
            Projection::Adherence,
            Projection::Quality,
            Projection::WorkQueue,
        ] {
            assert!(!probe(p, PayloadShape::Envelope).audited(), "{p:?}");
        }
        // Configured per probe; "" turns it off; only marker-rule probes.
        let mut lag = LagConfig::default();
        lag.probes[Projection::Adherence].audit_route = Some("api/v1/find/{marker}".into());
        lag.probes[Projection::Stream].audit_route = Some(String::new());
        let make = |lag: &LagConfig, p| {
            Probe::new(p, &lag.probes[p], lag, &setup(PayloadShape::Envelope)).unwrap()
        };
        let a = make(&lag, Projection::Adherence);
        assert!(a.audited() && !a.audit_needs_version());
        assert!(a
            .audit_url(3, None)
            .unwrap()
            .path()
            .ends_with(&a.prefix.marker(3)));
        assert!(!make(&lag, Projection::Stream).audited());
        lag.probes[Projection::Adherence].rule = Some(RuleKind::Value);
        assert!(!make(&lag, Projection::Adherence).audited());
    }

    #[test]
    fn flat_shape_is_honoured() {
        let p = probe(Projection::Adherence, PayloadShape::Flat);
        let ev = p.event(1).unwrap();
        let v: Value = serde_json::from_slice(&ev.body).unwrap();
        assert_eq!(v["patient_id"], "canary-probe-adherence");
        assert_eq!(v["event_type"], "exercise_session");
        assert_eq!(v["session_id"], ev.marker.as_str());
    }

    #[test]
    fn per_event_routes_resolve_the_marker() {
        let mut lag = LagConfig::default();
        lag.probes[Projection::Stream].route = Some("api/v1/find/{marker}".into());
        let p = Probe::new(
            Projection::Stream,
            &lag.probes[Projection::Stream],
            &lag,
            &setup(PayloadShape::Envelope),
        )
        .unwrap();
        assert!(p.fixed_read().is_none());
        let ev = p.event(9).unwrap();
        assert!(ev.read_url.path().ends_with(&ev.marker));
    }
}
