//! `[traffic]`: the offered load (rate, ceiling, ramp, bursts), the journey
//! mix, the synthetic subjects and the payload shape.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::Errors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficConfig {
    /// Sustained rate of event POSTs. Reads come on top, following the mix.
    pub events_per_second: f64,
    /// Hard ceiling of the event rate that no burst, ramp or reload passes.
    pub max_events_per_second: f64,
    /// Requests allowed in flight at once; a scheduled request that finds the
    /// bound full is dropped and counted, never queued.
    pub max_in_flight: usize,
    /// Linear ramp from 0 to the rate after start; 0s starts at full rate.
    #[serde(with = "humantime_serde")]
    pub ramp_up: Duration,
    pub mix: MixConfig,
    pub burst: BurstConfig,
    pub journeys: JourneyConfig,
    pub payload: PayloadConfig,
    /// Sessions uploaded as one batch, as a device that syncs afterwards.
    pub batch: BatchConfig,
}

/// A share of patient sessions send their reps and completion as one
/// `POST /api/v1/events/batch` instead of one POST per rep. Every event of a
/// batch counts toward `events_per_second`: the ticks it stands for send
/// nothing, so the offered event rate stays exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchConfig {
    /// Share of new sessions that are batched, 0 to 1.
    pub share: f64,
    /// Events per batch (reps plus the completion), drawn uniformly.
    pub size: SizeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SizeRange {
    pub min: u32,
    pub max: u32,
}

impl Default for SizeRange {
    fn default() -> Self {
        SizeRange { min: 10, max: 100 }
    }
}

/// The most events one batch may hold (the service's limit).
pub const MAX_BATCH_SIZE: u32 = 1000;

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            share: 0.0,
            size: SizeRange::default(),
        }
    }
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            events_per_second: 50.0,
            max_events_per_second: 2000.0,
            max_in_flight: 256,
            ramp_up: Duration::ZERO,
            mix: MixConfig::default(),
            burst: BurstConfig::default(),
            journeys: JourneyConfig::default(),
            payload: PayloadConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}

/// Relative weights of the three user kinds, as in the service's own load test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MixConfig {
    pub patient: u32,
    pub therapist: u32,
    pub admin: u32,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            patient: 70,
            therapist: 20,
            admin: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BurstConfig {
    /// Bursts start at every multiple of this period of wall-clock time, so
    /// several instances (shards) burst together.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// 0s disables bursts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Rate during a burst, as a multiple of `events_per_second`.
    pub multiplier: f64,
    /// Sessions opened during a burst upload as batches (`[traffic.batch]`
    /// sizes): the seed's sensor-data spikes.
    pub as_batches: bool,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            every: Duration::from_secs(600),
            duration: Duration::from_secs(30),
            multiplier: 3.0,
            as_batches: false,
        }
    }
}

impl BurstConfig {
    pub fn enabled(&self) -> bool {
        !self.duration.is_zero() && !self.every.is_zero() && self.multiplier != 1.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JourneyConfig {
    /// Synthetic patients the sessions rotate over.
    pub patients: u32,
    /// Synthetic therapists; patient `n` belongs to therapist `n % therapists`.
    pub therapists: u32,
    /// Reserved namespace of every synthetic subject id.
    pub subject_prefix: String,
    /// Minimum spacing between two steps of one patient session.
    #[serde(with = "humantime_serde")]
    pub rep_interval: Duration,
    pub reps_min: u32,
    pub reps_max: u32,
    /// Range of simulated rep quality scores.
    pub quality_min: f64,
    pub quality_max: f64,
    /// Window of the therapist's quality read.
    pub quality_window: String,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        JourneyConfig {
            patients: 1000,
            therapists: 50,
            subject_prefix: "canary-".to_owned(),
            rep_interval: Duration::from_secs(1),
            reps_min: 10,
            reps_max: 15,
            quality_min: 0.60,
            quality_max: 0.95,
            quality_window: "14d".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadShape {
    /// `kind` / `subject_id` / `body` / `meta`, as in the service's quickstart.
    Envelope,
    /// `patient_id` / `event_type` with the fields at top level.
    Flat,
}

/// Field names of the event payload, so the canary fits the service's variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PayloadConfig {
    pub shape: PayloadShape,
    pub kind_field: String,
    pub subject_field: String,
    pub body_field: String,
    pub meta_field: String,
    pub patient_field: String,
    pub event_type_field: String,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        PayloadConfig {
            shape: PayloadShape::Envelope,
            kind_field: "kind".to_owned(),
            subject_field: "subject_id".to_owned(),
            body_field: "body".to_owned(),
            meta_field: "meta".to_owned(),
            patient_field: "patient_id".to_owned(),
            event_type_field: "event_type".to_owned(),
        }
    }
}

impl TrafficConfig {
    pub fn validate(&self, errs: &mut Errors) {
        let t = self;
        errs.check(
            (0.0..=1.0).contains(&t.batch.share),
            "traffic.batch.share",
            "must be between 0 and 1",
        );
        let sz = t.batch.size;
        errs.check(
            sz.min >= 2 && sz.min <= sz.max && sz.max <= MAX_BATCH_SIZE,
            "traffic.batch.size",
            &format!("must satisfy 2 <= min <= max <= {MAX_BATCH_SIZE}"),
        );
        errs.check(
            t.events_per_second.is_finite() && t.events_per_second >= 0.0,
            "traffic.events_per_second",
            "must be a number >= 0",
        );
        errs.check(
            t.events_per_second <= 1_000_000.0,
            "traffic.events_per_second",
            "must be at most 1000000",
        );
        errs.check(
            t.max_in_flight > 0,
            "traffic.max_in_flight",
            "must be greater than 0",
        );
        errs.check(
            t.mix.patient > 0,
            "traffic.mix.patient",
            "must be greater than 0: the event rate is carried by patient sessions",
        );
        errs.check(
            t.mix.patient as u64 + t.mix.therapist as u64 + t.mix.admin as u64 <= 1_000_000,
            "traffic.mix",
            "weights are too large",
        );
        if !t.burst.duration.is_zero() {
            errs.check(
                !t.burst.every.is_zero(),
                "traffic.burst.every",
                "must be greater than 0 when bursts are enabled",
            );
            errs.check(
                t.burst.duration < t.burst.every,
                "traffic.burst.duration",
                "must be shorter than traffic.burst.every",
            );
            errs.check(
                t.burst.multiplier.is_finite() && t.burst.multiplier >= 0.0,
                "traffic.burst.multiplier",
                "must be a number >= 0",
            );
        }
        let j = &t.journeys;
        errs.check(
            j.patients > 0,
            "traffic.journeys.patients",
            "must be greater than 0",
        );
        errs.check(
            j.therapists > 0,
            "traffic.journeys.therapists",
            "must be greater than 0",
        );
        errs.check(
            !j.subject_prefix.is_empty()
                && j.subject_prefix.len() <= 32
                && j.subject_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "traffic.journeys.subject_prefix",
            "must be 1-32 characters of [A-Za-z0-9-_.]",
        );
        errs.check(
            j.reps_min >= 1 && j.reps_min <= j.reps_max && j.reps_max <= 1000,
            "traffic.journeys.reps_min",
            "must satisfy 1 <= reps_min <= reps_max <= 1000",
        );
        errs.check(
            (0.0..=1.0).contains(&j.quality_min)
                && (0.0..=1.0).contains(&j.quality_max)
                && j.quality_min <= j.quality_max,
            "traffic.journeys.quality_min",
            "must satisfy 0 <= quality_min <= quality_max <= 1",
        );
        errs.check(
            matches!(j.quality_window.as_str(), "7d" | "14d" | "30d"),
            "traffic.journeys.quality_window",
            "must be 7d, 14d or 30d",
        );
        let p = &t.payload;
        for (key, value) in [
            ("traffic.payload.kind_field", &p.kind_field),
            ("traffic.payload.subject_field", &p.subject_field),
            ("traffic.payload.body_field", &p.body_field),
            ("traffic.payload.meta_field", &p.meta_field),
            ("traffic.payload.patient_field", &p.patient_field),
            ("traffic.payload.event_type_field", &p.event_type_field),
        ] {
            errs.check(!value.is_empty(), key, "must not be empty");
        }
        errs.check(
            t.max_events_per_second.is_finite() && t.max_events_per_second > 0.0,
            "traffic.max_events_per_second",
            "must be a number > 0",
        );
        errs.check(
            t.events_per_second <= t.max_events_per_second,
            "traffic.events_per_second",
            "must not exceed traffic.max_events_per_second (the hard ceiling)",
        );
    }
}
