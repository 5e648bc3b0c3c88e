//! Exit statuses. Every error a command can end with says its own status
//! ([`ExitStatus`]), next to its definition; `main.rs` only prints the error
//! and exits with what it says.

use std::process::ExitCode;

/// The statuses the commands exit with (sysexits.h names where they apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// A runtime failure, an unhealthy daemon, or a failed verdict.
    Failure = 1,
    /// A verdict that needs a human: marginal or inconclusive.
    Undecided = 2,
    /// `EX_USAGE`: bad usage or configuration; retrying will not help.
    Usage = 64,
    /// `EX_SOFTWARE`: a one-shot run could not be carried out (no verdict).
    Software = 70,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error that knows how the process should exit when a command ends
/// with it.
pub trait ExitStatus: std::fmt::Display {
    fn exit(&self) -> Exit;
}
