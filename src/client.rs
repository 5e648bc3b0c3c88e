//! TODO(skeleton): client
