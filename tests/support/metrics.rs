//! Scraping a `/metrics` endpoint and reading the Prometheus text format:
//! one parser for the daemon's and the reference API's metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::wait::eventually;

/// One scrape: series (name plus sorted labels, as exposed) to value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub series: HashMap<String, f64>,
    pub text: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // Drop an exemplar (" # {...} v") if present.
            let line = line.split(" # ").next().unwrap_or(line);
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if let Ok(v) = value.parse::<f64>() {
                series.insert(normalize(key), v);
            }
        }
        Scrape {
            series,
            text: text.to_owned(),
        }
    }

    /// The value of `name` with exactly these labels (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&key(name, labels)).copied()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {}", key(name, labels)))
    }

    /// Sum over every series of `name` whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                let (n, labels) = split(k);
                n == name
                    && filter
                        .iter()
                        .all(|(lk, lv)| labels.contains(&format!("{lk}=\"{lv}\"")))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// How much [`Scrape::value`] grew since the scrape `before`.
    pub fn value_since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.value(name, labels)
    }

    /// How much [`Scrape::sum`] grew since the scrape `before`.
    pub fn sum_since(&self, before: &Scrape, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.sum(name, filter) - before.sum(name, filter)
    }
}

fn split(k: &str) -> (&str, Vec<String>) {
    match k.split_once('{') {
        Some((n, rest)) => (
            n,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        None => (k, Vec::new()),
    }
}

fn normalize(raw: &str) -> String {
    let (name, mut labels) = split(raw);
    labels.sort();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    if l.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", l.join(","))
    }
}

pub async fn scrape(addr: SocketAddr) -> Scrape {
    scrape_url(&format!("http://{addr}/metrics")).await
}

/// Asks for OpenMetrics, as Prometheus does: exemplars included.
pub async fn scrape_url(url: &str) -> Scrape {
    let text = reqwest::Client::new()
        .get(url)
        .header("accept", OPENMETRICS)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scrape {url}: {e}"))
        .text()
        .await
        .unwrap();
    Scrape::parse(&text)
}

/// The `Accept` header of an OpenMetrics scrape.
pub const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

/// Scrapes `addr` until `check` holds (at most `limit`); that scrape.
pub async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    limit: Duration,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    eventually(what, limit, || async {
        let s = scrape(addr).await;
        check(&s).then_some(s)
    })
    .await
}

/// Two scrapes of `addr`, `over` apart, and the seconds between them.
pub async fn scrape_over(addr: SocketAddr, over: Duration) -> (Scrape, Scrape, f64) {
    let (s0, t0) = (scrape(addr).await, tokio::time::Instant::now());
    tokio::time::sleep(over).await;
    let (s1, t1) = (scrape(addr).await, tokio::time::Instant::now());
    (s0, s1, (t1 - t0).as_secs_f64())
}

/// The reference API's ground truth, scraped.
pub async fn scrape_sim(sim: &rehab_canary::sim::SimHandle) -> Scrape {
    scrape_url(&format!("{}/metrics", sim.base_url())).await
}

/// Value of the sample whose name-and-labels part is `series` as exposed
/// (e.g. `rehab_sim_requests_total{route="health",status="200"}`); 0 if absent.
pub fn sample(text: &str, series: &str) -> f64 {
    Scrape::parse(text)
        .series
        .get(&normalize(series))
        .copied()
        .unwrap_or(0.0)
}

/// The reference API's ground-truth metrics as text.
pub async fn metrics_text(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One series of the reference API's ground truth (see [`sample`]).
pub async fn metric(c: &reqwest::Client, base: &str, series: &str) -> f64 {
    sample(&metrics_text(c, base).await, series)
}

/// The `q` quantile (0-1) estimated from cumulative histogram buckets of
/// `name` (with `labels`), by linear interpolation inside the bucket.
pub fn histogram_quantile(s: &Scrape, name: &str, labels: &[(&str, &str)], q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = s
        .series
        .iter()
        .filter_map(|(k, v)| {
            let (n, ls) = split(k);
            if n != format!("{name}_bucket") {
                return None;
            }
            let mut le = None;
            for l in &ls {
                if let Some(x) = l.strip_prefix("le=\"") {
                    le = Some(x.trim_end_matches('"').to_owned());
                } else if !labels.iter().any(|(lk, lv)| *l == format!("{lk}=\"{lv}\"")) {
                    return None;
                }
            }
            let le = le?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    assert!(total > 0.0, "histogram {name} {labels:?} is empty");
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let frac = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                0.0
            };
            return prev.0 + (le - prev.0) * frac;
        }
        prev = (le, c);
    }
    prev.0
}
