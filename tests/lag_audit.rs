//! The read-model integrity audit against the reference API: a `rebuild`
//! that leaves out 10 % of the stream's old events is caught by the next
//! audit, with as many vanished events as the simulator's truth says it
//! dropped among those the audit re-read; a calm run (with the simulator's
//! retention trimming the probe stream) counts no failure. They depend on
//! timing, so they run in the nextest `serial` group.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rehab_canary::config::Config;
use rehab_canary::lag::Projection;
use rehab_canary::sim::Faults;
use serde_json::Value;
use support::lag::*;
use support::{fetch_json, scrape, scrape_until, Scrape};

fn integrity(s: &Scrape, reason: &str) -> f64 {
    s.value(
        "rehab_canary_projection_integrity_failures_total",
        &[("projection", "stream"), ("reason", reason)],
    )
}

fn unjudged(s: &Scrape, reason: &str) -> f64 {
    s.value(
        "rehab_canary_projection_integrity_unjudged_total",
        &[("projection", "stream"), ("reason", reason)],
    )
}

fn audits(s: &Scrape) -> f64 {
    per(
        s,
        "rehab_canary_projection_integrity_audits_total",
        "stream",
    )
}

/// The stream's audit section of `/status`.
async fn audit_status(addr: SocketAddr) -> Value {
    let status = fetch_json(&format!("http://{addr}/status")).await;
    let all = status["extras"]["lag"]["audit"].as_array().unwrap().clone();
    all.into_iter()
        .find(|a| a["projection"] == "stream")
        .unwrap()
}

fn markers(v: &Value) -> HashSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

/// The stream probe alone, every `probe`, audited every `every` from
/// `min_age` on.
fn audited(c: &mut Config, probe: Duration, every: Duration, min_age: Duration) {
    c.lag.interval = probe;
    c.lag.audit.interval = every;
    c.lag.audit.min_age = min_age;
    c.lag.audit.max_age = Duration::from_secs(3600);
    c.lag.audit.sample = 1000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_rebuild_losing_old_events_is_caught_by_the_next_audit() {
    let sim = start_sim(Faults::default(), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5);
        // Keep the whole probe stream: every audited event can be judged.
        c.retention.max_bytes_per_patient = 64 << 20;
        c.retention.max_events_per_patient = 100_000;
    })
    .await;
    let every = Duration::from_secs(3);
    let daemon = start_daemon(config(&sim, &["stream"], |c| {
        audited(
            c,
            Duration::from_millis(20),
            every,
            Duration::from_millis(2500),
        );
        // A sample of the ~325 events old enough at the audit after the
        // rebuild, so the count depends on which ones the audit drew.
        c.lag.audit.sample = 200;
    }))
    .await;
    let addr = daemon.admin_addr();
    // Two calm audits, the second with a full window of old events.
    let calm = scrape_until(addr, "two calm audits", Duration::from_secs(20), |s| {
        audits(s) >= 2.0
    })
    .await;
    assert!(
        per(
            &calm,
            "rehab_canary_projection_integrity_checked_total",
            "stream"
        ) >= 100.0
    );
    assert_eq!(integrity(&calm, "vanished"), 0.0);
    assert_eq!(integrity(&calm, "duplicated"), 0.0);
    // Right after an audit, so the next one sees the rebuild whole.
    let before = audits(&calm);
    let rebuilt_at = Instant::now();
    let truth = sim.rebuild(0.1, Duration::from_secs(1), None);
    assert!(
        truth.examined >= 150,
        "old events replayed: {}",
        truth.examined
    );
    assert!(truth.dropped > 0);
    let dropped: HashSet<String> = truth
        .by_patient
        .values()
        .flatten()
        .filter_map(|d| d.session_id.clone())
        .collect();
    assert_eq!(
        dropped.len() as u64,
        truth.dropped,
        "every dropped event was a probe's"
    );
    let after = scrape_until(addr, "the next audit", every * 3, |s| {
        audits(s) >= before + 1.0
    })
    .await;
    let detected_in = rebuilt_at.elapsed();
    let vanished = integrity(&after, "vanished");
    assert!(vanished > 0.0, "the rebuild went unnoticed");
    assert!(
        detected_in <= every + Duration::from_secs(2),
        "detected after {detected_in:?}, the audit interval is {every:?}"
    );
    // What the audit re-read, against the simulator's truth.
    let status = audit_status(addr).await;
    let page = support::fetch_text(&format!("http://{addr}/")).await;
    assert!(page.contains("Integrity audit of stream"), "landing page");
    daemon.shutdown().await;
    sim.shutdown().await;
    let checked = markers(&status["last_checked"]);
    let reported = markers(&status["last_vanished"]);
    let expected = checked.intersection(&dropped).count() as f64;
    eprintln!(
        "dropped {} of {} old events; the audit re-read {} events, {expected} of them dropped; \
         counted {vanished} vanished; detected {detected_in:?} after the rebuild",
        truth.dropped,
        truth.examined,
        checked.len()
    );
    let seq = |m: &String| m.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    let mut all: Vec<u64> = checked.iter().map(seq).collect();
    all.sort();
    let mut missed: Vec<u64> = dropped.difference(&checked).map(seq).collect();
    missed.sort();
    eprintln!(
        "checked seqs {:?}..{:?} n {}; dropped not checked {missed:?}",
        all.first(),
        all.last(),
        all.len()
    );
    assert!(
        expected >= 5.0,
        "too few dropped events audited: {expected}"
    );
    assert!(
        (vanished - expected).abs() <= 0.3 * expected,
        "vanished {vanished}, dropped among the audited {expected}"
    );
    assert!(reported.is_subset(&dropped), "only dropped events vanish");
    assert_eq!(integrity(&after, "duplicated"), 0.0);
    for reason in ["status", "transport", "not_json", "shape"] {
        assert_eq!(unjudged(&after, reason), 0.0, "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_calm_run_counts_no_integrity_failure() {
    // The simulator's default retention keeps only the newest ~150 probe
    // events: older ones leave the stream, which is not a loss.
    let sim = start_sim(Faults::default(), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5)
    })
    .await;
    let daemon = start_daemon(config(&sim, &["stream"], |c| {
        let ms = Duration::from_millis;
        audited(c, ms(10), ms(700), ms(300));
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = scrape_until(
        addr,
        "audits past retention",
        Duration::from_secs(30),
        |s| audits(s) >= 8.0 && unjudged(s, "retention") >= 50.0,
    )
    .await;
    let last = scrape(addr).await;
    daemon.shutdown().await;
    sim.shutdown().await;
    let checked = per(
        &last,
        "rehab_canary_projection_integrity_checked_total",
        "stream",
    );
    eprintln!(
        "{} audits, {checked} events re-read, {} past retention",
        audits(&last),
        unjudged(&last, "retention")
    );
    assert!(checked >= 300.0, "checked {checked}");
    for s in [&s, &last] {
        assert_eq!(integrity(s, "vanished"), 0.0);
        assert_eq!(integrity(s, "duplicated"), 0.0);
        for reason in ["status", "transport", "not_json", "shape"] {
            assert_eq!(unjudged(s, reason), 0.0, "{reason}");
        }
        no_failures(s, "stream", "calm");
    }
    // Only the audited probe remembers; the gauge is bounded by the window.
    for p in Projection::ALL.into_iter().skip(1) {
        assert_eq!(
            per(
                &last,
                "rehab_canary_projection_integrity_checked_total",
                p.as_str()
            ),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_failed_audit_reads_judge_nothing() {
    let sim = start_sim(Faults::default(), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5);
        c.retention.max_bytes_per_patient = 64 << 20;
        c.retention.max_events_per_patient = 100_000;
    })
    .await;
    let ms = Duration::from_millis;
    let daemon = start_daemon(config(&sim, &["stream"], |c| {
        audited(c, ms(50), ms(500), ms(200));
    }))
    .await;
    let addr = daemon.admin_addr();
    scrape_until(addr, "a calm audit", Duration::from_secs(10), |s| {
        per(
            s,
            "rehab_canary_projection_integrity_checked_total",
            "stream",
        ) >= 10.0
    })
    .await;
    // Every answer a 500, then every read body garbage: nothing is judged.
    for (fault, reason) in [
        (faults(|f| f.error_rate = 1.0), "status"),
        (faults(|f| f.garbage_rate = 1.0), "not_json"),
    ] {
        sim.set_faults(fault);
        let s = scrape(addr).await;
        let before = (audits(&s), unjudged(&s, reason));
        scrape_until(addr, reason, Duration::from_secs(10), |s| {
            audits(s) >= before.0 + 2.0 && unjudged(s, reason) >= before.1 + 10.0
        })
        .await;
    }
    sim.set_faults(Faults::default());
    let s = scrape(addr).await;
    daemon.shutdown().await;
    sim.shutdown().await;
    assert_eq!(integrity(&s, "vanished"), 0.0);
    assert_eq!(integrity(&s, "duplicated"), 0.0);
    assert_eq!(unjudged(&s, "retention"), 0.0);
}
