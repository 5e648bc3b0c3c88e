//! `rehab_canary_target_detail{field}`: numbers the service reports about
//! itself on its detail route (queue depth, processors, ...), polled by
//! `app/background.rs` and shown beside the lag they explain. The series
//! are the fields named in `target.detail_fields`, nothing else, so the
//! label stays bounded by the config.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{registered, series};

/// Why a poll of the detail route gave no number for a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailError {
    /// No 2xx answer (transport error, timeout, other status).
    Request,
    /// The body is not JSON.
    Invalid,
    /// A configured pointer found nothing, or not a number.
    Field,
}

impl DetailError {
    pub const ALL: [DetailError; 3] = [
        DetailError::Request,
        DetailError::Invalid,
        DetailError::Field,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DetailError::Request => "request",
            DetailError::Invalid => "invalid",
            DetailError::Field => "field",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabels {
    field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

pub type DetailGauge = Gauge<f64, AtomicU64>;

#[derive(Debug)]
pub struct TargetDetail {
    fields: Family<FieldLabels, DetailGauge>,
    errors: [Counter; DetailError::ALL.len()],
}

impl TargetDetail {
    pub fn register(registry: &mut Registry) -> Self {
        TargetDetail {
            fields: registered(
                registry,
                "rehab_canary_target_detail",
                "Numbers the target reports on its detail route (target.detail), one series per \
                 field named in target.detail_fields; NaN when the last poll could not read it",
                Family::default(),
            ),
            errors: series(
                registry,
                "rehab_canary_target_detail_errors",
                "Polls of the detail route that left fields unread, by reason (request, invalid, \
                 field)",
                DetailError::ALL.map(|e| ReasonLabels { reason: e.as_str() }),
            ),
        }
    }

    /// The gauge of `field` (created at NaN: nothing read yet).
    pub fn field(&self, name: &str) -> DetailGauge {
        let g = self.fields.get_or_create_owned(&FieldLabels {
            field: name.to_owned(),
        });
        g.set(f64::NAN);
        g
    }

    /// The last value read for `name`; `None` when the field is not
    /// configured or its last poll could not read it.
    pub fn value(&self, name: &str) -> Option<f64> {
        let g = self.fields.get(&FieldLabels {
            field: name.to_owned(),
        })?;
        Some(g.get()).filter(|v| !v.is_nan())
    }

    pub fn error(&self, e: DetailError) {
        self.errors[e as usize].inc();
    }

    pub fn errors(&self, e: DetailError) -> u64 {
        self.errors[e as usize].get()
    }
}
