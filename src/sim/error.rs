//! The simulator's typed errors: configuration problems name the offending key.

use std::net::SocketAddr;

/// Everything that can stop the simulator from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is missing, malformed or out of range.
    #[error("invalid config key `{key}`: {message}")]
    Config { key: String, message: String },
    /// Every problem of a configuration, each naming its key.
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] crate::config::ConfigErrors),
    /// The configuration file could not be read or parsed at all.
    #[error("cannot load config {path}: {message}")]
    ConfigLoad { path: String, message: String },
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An I/O error while serving (signal handlers, socket address).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl crate::exit::ExitStatus for SimError {
    fn exit(&self) -> crate::exit::Exit {
        match self {
            SimError::Config { .. } | SimError::ConfigLoad { .. } | SimError::Invalid(_) => {
                crate::exit::Exit::Usage
            }
            _ => crate::exit::Exit::Failure,
        }
    }
}

impl SimError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        SimError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
