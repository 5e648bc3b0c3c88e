//! Traffic generation: the schedule (pure), the journeys (what to send), the
//! engine (one loop that sends on schedule and records).

pub mod engine;
pub mod gate;
pub mod journeys;
pub mod schedule;
