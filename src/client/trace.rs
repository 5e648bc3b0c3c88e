//! W3C Trace Context (`traceparent`) on every request the canary sends, so
//! a slow sample on a dashboard leads to the service's own trace of that
//! request: the trace id is the exemplar of the latency and lag histograms
//! and is logged with failed requests.
//!
//! Each request is the root of its own trace (a fresh random trace id and
//! span id); `tracestate` is not sent, as the spec allows when it would be
//! empty. The sampled flag is `tracing.sampled`: off for services that must
//! not record synthetic traffic.

use std::cell::RefCell;

use http::HeaderValue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

thread_local! {
    /// Ids need uniqueness, not secrecy: a seeded xoshiro per thread costs
    /// a few nanoseconds where the reseeding ChaCha of `rand::rng()` costs
    /// several times that on every request.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// The header name.
pub const TRACEPARENT: &str = "traceparent";

/// A 128-bit W3C trace id; 0 means "none" (the spec forbids all zeros).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

impl TraceId {
    pub const NONE: TraceId = TraceId(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// 32 lowercase hex digits, as in `traceparent` and in trace backends.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The context of one outgoing request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A new root context with random ids (never zero).
    pub fn new(sampled: bool) -> Self {
        RNG.with_borrow_mut(|rng| TraceContext {
            trace_id: TraceId(rng.random::<u128>().max(1)),
            span_id: rng.random::<u64>().max(1),
            sampled,
        })
    }

    /// `00-<trace id>-<span id>-<flags>`, written without a `format!`.
    pub fn traceparent(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        for (i, b) in buf[3..35].iter_mut().enumerate() {
            *b = HEX[((self.trace_id.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        for (i, b) in buf[36..52].iter_mut().enumerate() {
            *b = HEX[((self.span_id >> (60 - 4 * i)) & 0xf) as usize];
        }
        if self.sampled {
            buf[54] = b'1';
        }
        HeaderValue::from_bytes(&buf).expect("hex digits and dashes are a valid header value")
    }
}

/// Parses a `traceparent` value (version 00) into its trace id and sampled
/// flag; `None` for anything malformed. Used by the reference API.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, u64, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if version != "00"
        || parts.next().is_some()
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok()?;
    let span = u64::from_str_radix(span, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace != 0 && span != 0).then_some((TraceId(trace), span, flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_follows_the_format() {
        for sampled in [true, false] {
            let ctx = TraceContext {
                trace_id: TraceId(0x0af7651916cd43dd8448eb211c80319c),
                span_id: 0xb7ad6b7169203331,
                sampled,
            };
            let v = ctx.traceparent();
            let flag = if sampled { "01" } else { "00" };
            assert_eq!(
                v.to_str().unwrap(),
                format!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flag}")
            );
            assert_eq!(
                parse_traceparent(v.to_str().unwrap()),
                Some((ctx.trace_id, ctx.span_id, sampled))
            );
        }
    }

    #[test]
    fn fresh_contexts_differ_and_are_never_zero() {
        let a = TraceContext::new(true);
        let b = TraceContext::new(true);
        assert_ne!(a.trace_id, b.trace_id);
        assert!(!a.trace_id.is_none() && a.span_id != 0);
        assert_eq!(a.trace_id.to_hex().len(), 32);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
