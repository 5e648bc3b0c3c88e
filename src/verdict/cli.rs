//! `rehab-canary verdict`: asks a running daemon for its deploy verdict and
//! prints one row per signal, for CI pipelines: exit 0 pass, 1 fail, 2
//! marginal or inconclusive (a human should look), 64 bad usage (the
//! daemon's 400 names the parameter), 70 no answer.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::exit::{Exit, ExitStatus};

/// The env var holding the admin server's basic-auth password (never a
/// flag: a flag shows in `ps`).
pub const PASSWORD_ENV: &str = "REHAB_CANARY_ADMIN_PASSWORD";

#[derive(Debug, thiserror::Error)]
pub enum VerdictCliError {
    #[error("--url {0}: not an http(s) URL")]
    BadUrl(String),
    #[error("{0}")]
    Refused(String),
    #[error("{url}: {reason}")]
    Unreachable { url: Url, reason: String },
    #[error("{url}: answered {status}: {body}")]
    Unexpected { url: Url, status: u16, body: String },
}

impl ExitStatus for VerdictCliError {
    fn exit(&self) -> Exit {
        match self {
            VerdictCliError::BadUrl(_) | VerdictCliError::Refused(_) => Exit::Usage,
            _ => Exit::Software,
        }
    }
}

/// What to ask.
#[derive(Debug, Clone)]
pub struct Ask {
    pub url: String,
    pub since: String,
    pub baseline: Option<String>,
    pub min_samples: Option<u64>,
    pub user: Option<String>,
    pub timeout: Duration,
}

/// Asks and returns the printed table and the exit status.
pub async fn ask(a: &Ask) -> Result<(String, Exit), VerdictCliError> {
    let base = Url::parse(&a.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| VerdictCliError::BadUrl(a.url.clone()))?;
    let mut url = base
        .join("/api/v1/verdict")
        .map_err(|_| VerdictCliError::BadUrl(a.url.clone()))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("since", &a.since);
        if let Some(b) = &a.baseline {
            q.append_pair("baseline", b);
        }
        if let Some(n) = a.min_samples {
            q.append_pair("min_samples", &n.to_string());
        }
    }
    let client = reqwest::Client::builder()
        .timeout(a.timeout)
        .build()
        .map_err(|e| VerdictCliError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let mut req = client.get(url.clone());
    if let Some(user) = &a.user {
        req = req.basic_auth(user, std::env::var(PASSWORD_ENV).ok());
    }
    let resp = req.send().await.map_err(|e| VerdictCliError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    match status {
        200 => Ok(render(&v)),
        400 => Err(VerdictCliError::Refused(
            v["error"].as_str().unwrap_or(&body).to_owned(),
        )),
        _ => Err(VerdictCliError::Unexpected {
            url,
            status,
            body: body.chars().take(300).collect(),
        }),
    }
}

/// The table, and the exit status of the overall verdict.
pub fn render(v: &Value) -> (String, Exit) {
    let mut out = String::new();
    let _ = writeln!(out, "{:<8} {:<16} {:<12} REASON", "SIGNAL", "OF", "OUTCOME");
    for s in v["signals"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:<12} {}",
            s["signal"].as_str().unwrap_or("?"),
            s["of"].as_str().unwrap_or("-"),
            s["outcome"].as_str().unwrap_or("?").to_uppercase(),
            s["reason"].as_str().unwrap_or(""),
        );
    }
    let verdict = v["verdict"].as_str().unwrap_or("inconclusive");
    let _ = writeln!(
        out,
        "\nVERDICT: {} (baseline {} snapshots, canary {} snapshots)",
        verdict.to_uppercase(),
        v["baseline"]["snapshots"],
        v["canary"]["snapshots"]
    );
    let exit = match verdict {
        "pass" => Exit::Success,
        "fail" => Exit::Failure,
        _ => Exit::Undecided,
    };
    (out, exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_follows_the_verdict() {
        for (verdict, exit) in [
            ("pass", Exit::Success),
            ("fail", Exit::Failure),
            ("marginal", Exit::Undecided),
            ("inconclusive", Exit::Undecided),
        ] {
            let v = serde_json::json!({
                "verdict": verdict,
                "baseline": {"snapshots": 60},
                "canary": {"snapshots": 5},
                "signals": [{"signal": "latency", "of": "events_create",
                             "outcome": verdict, "reason": "p95 rose 50 ms"}],
            });
            let (table, e) = render(&v);
            assert_eq!(e, exit);
            assert!(table.contains("latency  events_create"), "{table}");
            assert!(table.contains(&format!("VERDICT: {}", verdict.to_uppercase())));
        }
    }
}
