//! Process signals (signal-hook) turned into lifecycle events: SIGTERM and
//! SIGINT ask for a graceful shutdown, SIGHUP for a config reload.

use futures_util::stream::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Shutdown,
    Reload,
}

/// Listens for the process signals the daemon acts on.
pub struct SignalEvents {
    signals: Signals,
}

impl SignalEvents {
    /// Registers the handlers. Call it before binding ports, so a SIGTERM
    /// during start-up is not lost.
    pub fn register() -> std::io::Result<Self> {
        Ok(SignalEvents {
            signals: Signals::new([SIGTERM, SIGINT, SIGHUP])?,
        })
    }

    /// The next event; `None` once the signal stream is closed.
    pub async fn next(&mut self) -> Option<Event> {
        let sig = self.signals.next().await?;
        Some(if sig == SIGHUP {
            Event::Reload
        } else {
            Event::Shutdown
        })
    }
}
