//! Probe markers: the string every probe event carries so a read can be
//! searched for it, made of the namespace, the probe's stream id, a run id
//! and a sequence number (`canary-probe-stream-5f0c2a9e41d7b388-42`).
//!
//! The run id is drawn at random each time the probes start, so after a
//! restart the events of the previous run (still in the service's streams)
//! never match this run's prefix: they cannot pass for duplicates, and their
//! absence from this run's bookkeeping cannot pass for losses. The sequence
//! is the Xinfra Monitor idea: per stream, strictly increasing, so loss,
//! duplication and reordering are all visible from the numbers alone.

use std::fmt::Write as _;

/// Random per start of the probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub u64);

impl RunId {
    pub fn random() -> Self {
        RunId(rand::random::<u64>())
    }
}

/// The marker prefix of one probe stream in one run: `{ns}probe-{stream}-{run}-`.
/// Markers are the prefix plus a decimal sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerPrefix {
    prefix: String,
}

/// Longest decimal `u64`.
const MAX_SEQ_DIGITS: usize = 20;

impl MarkerPrefix {
    /// `namespace` is the validated subject prefix (`[A-Za-z0-9-_.]`), so the
    /// marker is a valid id for the service and needs no JSON escaping.
    pub fn new(namespace: &str, stream: &str, run: RunId) -> Self {
        let mut prefix = String::with_capacity(namespace.len() + stream.len() + 24);
        prefix.push_str(namespace);
        prefix.push_str("probe-");
        prefix.push_str(stream);
        let _ = write!(prefix, "-{:016x}-", run.0);
        MarkerPrefix { prefix }
    }

    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The marker of sequence number `seq`.
    pub fn marker(&self, seq: u64) -> String {
        let mut m = String::with_capacity(self.prefix.len() + MAX_SEQ_DIGITS);
        m.push_str(&self.prefix);
        let _ = write!(m, "{seq}");
        m
    }

    /// The sequence number of `s` if it is exactly one of this prefix's
    /// markers. Anything else (another run, another stream, a suffix such as
    /// `-r1`, a number too large) is `None`.
    pub fn parse(&self, s: &str) -> Option<u64> {
        let digits = s.strip_prefix(self.prefix.as_str())?;
        if digits.is_empty()
            || digits.len() > MAX_SEQ_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_reject_look_alikes() {
        let p = MarkerPrefix::new("canary-", "stream", RunId(0xabc));
        assert_eq!(p.as_str(), "canary-probe-stream-0000000000000abc-");
        let m = p.marker(42);
        assert_eq!(m, "canary-probe-stream-0000000000000abc-42");
        assert_eq!(p.parse(&m), Some(42));
        let other_run = MarkerPrefix::new("canary-", "stream", RunId(0xabd));
        let other_stream = MarkerPrefix::new("canary-", "adherence", RunId(0xabc));
        for (s, want) in [
            (other_run.marker(42), None),
            (other_stream.marker(42), None),
            (format!("{m}-r1"), None),
            (format!("{m}x"), None),
            (p.as_str().to_owned(), None),
            (format!("{}99999999999999999999999", p.as_str()), None),
            (format!("{}0", p.as_str()), Some(0)),
            (format!("x{m}"), None),
        ] {
            assert_eq!(p.parse(&s), want, "{s}");
        }
    }

    #[test]
    fn run_ids_differ_between_starts() {
        // Two draws colliding has probability 2^-64; a failure here means the
        // generator is broken, not bad luck.
        assert_ne!(RunId::random(), RunId::random());
    }
}
