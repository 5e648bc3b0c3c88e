//! Metrics: every metric name and help text in one place.
