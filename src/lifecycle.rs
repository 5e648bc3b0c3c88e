//! Process signals (signal-hook) turned into lifecycle events: SIGTERM and
//! SIGINT ask for a graceful shutdown, SIGHUP for a config reload; and the
//! daemon's shutdown tokens and task tracker ([`Lifecycle`]).

use futures_util::stream::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Two phases of shutdown, two tokens: `drain` stops the traffic engine and
/// the lag probes starting anything new; `stop`, once the drain is over,
/// ends the admin server and every background task, which `tasks` tracks.
#[derive(Default)]
pub struct Lifecycle {
    pub drain: CancellationToken,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
}

pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Lifecycle {
    /// Runs `task` until the stop.
    pub fn background(&self, task: Task) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            stop.run_until_cancelled(task).await;
        });
    }

    /// Stops the background tasks and the admin server, and waits for them.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
