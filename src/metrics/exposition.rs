//! `/metrics` in the format the scraper asked for, as client_golang's
//! `expfmt.Negotiate` does: the classic text format 0.0.4 (no exemplars) by
//! default, OpenMetrics (with exemplars) when `Accept` asks for it, and the
//! protobuf `MetricFamily` stream (the one format that carries native
//! histograms) when asked. The window summaries are written here, in every
//! format, because prometheus-client has no summary type.

use prometheus_client::encoding::{prometheus_protobuf, prometheus_text, text};
use prometheus_client::registry::Registry;
use prost::Message;

use super::histogram::TracedFamily;
use super::window::WindowSummaries;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what every client and `promtool` reads.
    Text,
    /// OpenMetrics 1.0 text, with exemplars and `# EOF`.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages, with
    /// native histograms (and classic buckets, and exemplars on them).
    Protobuf,
}

impl Format {
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
                 encoding=delimited"
            }
        }
    }

    /// The format for an `Accept` header: the acceptable media range with
    /// the highest `q` (the first on a tie); text when none is acceptable.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0f32;
            let (mut proto, mut encoding, mut version) = (None, None, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "proto" => proto = Some(v),
                    "encoding" => encoding = Some(v),
                    "version" => version = Some(v),
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/vnd.google.protobuf"
                    if proto == Some("io.prometheus.client.MetricFamily")
                        && encoding == Some("delimited") =>
                {
                    Format::Protobuf
                }
                "application/openmetrics-text"
                    if matches!(version, None | Some("1.0.0") | Some("0.0.1")) =>
                {
                    Format::OpenMetrics
                }
                "text/plain" if matches!(version, None | Some("0.0.4")) => Format::Text,
                "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }
}

/// A family prometheus-client cannot express.
#[derive(Debug)]
enum Extra {
    Summaries(WindowSummaries),
    Histograms(TracedFamily),
}

impl Extra {
    fn write_text(&self, out: &mut String, openmetrics: bool) {
        match self {
            Extra::Summaries(s) => s.write_text(out),
            Extra::Histograms(h) => h.write_text(out, openmetrics),
        }
    }

    fn to_protobuf(&self) -> prometheus_protobuf::prometheus_data_model::MetricFamily {
        match self {
            Extra::Summaries(s) => s.to_protobuf(),
            Extra::Histograms(h) => h.to_protobuf(),
        }
    }
}

/// The registry plus the families it cannot express (window summaries,
/// histograms with native buckets and trace exemplars).
#[derive(Debug, Default)]
pub struct Exposition {
    pub registry: Registry,
    extra: Vec<Extra>,
}

impl Exposition {
    /// Adds a summary family; it is written after the registry's families.
    pub fn add_summaries(&mut self, s: WindowSummaries) {
        self.extra.push(Extra::Summaries(s));
    }

    /// Adds a traced histogram family; written after the registry's.
    pub fn add_histograms(&mut self, h: TracedFamily) {
        self.extra.push(Extra::Histograms(h));
    }

    /// The whole exposition. `size_hint` avoids regrowing the buffer.
    pub fn encode(&self, format: Format, size_hint: usize) -> Vec<u8> {
        match format {
            Format::Text | Format::OpenMetrics => {
                let mut out = String::with_capacity(size_hint);
                let encoded = if format == Format::Text {
                    prometheus_text::encode(&mut out, &self.registry)
                } else {
                    text::encode(&mut out, &self.registry)
                };
                // Writing to a String cannot fail; only a collector could.
                // A truncated exposition makes the scrape fail visibly.
                if let Err(e) = encoded {
                    tracing::warn!(error = %e, "encoding metrics failed");
                    return out.into_bytes();
                }
                let eof = format == Format::OpenMetrics && out.ends_with("# EOF\n");
                if eof {
                    out.truncate(out.len() - "# EOF\n".len());
                }
                for e in &self.extra {
                    e.write_text(&mut out, format == Format::OpenMetrics);
                }
                if eof {
                    out.push_str("# EOF\n");
                }
                out.into_bytes()
            }
            Format::Protobuf => {
                let mut families = match prometheus_protobuf::encode(&self.registry) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "encoding metrics failed");
                        return Vec::new();
                    }
                };
                families.extend(self.extra.iter().map(Extra::to_protobuf));
                let mut out = Vec::with_capacity(size_hint);
                for f in families {
                    // Encoding into a Vec only fails for lack of capacity,
                    // which a Vec grows.
                    let _ = f.encode_length_delimited(&mut out);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept_and_q_values() {
        use Format::*;
        let cases = [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("text/plain; version=0.0.4; charset=utf-8"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            // Prometheus 2.42's scrape header, without and with native histograms.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Protobuf,
            ),
            // q decides, not order.
            (
                Some("text/plain;version=0.0.4;q=0.3,application/openmetrics-text;version=1.0.0;q=0.9"),
                OpenMetrics,
            ),
            // Unknown versions and incomplete protobuf ranges are not ours.
            (Some("application/openmetrics-text;version=2.0.0"), Text),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"), Text),
            (Some("application/openmetrics-text;q=0"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }
}
