//! Read models of one patient, folded incrementally from applied events in
//! stream order: adherence, quality by day, and the alert rules.
//!
//! Everything here is bounded (recent sessions, day buckets, alerts) so a
//! patient costs a few KiB however long the run.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{json, Value};

use super::clock;
use super::config::RulesConfig;
use super::envelope::{format_ts_ms, Domain};
use crate::api::EventKind;

const MAX_SESSIONS: usize = 50;
const MAX_DAYS: usize = 32;
const MAX_ALERTS: usize = 16;
const MS_PER_DAY: i64 = 86_400_000;

/// Alert types the rules raise.
pub const QUALITY_DEGRADATION: &str = "quality_degradation";
pub const MISSED_SESSIONS: &str = "missed_sessions";

#[derive(Clone, Debug)]
struct SessionRec {
    session_id: Option<Box<str>>,
    prescribed_reps: Option<u32>,
    completed_reps: Option<u32>,
    completion_status: Option<Box<str>>,
    quality: Option<f64>,
    started_ms: Option<i64>,
    completed_ms: Option<i64>,
    /// When the newest event of the session became visible here.
    projected: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
struct DayBucket {
    day: i64,
    session_sum: f64,
    session_n: u32,
    rep_sum: f64,
    rep_n: u32,
}

/// An open alert of one patient.
#[derive(Clone, Debug)]
pub struct Alert {
    pub alert_id: String,
    pub alert_type: Box<str>,
    pub priority: Box<str>,
    pub created_ms: i64,
    /// When the event that raised it became visible.
    pub projected: Option<Instant>,
    pub details: Value,
}

impl Alert {
    pub fn to_json(&self, patient_id: &str, therapist_id: Option<&str>) -> Value {
        json!({
            "alert_id": self.alert_id,
            "alert_type": &*self.alert_type,
            "priority": &*self.priority,
            "status": "open",
            "patient_id": patient_id,
            "therapist_id": therapist_id,
            "created_at": format_ts_ms(self.created_ms),
            "projected_at": self.projected.map(clock::rfc3339_us),
            "details": self.details,
        })
    }
}

/// Sort key: most urgent first.
pub fn priority_rank(p: &str) -> u8 {
    match p {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

/// Incrementally maintained read models of one patient.
#[derive(Debug, Default)]
pub struct Aggregates {
    sessions: VecDeque<SessionRec>,
    sessions_seen: u64,
    sessions_completed: u64,
    prescribed_reps_total: u64,
    completed_reps_total: u64,
    reps_observed: u64,
    by_kind: [u64; 5],
    days: VecDeque<DayBucket>,
    last_session_day: Option<i64>,
    latest_ms: Option<i64>,
    alerts: Vec<Alert>,
    alert_seq: u64,
    /// A quality sample arrived since the quality rule last ran.
    quality_dirty: bool,
    /// When the event being folded (then the last one folded) became
    /// visible: the read models' `projected_at`, on the service clock.
    projected: Option<Instant>,
}

impl Aggregates {
    /// Sets the visibility instant of the event about to be folded.
    pub fn projecting(&mut self, visible_at: Instant) {
        self.projected = Some(visible_at);
    }

    /// Folds one visible event in.
    pub fn fold(&mut self, patient_id: &str, kind: EventKind, d: &Domain, rules: &RulesConfig) {
        self.by_kind[kind.index()] += 1;
        self.latest_ms = Some(self.latest_ms.map_or(d.ts_ms, |l| l.max(d.ts_ms)));
        match kind {
            EventKind::ExerciseSession => self.fold_session(patient_id, d, rules),
            EventKind::RepObservation => {
                self.reps_observed += 1;
                if let Some(q) = d.quality {
                    if let Some(b) = self.day_mut(d.ts_ms) {
                        b.rep_sum += q;
                        b.rep_n += 1;
                    }
                    self.quality_dirty = true;
                }
            }
            EventKind::Alert => {
                if let Some((t, p)) = &d.alert {
                    self.raise(patient_id, t, p, d.ts_ms, json!({"source": "event"}));
                }
            }
            EventKind::Feedback | EventKind::Consent => {}
        }
    }

    fn fold_session(&mut self, patient_id: &str, d: &Domain, rules: &RulesConfig) {
        let day = d.ts_ms.div_euclid(MS_PER_DAY);
        if let Some(last) = self.last_session_day {
            let missed = day - last - 1;
            if missed >= i64::from(rules.missed_session_days) {
                self.raise(
                    patient_id,
                    MISSED_SESSIONS,
                    "medium",
                    d.ts_ms,
                    json!({"missed_days": missed}),
                );
            }
        }
        self.last_session_day = Some(self.last_session_day.map_or(day, |l| l.max(day)));

        let existing = d.session_id.as_ref().and_then(|sid| {
            self.sessions
                .iter()
                .rposition(|s| s.session_id.as_deref() == Some(&**sid))
        });
        let idx = match existing {
            Some(i) => i,
            None => {
                self.sessions_seen += 1;
                if self.sessions.len() == MAX_SESSIONS {
                    self.sessions.pop_front();
                }
                self.sessions.push_back(SessionRec {
                    session_id: d.session_id.clone(),
                    prescribed_reps: None,
                    completed_reps: None,
                    completion_status: None,
                    quality: None,
                    started_ms: None,
                    completed_ms: None,
                    projected: None,
                });
                self.sessions.len() - 1
            }
        };
        let Some(rec) = self.sessions.get_mut(idx) else {
            return;
        };
        rec.projected = self.projected;
        if let Some(p) = d.prescribed_reps {
            if rec.prescribed_reps.is_none() {
                self.prescribed_reps_total += u64::from(p);
            }
            rec.prescribed_reps = Some(p);
        }
        if !d.is_completion {
            rec.started_ms.get_or_insert(d.ts_ms);
            return;
        }
        if rec.completed_ms.is_none() {
            self.sessions_completed += 1;
        }
        rec.completed_ms = Some(d.ts_ms);
        if let Some(c) = d.completed_reps {
            self.completed_reps_total += u64::from(c);
            self.completed_reps_total -= u64::from(rec.completed_reps.unwrap_or(0));
            rec.completed_reps = Some(c);
        }
        if d.completion_status.is_some() {
            rec.completion_status = d.completion_status.clone();
        }
        if let Some(q) = d.quality {
            rec.quality = Some(q);
            if let Some(b) = self.day_mut(d.ts_ms) {
                b.session_sum += q;
                b.session_n += 1;
            }
            self.quality_dirty = true;
        }
    }

    /// Runs the quality rule if a sample arrived; called once after a fold
    /// run so a batch of samples is judged as a whole.
    pub fn evaluate_rules(&mut self, patient_id: &str, rules: &RulesConfig) {
        if !std::mem::take(&mut self.quality_dirty) {
            return;
        }
        let w = self.quality_window(rules.quality_window_days);
        let Some(avg) = w.average else {
            return;
        };
        let open = self
            .alerts
            .iter()
            .position(|a| &*a.alert_type == QUALITY_DEGRADATION);
        match (avg < rules.quality_threshold, open) {
            (true, None) => {
                let at = self.latest_ms.unwrap_or(0);
                self.raise(
                    patient_id,
                    QUALITY_DEGRADATION,
                    "high",
                    at,
                    json!({
                        "average_quality": round3(avg),
                        "threshold": rules.quality_threshold,
                        "window_days": rules.quality_window_days,
                    }),
                );
            }
            (true, Some(i)) => {
                if let Some(a) = self.alerts.get_mut(i) {
                    a.details["average_quality"] = json!(round3(avg));
                }
            }
            // Quality recovered: the alert resolves and leaves the work queue.
            (false, Some(i)) => {
                self.alerts.remove(i);
            }
            (false, None) => {}
        }
    }

    fn raise(&mut self, patient_id: &str, t: &str, priority: &str, at_ms: i64, details: Value) {
        self.alert_seq += 1;
        if self.alerts.len() == MAX_ALERTS {
            self.alerts.remove(0);
        }
        self.alerts.push(Alert {
            alert_id: format!("alert_{patient_id}_{}", self.alert_seq),
            alert_type: t.into(),
            priority: priority.into(),
            created_ms: at_ms,
            projected: self.projected,
            details,
        });
    }

    /// The bucket of the day of `ts_ms`, kept sorted; `None` when the day is
    /// older than every bucket we keep.
    fn day_mut(&mut self, ts_ms: i64) -> Option<&mut DayBucket> {
        let day = ts_ms.div_euclid(MS_PER_DAY);
        let pos = self.days.partition_point(|b| b.day < day);
        if self.days.get(pos).is_none_or(|b| b.day != day) {
            if self.days.len() == MAX_DAYS {
                if pos == 0 {
                    return None;
                }
                self.days.pop_front();
                self.days.insert(
                    pos - 1,
                    DayBucket {
                        day,
                        ..DayBucket::default()
                    },
                );
                return self.days.get_mut(pos - 1);
            }
            self.days.insert(
                pos,
                DayBucket {
                    day,
                    ..DayBucket::default()
                },
            );
        }
        self.days.get_mut(pos)
    }

    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    pub fn latest_ms(&self) -> Option<i64> {
        self.latest_ms
    }

    /// Quality over the `days` calendar days ending at the patient's most
    /// recent quality sample (so replayed historical data works as well as
    /// live data).
    pub fn quality_window(&self, days: u32) -> QualityWindow {
        let Some(end) = self.days.back().map(|b| b.day) else {
            return QualityWindow::default();
        };
        let days = i64::from(days.max(1));
        let start = end - days + 1;
        let mid = start + days / 2;
        let mut all = Acc::default();
        let mut first = Acc::default();
        let mut second = Acc::default();
        for b in self.days.iter().filter(|b| b.day >= start) {
            all.add(b);
            if b.day < mid {
                first.add(b);
            } else {
                second.add(b);
            }
        }
        let trend = match (first.average(), second.average()) {
            (Some(a), Some(b)) if b - a > 0.05 => "improving",
            (Some(a), Some(b)) if a - b > 0.05 => "declining",
            (Some(_), Some(_)) => "stable",
            _ => "insufficient_data",
        };
        QualityWindow {
            average: all.average(),
            session_average: all.session_avg(),
            rep_average: all.rep_avg(),
            sessions: all.session_n,
            reps: all.rep_n,
            trend,
            start_ms: Some(start * MS_PER_DAY),
            end_ms: Some((end + 1) * MS_PER_DAY),
        }
    }

    pub fn adherence_json(&self, patient_id: &str) -> Value {
        let recent: Vec<Value> = self
            .sessions
            .iter()
            .rev()
            .take(20)
            .map(|s| {
                json!({
                    "session_id": s.session_id.as_deref(),
                    "prescribed_reps": s.prescribed_reps,
                    "completed_reps": s.completed_reps,
                    "completion_status": s.completion_status.as_deref(),
                    "completed": s.completed_ms.is_some(),
                    "overall_quality": s.quality,
                    "rep_adherence": ratio(s.completed_reps.map(u64::from), s.prescribed_reps.map(u64::from)),
                    "started_at": s.started_ms.map(format_ts_ms),
                    "completed_at": s.completed_ms.map(format_ts_ms),
                    "projected_at": s.projected.map(clock::rfc3339_us),
                })
            })
            .collect();
        json!({
            "patient_id": patient_id,
            "sessions_prescribed": self.sessions_seen,
            "sessions_completed": self.sessions_completed,
            "session_completion_rate": ratio(Some(self.sessions_completed), Some(self.sessions_seen)),
            "prescribed_reps": self.prescribed_reps_total,
            "completed_reps": self.completed_reps_total,
            "rep_adherence": ratio(Some(self.completed_reps_total), Some(self.prescribed_reps_total)),
            "last_session": recent.first(),
            "recent_sessions": recent,
        })
    }

    pub fn quality_json(&self, patient_id: &str, window_days: u32) -> Value {
        let w = self.quality_window(window_days);
        json!({
            "patient_id": patient_id,
            "window": format!("{window_days}d"),
            "average_quality": w.average.map(round3),
            "session_quality": w.session_average.map(round3),
            "rep_quality": w.rep_average.map(round3),
            "sessions": w.sessions,
            "reps": w.reps,
            "trend": w.trend,
            "window_start": w.start_ms.map(format_ts_ms),
            "window_end": w.end_ms.map(format_ts_ms),
            "projected_at": self.projected.map(clock::rfc3339_us),
        })
    }

    pub fn counts_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for k in EventKind::ALL {
            m.insert(k.as_str().into(), json!(self.by_kind[k.index()]));
        }
        json!({
            "by_kind": m,
            "sessions_prescribed": self.sessions_seen,
            "sessions_completed": self.sessions_completed,
            "reps_observed": self.reps_observed,
        })
    }
}

/// The quality of one window.
#[derive(Debug, Default)]
pub struct QualityWindow {
    pub average: Option<f64>,
    pub session_average: Option<f64>,
    pub rep_average: Option<f64>,
    pub sessions: u32,
    pub reps: u32,
    pub trend: &'static str,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

#[derive(Default)]
struct Acc {
    session_sum: f64,
    session_n: u32,
    rep_sum: f64,
    rep_n: u32,
}

impl Acc {
    fn add(&mut self, b: &DayBucket) {
        self.session_sum += b.session_sum;
        self.session_n += b.session_n;
        self.rep_sum += b.rep_sum;
        self.rep_n += b.rep_n;
    }
    fn session_avg(&self) -> Option<f64> {
        (self.session_n > 0).then(|| self.session_sum / f64::from(self.session_n))
    }
    fn rep_avg(&self) -> Option<f64> {
        (self.rep_n > 0).then(|| self.rep_sum / f64::from(self.rep_n))
    }
    /// Session `overall_quality` when there is any, else rep quality.
    fn average(&self) -> Option<f64> {
        self.session_avg().or(self.rep_avg())
    }
}

fn ratio(num: Option<u64>, den: Option<u64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0 => Some(round3(n as f64 / d as f64)),
        _ => None,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::envelope::parse_ts_ms;

    /// Folds a session event of patient `p` under the default rules.
    fn fold(a: &mut Aggregates, sid: &str, ts: &str, completion: bool, reps: u32, q: Option<f64>) {
        let d = session(sid, ts, completion, reps, q);
        a.fold("p", EventKind::ExerciseSession, &d, &RulesConfig::default());
    }

    fn session(sid: &str, ts: &str, completion: bool, reps: u32, q: Option<f64>) -> Domain {
        Domain {
            ts_ms: parse_ts_ms(ts).unwrap(),
            session_id: Some(sid.into()),
            prescribed_reps: (!completion).then_some(15),
            completed_reps: completion.then_some(reps),
            completion_status: completion.then(|| "completed".into()),
            is_completion: completion,
            quality: q,
            alert: None,
        }
    }

    #[test]
    fn twelve_of_fifteen_shows_in_adherence() {
        let mut a = Aggregates::default();
        fold(&mut a, "s1", "2025-09-08T10:00:00Z", false, 0, None);
        fold(&mut a, "s1", "2025-09-08T10:30:00Z", true, 12, Some(0.8));
        let j = a.adherence_json("p");
        assert_eq!(j["sessions_completed"], 1);
        assert_eq!(j["prescribed_reps"], 15);
        assert_eq!(j["completed_reps"], 12);
        assert_eq!(j["rep_adherence"], 0.8);
        assert_eq!(j["last_session"]["completed_reps"], 12);
        assert_eq!(j["last_session"]["prescribed_reps"], 15);
    }

    #[test]
    fn low_quality_raises_and_recovery_resolves() {
        let rules = RulesConfig::default();
        let mut a = Aggregates::default();
        for i in 0..14 {
            let ts = format!("2025-09-{:02}T10:00:00Z", 1 + i / 2);
            fold(&mut a, &format!("s{i}"), &ts, true, 15, Some(0.65));
        }
        a.evaluate_rules("p", &rules);
        assert_eq!(a.alerts().len(), 1);
        assert_eq!(&*a.alerts()[0].alert_type, QUALITY_DEGRADATION);
        assert_eq!(&*a.alerts()[0].priority, "high");
        for i in 0..30 {
            fold(
                &mut a,
                &format!("r{i}"),
                "2025-09-07T12:00:00Z",
                true,
                15,
                Some(0.95),
            );
        }
        a.evaluate_rules("p", &rules);
        assert!(a.alerts().is_empty());
    }

    #[test]
    fn missed_days_raise_missed_sessions() {
        let mut a = Aggregates::default();
        fold(&mut a, "s1", "2025-09-01T10:00:00Z", false, 0, None);
        fold(&mut a, "s2", "2025-09-02T10:00:00Z", false, 0, None);
        assert!(a.alerts().is_empty());
        fold(&mut a, "s3", "2025-09-05T10:00:00Z", false, 0, None);
        assert_eq!(&*a.alerts()[0].alert_type, MISSED_SESSIONS);
    }

    #[test]
    fn day_buckets_stay_bounded_and_sorted() {
        let mut a = Aggregates::default();
        for d in (0..100).rev() {
            a.day_mut(d * MS_PER_DAY);
        }
        for d in 0..100 {
            a.day_mut(d * MS_PER_DAY);
        }
        assert!(a.days.len() <= MAX_DAYS);
        assert!(a
            .days
            .iter()
            .zip(a.days.iter().skip(1))
            .all(|(x, y)| x.day < y.day));
    }
}
