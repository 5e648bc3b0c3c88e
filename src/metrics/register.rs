//! Registration shorthands: the registry keeps one clone of a metric, the
//! caller keeps the handle it records on.

use std::hash::Hash;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Metric, Registry};

/// Registers `metric` and hands it back for recording.
pub(crate) fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A family whose series, one per label set, exist from the start (exported at
/// zero before the first event) and are resolved once, so recording never
/// hashes labels.
pub(crate) fn series<L, M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: [L; N],
) -> [M; N]
where
    L: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    M: EncodeMetric + TypedMetric + Default + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let family = registered(registry, name, help, Family::<L, M>::default());
    labels.map(|l| family.get_or_create_owned(&l))
}
