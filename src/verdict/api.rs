//! The verdict and deploy routes: `GET /api/v1/verdict` compares the
//! snapshots after `since` with the baseline window before it, signal by
//! signal; `POST /-/deploy` records a deploy. Every answer is JSON; bad
//! input is a 400 naming the parameter.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::collect::unix_now;
use super::deploy::{version_problem, Deploy, Deploys};
use super::stats::{self, Outcome, SignalVerdict, Tolerance};
use super::store::{Merged, Store};
use crate::admin::control::Access;
use crate::api::Endpoint;
use crate::config::verdict::VerdictConfig;
use crate::lag::Projection;

/// What the routes share.
#[derive(Clone, Debug)]
pub struct VerdictState {
    pub cfg: Arc<VerdictConfig>,
    pub store: Arc<Mutex<Store>>,
    pub deploys: Arc<Deploys>,
}

/// `/api/v1/verdict` (read-only: the admin server's auth applies) and
/// `/-/deploy` (a change: also closed off loopback without auth, as the
/// lifecycle routes are).
pub fn router(state: VerdictState, access: Access) -> Router {
    let deploy = Router::new().route("/-/deploy", post(deploy)).route_layer(
        axum::middleware::from_fn_with_state(access, crate::admin::control::guard),
    );
    Router::new()
        .route("/api/v1/verdict", get(verdict))
        .merge(deploy)
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Problem {
    error: String,
    parameter: &'static str,
}

fn bad(parameter: &'static str, message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(Problem {
            error: format!("{parameter}: {message}"),
            parameter,
        }),
    )
        .into_response()
}

/// RFC 3339, or unix seconds.
fn parse_instant(raw: &str) -> Option<f64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(raw.trim()) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
    }
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[derive(Debug, Deserialize)]
struct DeployBody {
    version: Option<String>,
    /// RFC 3339 or unix seconds; now when absent.
    at: Option<serde_json::Value>,
}

async fn deploy(State(s): State<VerdictState>, body: axum::body::Bytes) -> Response {
    let b: DeployBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad("body", format!("must be a JSON object: {e}")),
    };
    let Some(version) = b.version else {
        return bad("version", "is required");
    };
    if let Some(p) = version_problem(&version) {
        return bad("version", p);
    }
    let now = unix_now() as f64;
    let at = match &b.at {
        None => now,
        Some(serde_json::Value::String(s)) => match parse_instant(s) {
            Some(t) => t,
            None => return bad("at", "must be RFC 3339 or unix seconds"),
        },
        Some(serde_json::Value::Number(n)) => match n.as_f64().filter(|v| *v >= 0.0) {
            Some(t) => t,
            None => return bad("at", "must be unix seconds, 0 or more"),
        },
        Some(_) => return bad("at", "must be RFC 3339 or unix seconds"),
    };
    if at > now + 60.0 {
        return bad("at", "is in the future");
    }
    let d = Deploy { version, at };
    tracing::info!(version = %d.version, at = d.at, "deploy recorded");
    s.deploys.record(d.clone());
    Json(d).into_response()
}

#[derive(Debug, Deserialize)]
struct VerdictQuery {
    since: Option<String>,
    baseline: Option<String>,
    min_samples: Option<String>,
    strict: Option<String>,
}

/// One judged signal.
#[derive(Debug, Serialize)]
pub struct Signal {
    /// `latency`, `errors`, `lag` or `loss`.
    pub signal: &'static str,
    /// The endpoint or projection, for per-series signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<&'static str>,
    #[serde(flatten)]
    pub verdict: SignalVerdict,
}

/// A window of snapshots.
#[derive(Debug, Serialize)]
pub struct Window {
    pub from: f64,
    pub to: f64,
    pub snapshots: usize,
}

/// The answer of `/api/v1/verdict`.
#[derive(Debug, Serialize)]
pub struct VerdictReport {
    pub verdict: Outcome,
    pub since: f64,
    pub baseline: Window,
    pub canary: Window,
    pub signals: Vec<Signal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
}

async fn verdict(State(s): State<VerdictState>, Query(q): Query<VerdictQuery>) -> Response {
    let cfg = &s.cfg;
    let now = unix_now() as f64;
    let since = match q.since.as_deref() {
        None => {
            return bad(
                "since",
                "is required (RFC 3339, unix seconds or last-deploy)",
            )
        }
        Some("last-deploy") => match s.deploys.last() {
            Some(d) => d.at,
            None => {
                return bad(
                    "since",
                    "last-deploy: no deploy was recorded (POST /-/deploy)",
                )
            }
        },
        Some(raw) => match parse_instant(raw) {
            Some(t) => t,
            None => return bad("since", "must be RFC 3339, unix seconds or last-deploy"),
        },
    };
    if since > now {
        return bad("since", "is in the future");
    }
    let baseline = match q.baseline.as_deref() {
        None => cfg.baseline,
        Some(raw) => match humantime::parse_duration(raw) {
            Ok(d) if !d.is_zero() => d,
            _ => return bad("baseline", "must be a duration such as 1h or 30m"),
        },
    };
    if baseline + Duration::from_secs_f64(now - since) > cfg.retention {
        return bad(
            "baseline",
            format!(
                "the baseline and the time since `since` together ({}) are longer than \
                 verdict.retention ({})",
                humantime::format_duration(Duration::from_secs(
                    (baseline.as_secs_f64() + now - since) as u64
                )),
                humantime::format_duration(cfg.retention)
            ),
        );
    }
    let min_samples = match q.min_samples.as_deref() {
        None => cfg.min_samples,
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return bad("min_samples", "must be a whole number"),
        },
    };
    let strict = match q.strict.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => return bad("strict", "must be 1 or 0"),
    };
    let from = since - baseline.as_secs_f64();
    let (base, canary) = {
        let store = s.store.lock();
        (
            store.merged(from, since),
            store.merged(since, f64::INFINITY),
        )
    };
    let report = judge(
        cfg,
        min_samples,
        &base,
        &canary,
        since,
        from,
        now,
        s.deploys.last(),
    );
    let status = if strict && report.verdict != Outcome::Pass {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    (status, Json(report)).into_response()
}

fn duration_tolerance(t: &crate::config::verdict::DurationTolerance) -> Tolerance {
    Tolerance {
        relative: t.relative,
        absolute: t.absolute.as_secs_f64(),
    }
}

/// Every signal of the two windows, and the overall verdict.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    cfg: &VerdictConfig,
    min_samples: u64,
    base: &Merged,
    canary: &Merged,
    since: f64,
    from: f64,
    now: f64,
    deploy: Option<Deploy>,
) -> VerdictReport {
    let mut signals = Vec::new();
    let (alpha, marginal) = (cfg.alpha, cfg.marginal_alpha);
    for (i, ep) in Endpoint::ALL.iter().enumerate() {
        let (b, c) = (&base.latency[i], &canary.latency[i]);
        if b.is_empty() && c.is_empty() {
            continue;
        }
        signals.push(Signal {
            signal: "latency",
            of: Some(ep.as_str()),
            verdict: stats::judge_latency(
                b,
                c,
                duration_tolerance(&cfg.latency),
                alpha,
                marginal,
                min_samples,
            ),
        });
    }
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    signals.push(Signal {
        signal: "errors",
        of: None,
        verdict: stats::judge_ratio(
            sum(&base.errors),
            sum(&base.requests),
            sum(&canary.errors),
            sum(&canary.requests),
            Tolerance {
                relative: 0.0,
                absolute: cfg.errors.absolute,
            },
            alpha,
            marginal,
            min_samples,
        ),
    });
    for (i, p) in Projection::ALL.iter().enumerate() {
        let (b, c) = (&base.lag[i], &canary.lag[i]);
        if b.is_empty() && c.is_empty() {
            continue;
        }
        signals.push(Signal {
            signal: "lag",
            of: Some(p.as_str()),
            verdict: stats::judge_latency(
                b,
                c,
                duration_tolerance(&cfg.lag),
                alpha,
                marginal,
                min_samples,
            ),
        });
    }
    signals.push(Signal {
        signal: "loss",
        of: None,
        verdict: stats::judge_ratio(
            sum(&base.lost),
            sum(&base.probes),
            sum(&canary.lost),
            sum(&canary.probes),
            Tolerance {
                relative: 0.0,
                absolute: cfg.loss.absolute,
            },
            alpha,
            marginal,
            // Probes are few per minute: judged on fewer samples.
            (min_samples / 10).max(1),
        ),
    });
    let outcomes: Vec<Outcome> = signals.iter().map(|s| s.verdict.outcome).collect();
    VerdictReport {
        verdict: stats::overall(&outcomes),
        since,
        baseline: Window {
            from,
            to: since,
            snapshots: base.snapshots,
        },
        canary: Window {
            from: since,
            to: now,
            snapshots: canary.snapshots,
        },
        signals,
        deploy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::server::WebState;
    use crate::metrics::window::new_hist;
    use crate::verdict::store::{encode, Snapshot};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const EP: usize = 0; // events_create

    /// `n` requests around `ms` (±10 %), spread deterministically.
    fn latency(ms: f64, n: u64) -> Box<[u8]> {
        let mut h = new_hist();
        for k in 0..n {
            let v = ms * (0.9 + 0.2 * (k as f64 / n as f64));
            h.record((v * 1000.0) as u64).unwrap();
        }
        encode(&h)
    }

    fn snapshot(start: u64, ms: f64, errors: u64) -> Snapshot {
        let endpoints = Endpoint::ALL.len();
        let projections = Projection::ALL.len();
        let mut lat = vec![Box::<[u8]>::default(); endpoints];
        lat[EP] = latency(ms, 600);
        let mut requests = vec![0; endpoints];
        requests[EP] = 600;
        let mut errs = vec![0; endpoints];
        errs[EP] = errors;
        Snapshot {
            start,
            seconds: 60,
            latency: lat,
            requests,
            errors: errs,
            lag: vec![Box::default(); projections],
            probes: vec![60; projections],
            lost: vec![0; projections],
        }
    }

    /// 30 minutes at 40 ms, then a deploy, then 10 minutes at `after` ms.
    fn state(after: f64) -> (VerdictState, f64) {
        let now = unix_now();
        let deploy_at = now - 10 * 60;
        let mut store =
            Store::open(1440, Endpoint::ALL.len(), Projection::ALL.len(), None).unwrap();
        for k in (1..=30).rev() {
            store.push(snapshot(deploy_at - 60 * k, 40.0, 0)).unwrap();
        }
        for k in 0..9 {
            store.push(snapshot(deploy_at + 60 * k, after, 0)).unwrap();
        }
        let mut r = prometheus_client::registry::Registry::default();
        let s = VerdictState {
            cfg: Arc::new(VerdictConfig::default()),
            store: Arc::new(Mutex::new(store)),
            deploys: Arc::new(Deploys::register(&mut r)),
        };
        (s, deploy_at as f64)
    }

    fn app(s: VerdictState) -> Router {
        let access = Access::new("127.0.0.1:0".parse().unwrap(), false, WebState::plain());
        router(s, access)
    }

    async fn call(app: Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_latency_regression_fails_on_latency_and_nothing_else() {
        let (s, at) = state(90.0);
        let (status, v) = call(
            app(s),
            get(&format!("/api/v1/verdict?since={at}&baseline=30m")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["verdict"], "fail", "{v}");
        let signals = v["signals"].as_array().unwrap();
        let latency = signals.iter().find(|s| s["signal"] == "latency").unwrap();
        assert_eq!(latency["of"], "events_create");
        assert_eq!(latency["outcome"], "fail");
        assert!(
            latency["reason"].as_str().unwrap().contains("p95"),
            "{latency}"
        );
        for s in signals.iter().filter(|s| s["signal"] != "latency") {
            assert_ne!(s["outcome"], "fail", "{s}");
        }
        assert_eq!(v["baseline"]["snapshots"], 30);
        assert_eq!(v["canary"]["snapshots"], 9);
    }

    #[tokio::test]
    async fn no_change_passes_and_strict_answers_409_only_when_not_pass() {
        let (s, at) = state(40.0);
        let uri = format!("/api/v1/verdict?since={at}&baseline=30m&strict=1");
        let (status, v) = call(app(s), get(&uri)).await;
        assert_eq!(
            (status, v["verdict"].as_str()),
            (StatusCode::OK, Some("pass")),
            "{v}"
        );
        let (s, _) = state(90.0);
        let (status, v) = call(app(s), get(&uri)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(v["verdict"], "fail");
    }

    #[tokio::test]
    async fn too_few_samples_is_inconclusive() {
        let (s, at) = state(90.0);
        let uri = format!("/api/v1/verdict?since={at}&baseline=30m&min_samples=1000000");
        let (_, v) = call(app(s), get(&uri)).await;
        assert_eq!(v["verdict"], "inconclusive", "{v}");
    }

    #[tokio::test]
    async fn bad_input_is_a_400_naming_the_parameter() {
        let now = unix_now();
        let cases = [
            ("/api/v1/verdict".to_owned(), "since"),
            ("/api/v1/verdict?since=yesterday".to_owned(), "since"),
            (format!("/api/v1/verdict?since={}", now + 3600), "since"),
            ("/api/v1/verdict?since=last-deploy".to_owned(), "since"),
            (
                format!("/api/v1/verdict?since={now}&baseline=30d"),
                "baseline",
            ),
            (
                format!("/api/v1/verdict?since={now}&baseline=soon"),
                "baseline",
            ),
            (
                format!("/api/v1/verdict?since={now}&min_samples=-1"),
                "min_samples",
            ),
            (
                format!("/api/v1/verdict?since={now}&strict=maybe"),
                "strict",
            ),
        ];
        for (uri, param) in cases {
            let (s, _) = state(40.0);
            let (status, v) = call(app(s), get(&uri)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
            assert_eq!(v["parameter"], param, "{uri}: {v}");
            assert!(v["error"].as_str().unwrap().starts_with(param), "{v}");
        }
    }

    #[tokio::test]
    async fn a_deploy_is_recorded_and_since_last_deploy_uses_it() {
        let (s, at) = state(90.0);
        let deploys = s.deploys.clone();
        let app = app(s);
        let post = |body: &str| {
            Request::post("/-/deploy")
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap()
        };
        let (status, v) = call(
            app.clone(),
            post(&format!(r#"{{"version":"v2","at":{at}}}"#)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(deploys.last().unwrap().version, "v2");
        let (_, v) = call(
            app.clone(),
            get("/api/v1/verdict?since=last-deploy&baseline=30m"),
        )
        .await;
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["deploy"]["version"], "v2");
        for (body, param) in [
            ("not json", "body"),
            ("{}", "version"),
            (r#"{"version":""}"#, "version"),
            (r#"{"version":"v3","at":"tomorrow"}"#, "at"),
            (r#"{"version":"v3","at":99999999999}"#, "at"),
        ] {
            let (status, v) = call(app.clone(), post(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
            assert_eq!(v["parameter"], param, "{body}: {v}");
        }
        // A refused deploy changed nothing.
        assert_eq!(deploys.last().unwrap().version, "v2");
    }

    #[tokio::test]
    async fn the_deploy_route_is_closed_off_loopback_without_auth() {
        let (s, _) = state(40.0);
        let access = Access::new("0.0.0.0:0".parse().unwrap(), false, WebState::plain());
        let resp = router(s.clone(), access)
            .oneshot(
                Request::post("/-/deploy")
                    .body(Body::from(r#"{"version":"v9"}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(s.deploys.last().is_none());
    }
}

/// The memory bound by construction, and (ignored: a benchmark) the
/// measured memory and verdict time at the defaults.
#[cfg(test)]
mod bound {
    use super::*;
    use crate::metrics::window::new_hist;
    use crate::verdict::store::{encode, Snapshot};
    use rand::{Rng, SeedableRng};

    /// A busy minute: every endpoint with `n` requests spread log-uniformly
    /// over 1 ms .. 2 s (far wider than a healthy service), every projection
    /// with 60 lag samples over 5 ms .. 5 s.
    fn busy_minute(rng: &mut rand::rngs::StdRng, start: u64, n: u64) -> Snapshot {
        let mut spread = |lo: f64, hi: f64, n: u64| {
            let mut h = new_hist();
            for _ in 0..n {
                let v = (lo.ln() + rng.random::<f64>() * (hi / lo).ln()).exp();
                h.record((v * 1e6) as u64).unwrap();
            }
            encode(&h)
        };
        let endpoints = Endpoint::ALL.len();
        let projections = Projection::ALL.len();
        Snapshot {
            start,
            seconds: 60,
            latency: (0..endpoints).map(|_| spread(1e-3, 2.0, n)).collect(),
            requests: vec![n; endpoints],
            errors: vec![1; endpoints],
            lag: (0..projections).map(|_| spread(5e-3, 5.0, 60)).collect(),
            probes: vec![60; projections],
            lost: vec![0; projections],
        }
    }

    fn day(n: u64) -> Store {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let cfg = VerdictConfig::default();
        let mut store = Store::open(
            cfg.capacity(),
            Endpoint::ALL.len(),
            Projection::ALL.len(),
            None,
        )
        .unwrap();
        for k in 0..cfg.capacity() as u64 + 10 {
            store.push(busy_minute(&mut rng, 60 * k, n)).unwrap();
        }
        store
    }

    #[test]
    fn a_day_of_snapshots_stays_under_20_mb() {
        // 13 endpoints × 2000 requests a minute, widely spread: every
        // histogram holds near its most distinct buckets.
        let store = day(2000);
        assert_eq!(store.len(), 1440, "the ring never grows past the retention");
        let mb = store.bytes() as f64 / 1e6;
        eprintln!("24 h of snapshots: {mb:.1} MB");
        assert!(mb < 20.0, "{mb} MB");
    }

    /// `cargo test --release --lib verdict::api::bound -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark: memory and time, see BENCHMARKS.md"]
    fn bench_memory_and_verdict_time() {
        fn rss_kib() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(0)
        }
        let before = rss_kib();
        let store = day(2000);
        let after = rss_kib();
        let cfg = VerdictConfig::default();
        let t = std::time::Instant::now();
        let runs = 20;
        for _ in 0..runs {
            let end = 60.0 * 1440.0;
            let since = end - 3600.0;
            let base = store.merged(since - 3600.0, since);
            let canary = store.merged(since, f64::INFINITY);
            let r = judge(&cfg, 100, &base, &canary, since, since - 3600.0, end, None);
            assert_eq!(r.baseline.snapshots, 60);
        }
        let per = t.elapsed() / runs;
        eprintln!(
            "24 h of snapshots: {:.1} MB counted, RSS +{:.1} MiB; one verdict (1 h vs 1 h, 13 \
             endpoints, 4 projections): {per:?}",
            store.bytes() as f64 / 1e6,
            (after.saturating_sub(before)) as f64 / 1024.0
        );
    }
}
