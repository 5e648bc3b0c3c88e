//! TODO(skeleton): telemetry
