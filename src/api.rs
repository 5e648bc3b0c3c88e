//! The Rehab API vocabulary shared by the client, the traffic engine, the
//! metrics and the simulator: route names and event kinds.
//!
//! Route *names* (never URLs or ids) are what metric labels carry, so every
//! label value used anywhere comes from the closed sets below.

/// A named route of the Rehab API, as used in the `endpoint` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    EventsCreate,
    EventsBatch,
    PatientStream,
    PatientEvents,
    Adherence,
    Quality,
    WorkQueue,
    PatientSummary,
    Alerts,
    Health,
    AuthLogin,
    AuthRefresh,
    PatientRegister,
}

impl Endpoint {
    pub const ALL: [Endpoint; 13] = [
        Endpoint::EventsCreate,
        Endpoint::EventsBatch,
        Endpoint::PatientStream,
        Endpoint::PatientEvents,
        Endpoint::Adherence,
        Endpoint::Quality,
        Endpoint::WorkQueue,
        Endpoint::PatientSummary,
        Endpoint::Alerts,
        Endpoint::Health,
        Endpoint::AuthLogin,
        Endpoint::AuthRefresh,
        Endpoint::PatientRegister,
    ];

    /// The stable label value; dashboards and alerts depend on these strings.
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::EventsCreate => "events_create",
            Endpoint::EventsBatch => "events_batch",
            Endpoint::PatientStream => "patient_stream",
            Endpoint::PatientEvents => "patient_events",
            Endpoint::Adherence => "adherence",
            Endpoint::Quality => "quality",
            Endpoint::WorkQueue => "work_queue",
            Endpoint::PatientSummary => "patient_summary",
            Endpoint::Alerts => "alerts",
            Endpoint::Health => "health",
            Endpoint::AuthLogin => "auth_login",
            Endpoint::AuthRefresh => "auth_refresh",
            Endpoint::PatientRegister => "patient_register",
        }
    }

    /// Index into per-endpoint arrays, so the hot path needs no map lookup.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The status a healthy target answers with.
    pub const fn success_status(self) -> u16 {
        match self {
            Endpoint::EventsCreate | Endpoint::EventsBatch | Endpoint::PatientRegister => 201,
            _ => 200,
        }
    }
}

/// Event kinds of the contract, as used in the `kind` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ExerciseSession,
    RepObservation,
    Feedback,
    Alert,
    Consent,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::ExerciseSession,
        EventKind::RepObservation,
        EventKind::Feedback,
        EventKind::Alert,
        EventKind::Consent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ExerciseSession => "exercise_session",
            EventKind::RepObservation => "rep_observation",
            EventKind::Feedback => "feedback",
            EventKind::Alert => "alert",
            EventKind::Consent => "consent",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The development token the reference API accepts when no token is configured.
pub const DEV_TOKEN: &str = "dev-token";

/// Buckets of `rehab_canary_request_duration_seconds`. They contain every SLO
/// threshold (0.1, 0.2, 0.5, 1, ...) exactly, so SLO rules need no interpolation.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_positions() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
    }
}
