//! The contract of a `/status` section: a part of the daemon (the lag
//! probes, for instance) adds its own section to `/status` and the landing
//! page without the admin server knowing it, and without depending on it.

/// A section of `/status` and of the landing page.
pub trait StatusSection: Send + Sync + 'static {
    /// The key of the section in the `/status` JSON `extras` object.
    fn key(&self) -> &'static str;
    /// The section's current value. Must not contain secrets.
    fn value(&self) -> serde_json::Value;
    /// The section as an HTML fragment for the landing page, every inserted
    /// value escaped (see [`crate::html::escape`]); `None` shows the JSON
    /// value.
    fn html(&self) -> Option<String> {
        None
    }
}
