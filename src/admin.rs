//! TODO(skeleton): admin
