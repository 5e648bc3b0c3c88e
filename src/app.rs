//! TODO(skeleton): app
