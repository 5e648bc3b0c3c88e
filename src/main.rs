//! Command-line entry point; all work happens in the library.
fn main() {}
