//! Traffic generation: the schedule (pure), the journeys (what to send), the
//! engine (one loop that sends on schedule and records), the connections
//! (fixed keep-alive connections to the target, one per worker).

pub mod connection;
pub mod engine;
pub mod gate;
pub mod journeys;
pub mod schedule;
