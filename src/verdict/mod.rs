//! The deploy verdict (issue 17): did the window after a deploy get worse than
//! the baseline window before it? `stats` is the pure statistics core.

pub mod stats;
