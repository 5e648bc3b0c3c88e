//! Traffic generation: schedule, journeys, workers.
