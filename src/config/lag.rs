//! The `[lag]` configuration section: probe schedule, poll spacing, timeout,
//! late watching, and each probe's switch and visibility rule. Types live here
//! so the probes own their settings; `config.rs` only embeds the section and
//! calls [`LagConfig::validate`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LagConfig {
    /// Each enabled probe posts one marked event this often (per probe).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A probe event not visible this long after its 201 counts as lost.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Probe runs (one event being watched, or one late-watch read) in
    /// flight at once; a tick that finds the bound full is skipped and
    /// counted, never queued.
    pub max_in_flight: usize,
    /// First poll this long after the POST is sent; each later gap is the
    /// previous one times `poll_backoff`, up to `poll_max`. Polls run on
    /// this schedule whatever the round trip: they overlap rather than wait
    /// for each other.
    #[serde(with = "humantime_serde")]
    pub poll_initial: Duration,
    pub poll_backoff: f64,
    #[serde(with = "humantime_serde")]
    pub poll_max: Duration,
    /// Polls of one probe in flight at once, all its events together; a
    /// poll due while the bound is full waits for a free slot (the bracket
    /// widens and the sample's uncertainty says so).
    pub poll_max_in_flight: usize,
    /// A lag sample whose uncertainty exceeds this share of its value is
    /// still recorded, and also counted in
    /// `rehab_canary_projection_lag_weak_samples_total`.
    pub weak_share: f64,
    /// Lost markers are still looked for this long after their timeout (at
    /// `late_poll_interval`), so an event that shows up late counts as late.
    /// "0s" disables late watching.
    #[serde(with = "humantime_serde")]
    pub late_window: Duration,
    #[serde(with = "humantime_serde")]
    pub late_poll_interval: Duration,
    /// The read-model integrity audit (`[lag.audit]`).
    pub audit: AuditConfig,
    pub probes: ProbesConfig,
}

/// `[lag.audit]`: every `interval`, each audited probe re-reads up to
/// `sample` of its own events confirmed visible between `min_age` and
/// `max_age` ago, through its `audit_route`, and counts the ones gone
/// (`vanished`) or now shown twice (`duplicated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub min_age: Duration,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Events re-read per probe per audit.
    pub sample: usize,
    /// Confirmed events remembered per probe; past it the oldest go first.
    pub max_remembered: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            interval: Duration::from_secs(300),
            min_age: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            sample: 20,
            max_remembered: 10_000,
        }
    }
}

/// Most events one audit re-reads per probe.
pub const MAX_AUDIT_SAMPLE: usize = 1000;
/// Most confirmed events remembered per probe.
pub const MAX_AUDIT_REMEMBERED: usize = 1_000_000;

impl Default for LagConfig {
    fn default() -> Self {
        LagConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            poll_initial: Duration::from_millis(5),
            poll_backoff: 1.1,
            poll_max: Duration::from_secs(1),
            poll_max_in_flight: 32,
            weak_share: 0.25,
            late_window: Duration::from_secs(300),
            late_poll_interval: Duration::from_secs(1),
            audit: AuditConfig::default(),
            probes: ProbesConfig::default(),
        }
    }
}

/// The read models the probes measure; the `projection` label values and
/// the keys of `[lag.probes.NAME]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    Stream,
    Adherence,
    Quality,
    WorkQueue,
}

impl Projection {
    pub const ALL: [Projection; 4] = [
        Projection::Stream,
        Projection::Adherence,
        Projection::Quality,
        Projection::WorkQueue,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Projection::Stream => "stream",
            Projection::Adherence => "adherence",
            Projection::Quality => "quality",
            Projection::WorkQueue => "work_queue",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// The probe set: one [`ProbeConfig`] per projection, written in the file as
/// a table keyed by projection (`[lag.probes.stream]`, ...); an unknown key
/// is an error naming `lag.probes`. Unset fields fall back to the probe's
/// built-in defaults in `lag/probe.rs`, so a table that sets one field keeps
/// the rest of that probe's defaults.
///
/// `[lag.probes.batch]` sits beside them: the batch probe is not a read
/// model of its own but a way of posting (see `lag/batch.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbesConfig {
    each: [ProbeConfig; 4],
    pub batch: BatchProbeConfig,
}

impl ProbesConfig {
    /// Every probe with its projection, in `Projection::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (Projection, &ProbeConfig)> {
        Projection::ALL.into_iter().zip(&self.each)
    }

    pub fn any_enabled(&self) -> bool {
        self.each.iter().any(|p| p.enabled) || self.batch.enabled
    }
}

impl std::ops::Index<Projection> for ProbesConfig {
    type Output = ProbeConfig;
    fn index(&self, p: Projection) -> &ProbeConfig {
        &self.each[p.index()]
    }
}

impl std::ops::IndexMut<Projection> for ProbesConfig {
    fn index_mut(&mut self, p: Projection) -> &mut ProbeConfig {
        &mut self.each[p.index()]
    }
}

impl Serialize for ProbesConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.each.len() + 1))?;
        for (p, c) in self.iter() {
            m.serialize_entry(p.as_str(), c)?;
        }
        m.serialize_entry(BATCH, &self.batch)?;
        m.end()
    }
}

/// The key of the batch probe's table.
const BATCH: &str = "batch";

/// The batch probe: every `interval` one marked batch of `size` events to
/// `POST /api/v1/events/batch`, on its own probe patient, watched on `route`
/// until every event of it is visible (Broadway batch latency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchProbeConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Events per probe batch.
    pub size: usize,
    /// The read to poll, relative to `target.base_url` (`{patient}` and
    /// `{therapist}` are substituted). It must show a whole batch: the
    /// default reads the probe patient's stream, 250 events deep.
    pub route: String,
    /// Where the read lists the events (a JSON pointer), each carrying its
    /// marker (`session_id`) as a string somewhere inside.
    pub pointer: String,
}

impl Default for BatchProbeConfig {
    fn default() -> Self {
        BatchProbeConfig {
            enabled: true,
            interval: Duration::from_secs(5),
            size: 20,
            route: "api/v1/patients/{patient}/stream?limit=250".to_owned(),
            pointer: "/events".to_owned(),
        }
    }
}

/// Most events in one probe batch: two batches must fit the default read.
pub const MAX_BATCH_PROBE_SIZE: usize = 100;

/// Keys are read as strings and an unknown one's value is skipped as
/// `IgnoredAny`, so the loader's unknown-key check names it by its path
/// (`lag.probes.streem`) and the other probes still load.
impl<'de> Deserialize<'de> for ProbesConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ProbesConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of probes keyed by projection")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = ProbesConfig::default();
                while let Some(name) = map.next_key::<String>()? {
                    match Projection::from_name(&name) {
                        Some(p) => out[p] = map.next_value()?,
                        None if name == BATCH => out.batch = map.next_value()?,
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// How a read shows that the probe event is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A string value under `pointer` equals the event's marker.
    Marker,
    /// The value at `pointer` equals `expect` (`{marker}` is substituted).
    Value,
    /// The number at `pointer` is at least one more than just before the POST.
    Increment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeConfig {
    pub enabled: bool,
    /// Overrides `lag.interval` for this probe (the work queue's built-in is
    /// `lag.interval` but at least 30s).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The read to poll, relative to `target.base_url`; `{patient}`,
    /// `{therapist}` and `{marker}` are substituted.
    pub route: Option<String>,
    pub rule: Option<RuleKind>,
    /// A JSON pointer (RFC 6901) into the read body; "" is the whole body.
    pub pointer: Option<String>,
    /// The expected value of the `value` rule.
    pub expect: Option<String>,
    /// Server-clock lag, where the service says when things happened.
    pub server_clock: ServerClockConfig,
    /// The integrity audit's read of one old event, relative to
    /// `target.base_url`: `{patient}`, `{therapist}`, `{marker}`,
    /// `{version}` (the event's version, read at `audit_version` from the
    /// element that showed it) and `{prev_version}` (one less) are
    /// substituted. Unset: the probe's built-in (the stream's is
    /// `start_version={prev_version}&limit=3`; the other read models list
    /// only recent items, so they have none). "" turns the audit off for
    /// this probe.
    pub audit_route: Option<String>,
    /// A JSON pointer into the element holding the marker, to the event's
    /// version (reference API: `/version`). Needed by `{version}` and
    /// `{prev_version}`; also lets an audit read tell an event removed
    /// from a read model from one past the service's retention.
    pub audit_version: Option<String>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            interval: None,
            route: None,
            rule: None,
            pointer: None,
            expect: None,
            server_clock: ServerClockConfig::default(),
            audit_route: None,
            audit_version: None,
        }
    }
}

/// JSON pointers to the service's own timestamps, both on its clock. Off
/// unless both are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerClockConfig {
    /// Into the probe POST's 201 body: when the event was committed (for
    /// the reference API, `/committed_at`).
    pub committed: Option<String>,
    /// When the read model applied the event: into the element holding the
    /// marker for the `marker` rule (reference API: `/projected_at`), into
    /// the whole read for the others.
    pub applied: Option<String>,
}

/// The placeholders a route may use.
pub const ROUTE_PLACEHOLDERS: [&str; 3] = ["{patient}", "{therapist}", "{marker}"];

/// The placeholders an audit route may use.
pub const AUDIT_PLACEHOLDERS: [&str; 5] = [
    "{patient}",
    "{therapist}",
    "{marker}",
    "{version}",
    "{prev_version}",
];

impl LagConfig {
    /// Every violation, each naming its key.
    pub fn validate(&self, errs: &mut Errors) {
        let ms = Duration::from_millis;
        let hour = Duration::from_secs(3600);
        errs.check(
            (ms(10)..=hour).contains(&self.interval),
            "lag.interval",
            "must be between 10ms and 1h",
        );
        errs.check(
            (ms(10)..=hour).contains(&self.timeout),
            "lag.timeout",
            "must be between 10ms and 1h",
        );
        errs.check(
            (1..=10_000).contains(&self.max_in_flight),
            "lag.max_in_flight",
            "must be between 1 and 10000",
        );
        errs.check(
            self.poll_initial >= ms(1) && self.poll_initial <= self.poll_max,
            "lag.poll_initial",
            "must be at least 1ms and at most lag.poll_max",
        );
        errs.check(
            self.poll_backoff.is_finite() && (1.0..=4.0).contains(&self.poll_backoff),
            "lag.poll_backoff",
            "must be a number between 1.0 and 4.0",
        );
        errs.check(self.poll_max <= hour, "lag.poll_max", "must be at most 1h");
        errs.check(
            (1..=256).contains(&self.poll_max_in_flight),
            "lag.poll_max_in_flight",
            "must be between 1 and 256",
        );
        errs.check(
            self.weak_share.is_finite() && self.weak_share > 0.0 && self.weak_share <= 10.0,
            "lag.weak_share",
            "must be a number above 0 and at most 10",
        );
        errs.check(
            self.late_window <= Duration::from_secs(24 * 3600),
            "lag.late_window",
            "must be at most 24h",
        );
        errs.check(
            self.late_poll_interval >= ms(10),
            "lag.late_poll_interval",
            "must be at least 10ms",
        );
        let a = &self.audit;
        errs.check(
            (ms(10)..=Duration::from_secs(24 * 3600)).contains(&a.interval),
            "lag.audit.interval",
            "must be between 10ms and 24h",
        );
        errs.check(
            a.min_age < a.max_age,
            "lag.audit.min_age",
            "must be less than lag.audit.max_age",
        );
        errs.check(
            a.max_age <= Duration::from_secs(30 * 24 * 3600),
            "lag.audit.max_age",
            "must be at most 30d",
        );
        errs.check(
            (1..=MAX_AUDIT_SAMPLE).contains(&a.sample),
            "lag.audit.sample",
            "must be between 1 and 1000",
        );
        errs.check(
            (1..=MAX_AUDIT_REMEMBERED).contains(&a.max_remembered),
            "lag.audit.max_remembered",
            "must be between 1 and 1000000",
        );
        let b = &self.probes.batch;
        errs.check(
            (ms(10)..=hour).contains(&b.interval),
            "lag.probes.batch.interval",
            "must be between 10ms and 1h",
        );
        errs.check(
            (2..=MAX_BATCH_PROBE_SIZE).contains(&b.size),
            "lag.probes.batch.size",
            "must be between 2 and 100",
        );
        if let Some(msg) = route_problem(&b.route) {
            errs.invalid("lag.probes.batch.route", msg);
        } else if b.route.contains("{marker}") {
            errs.invalid(
                "lag.probes.batch.route",
                "must not use {marker}: one read watches the whole batch",
            );
        }
        if !b.pointer.is_empty() && !b.pointer.starts_with('/') {
            errs.invalid(
                "lag.probes.batch.pointer",
                "must be empty or a JSON pointer starting with '/'",
            );
        }
        for (projection, p) in self.probes.iter() {
            let name = projection.as_str();
            let key = |field: &str| format!("lag.probes.{name}.{field}");
            if let Some(i) = p.interval {
                if !(ms(10)..=hour).contains(&i) {
                    errs.invalid(key("interval"), "must be between 10ms and 1h");
                }
            }
            if let Some(route) = &p.route {
                if let Some(msg) = route_problem(route) {
                    errs.invalid(key("route"), msg);
                }
            }
            if let Some(route) = p.audit_route.as_deref().filter(|r| !r.is_empty()) {
                if let Some(msg) = template_problem(route, &AUDIT_PLACEHOLDERS) {
                    errs.invalid(key("audit_route"), msg);
                } else if p.rule.unwrap_or(if projection == Projection::Quality {
                    RuleKind::Increment
                } else {
                    RuleKind::Marker
                }) != RuleKind::Marker
                {
                    errs.invalid(
                        key("audit_route"),
                        "needs rule = \"marker\": only marker-rule probes are audited",
                    );
                }
            }
            if p.audit_version
                .as_deref()
                .is_some_and(|v| !v.starts_with('/'))
            {
                errs.invalid(
                    key("audit_version"),
                    "must be a JSON pointer starting with '/'",
                );
            }
            if let Some(ptr) = &p.pointer {
                if !ptr.is_empty() && !ptr.starts_with('/') {
                    errs.invalid(
                        key("pointer"),
                        "must be empty or a JSON pointer starting with '/'",
                    );
                }
            }
            let sc = &p.server_clock;
            for (field, ptr) in [("committed", &sc.committed), ("applied", &sc.applied)] {
                if ptr.as_deref().is_some_and(|v| !v.starts_with('/')) {
                    errs.invalid(
                        key(&format!("server_clock.{field}")),
                        "must be a JSON pointer starting with '/'",
                    );
                }
            }
            match (&sc.committed, &sc.applied) {
                (Some(_), None) => errs.invalid(
                    key("server_clock.applied"),
                    "is required with server_clock.committed",
                ),
                (None, Some(_)) => errs.invalid(
                    key("server_clock.committed"),
                    "is required with server_clock.applied",
                ),
                _ => {}
            }
            match p.rule {
                Some(RuleKind::Value) if p.expect.as_deref().is_none_or(str::is_empty) => {
                    errs.invalid(key("expect"), "is required by rule = \"value\"")
                }
                Some(RuleKind::Increment) if p.pointer.as_deref().is_some_and(str::is_empty) => {
                    errs.invalid(
                        key("pointer"),
                        "must point at a number for rule = \"increment\"",
                    )
                }
                _ => {}
            }
        }
    }
}

/// Why a route template is unusable, if it is.
fn route_problem(route: &str) -> Option<&'static str> {
    template_problem(route, &ROUTE_PLACEHOLDERS)
}

/// Why a route template using `known` placeholders is unusable, if it is.
pub fn template_problem(route: &str, known: &[&str]) -> Option<&'static str> {
    if route.is_empty() || route.contains("://") || route.starts_with('/') {
        return Some("must be a path relative to target.base_url, like api/v1/...");
    }
    if route.chars().any(char::is_whitespace) {
        return Some("must not contain whitespace");
    }
    // Every `{...}` must be a known placeholder.
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        let Some(close) = tail.find('}') else {
            return Some("has an unclosed '{'");
        };
        if !known.contains(&&tail[..=close]) {
            return Some(if known.len() == ROUTE_PLACEHOLDERS.len() {
                "placeholders are {patient}, {therapist} and {marker}"
            } else {
                "placeholders are {patient}, {therapist}, {marker}, {version} and {prev_version}"
            });
        }
        rest = &tail[close + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cfg: &LagConfig) -> Vec<String> {
        Errors::collect(|e| cfg.validate(e))
            .iter()
            .map(|e| e.key().unwrap_or("-").to_owned())
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Errors::collect(|e| LagConfig::default().validate(e)).is_empty());
    }

    #[test]
    fn errors_name_their_key() {
        type Tweak = fn(&mut LagConfig);
        let cases: &[(Tweak, &str)] = &[
            (|c| c.interval = Duration::ZERO, "lag.interval"),
            (|c| c.timeout = Duration::ZERO, "lag.timeout"),
            (|c| c.max_in_flight = 0, "lag.max_in_flight"),
            (
                |c| c.poll_initial = Duration::from_secs(2),
                "lag.poll_initial",
            ),
            (|c| c.poll_backoff = 0.5, "lag.poll_backoff"),
            (|c| c.poll_backoff = f64::NAN, "lag.poll_backoff"),
            (
                |c| c.late_poll_interval = Duration::ZERO,
                "lag.late_poll_interval",
            ),
            (
                |c| c.probes[Projection::WorkQueue].interval = Some(Duration::ZERO),
                "lag.probes.work_queue.interval",
            ),
            (
                |c| c.probes[Projection::Stream].route = Some("/abs/path".into()),
                "lag.probes.stream.route",
            ),
            (
                |c| c.probes[Projection::Stream].route = Some("api/{nope}".into()),
                "lag.probes.stream.route",
            ),
            (
                |c| c.probes[Projection::Stream].route = Some("api/{patient".into()),
                "lag.probes.stream.route",
            ),
            (
                |c| c.probes[Projection::Quality].pointer = Some("sessions".into()),
                "lag.probes.quality.pointer",
            ),
            (
                |c| c.probes[Projection::Adherence].rule = Some(RuleKind::Value),
                "lag.probes.adherence.expect",
            ),
            (|c| c.poll_max_in_flight = 0, "lag.poll_max_in_flight"),
            (|c| c.probes.batch.size = 1, "lag.probes.batch.size"),
            (|c| c.probes.batch.size = 101, "lag.probes.batch.size"),
            (
                |c| c.probes.batch.interval = Duration::ZERO,
                "lag.probes.batch.interval",
            ),
            (
                |c| c.probes.batch.route = "x/{marker}".into(),
                "lag.probes.batch.route",
            ),
            (
                |c| c.probes.batch.pointer = "events".into(),
                "lag.probes.batch.pointer",
            ),
            (|c| c.weak_share = 0.0, "lag.weak_share"),
            (|c| c.audit.interval = Duration::ZERO, "lag.audit.interval"),
            (
                |c| c.audit.min_age = Duration::from_secs(48 * 3600),
                "lag.audit.min_age",
            ),
            (
                |c| c.audit.max_age = Duration::from_secs(90 * 24 * 3600),
                "lag.audit.max_age",
            ),
            (|c| c.audit.sample = 0, "lag.audit.sample"),
            (|c| c.audit.max_remembered = 0, "lag.audit.max_remembered"),
            (
                |c| c.probes[Projection::Stream].audit_route = Some("x/{nope}".into()),
                "lag.probes.stream.audit_route",
            ),
            (
                |c| {
                    c.probes[Projection::Stream].audit_route = Some("x/{version}".into());
                    c.probes[Projection::Stream].rule = Some(RuleKind::Value);
                },
                "lag.probes.stream.audit_route",
            ),
            (
                |c| c.probes[Projection::Quality].audit_route = Some("x/{marker}".into()),
                "lag.probes.quality.audit_route",
            ),
            (
                |c| c.probes[Projection::Stream].audit_version = Some("version".into()),
                "lag.probes.stream.audit_version",
            ),
            (|c| c.weak_share = f64::INFINITY, "lag.weak_share"),
            (
                |c| c.probes[Projection::Stream].server_clock.committed = Some("/c".into()),
                "lag.probes.stream.server_clock.applied",
            ),
            (
                |c| c.probes[Projection::Quality].server_clock.applied = Some("/a".into()),
                "lag.probes.quality.server_clock.committed",
            ),
            (
                |c| {
                    c.probes[Projection::Stream].server_clock = ServerClockConfig {
                        committed: Some("committed_at".into()),
                        applied: Some("/a".into()),
                    }
                },
                "lag.probes.stream.server_clock.committed",
            ),
        ];
        for (tweak, key) in cases {
            let mut c = LagConfig::default();
            tweak(&mut c);
            assert!(keys(&c).iter().any(|k| k == key), "{key}: {:?}", keys(&c));
        }
    }

    #[test]
    fn good_routes_pass() {
        for r in [
            "api/v1/patients/{patient}/stream?limit=50",
            "api/v1/projections/work-queue?therapist_id={therapist}",
            "x/{marker}",
        ] {
            assert_eq!(route_problem(r), None, "{r}");
        }
    }
}
