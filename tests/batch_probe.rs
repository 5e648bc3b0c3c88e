//! The batch probe against the reference API's ground truth, batch by
//! batch: at projection delays of 40 ms and 250 ms, with the response path
//! at 0 and 30 ms (and 50 ± 50 ms at 250 ms), the time until every event of a batch is visible (and
//! until the first is), p50 and p95 within max(5 ms, 10 %) of the truth of
//! the same batches, the exported error bar covering the real error of at
//! least 95 % of them; and, with events dropped, lost batch events equal
//! to the drops. These measure lag, so they run in the nextest `serial`
//! group.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rehab_canary::sim::Faults;
use support::lag::*;
use support::{scrape_sim, scrape_until};

const SIZE: usize = 20;

/// Runs the batch probe alone until `batches` have resolved, lets every
/// run finish, and returns the daemon's scrape, samples and the truth.
async fn run(
    faults: Faults,
    batches: f64,
) -> (
    support::Scrape,
    Vec<rehab_canary::lag::BatchSample>,
    HashMap<String, rehab_canary::sim::BatchTruth>,
    support::Scrape,
) {
    // Short pipeline batches, as in the lag matrix: the truth is then a
    // narrow band just above the delay.
    let sim = start_sim(faults, |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5)
    })
    .await;
    let daemon = start_daemon(config(&sim, &["batch"], |c| {
        c.lag.probes.batch.interval = Duration::from_millis(150);
        c.lag.probes.batch.size = SIZE;
        c.lag.timeout = Duration::from_secs(1);
        c.lag.late_window = Duration::from_secs(5);
    }))
    .await;
    let addr = daemon.admin_addr();
    scrape_until(addr, "enough batches", Duration::from_secs(90), |s| {
        s.value("rehab_canary_batch_post_duration_seconds_count", &[]) >= batches
    })
    .await;
    daemon.pause();
    let s = scrape_until(addr, "every batch resolved", Duration::from_secs(10), |s| {
        s.value("rehab_canary_lag_probes_in_flight", &[]) == 0.0
    })
    .await;
    let samples = daemon.batch_samples();
    daemon.shutdown().await;
    let truth = sim
        .recent_batches()
        .into_iter()
        .map(|b| (b.first_event_id.to_string(), b))
        .collect();
    let sim_metrics = scrape_sim(&sim).await;
    sim.shutdown().await;
    (s, samples, truth, sim_metrics)
}

/// One cell: `jitter_ms` spreads the response path over
/// `response_ms ± jitter_ms / 2`; under jitter only the median is held to
/// the bound (as in the lag matrix: no client-side estimator can be exact
/// there), over more batches.
async fn accuracy(delay_ms: u64, response_ms: u64, jitter_ms: u64) {
    let what = format!(
        "delay {delay_ms} ms, response path {response_ms} ± {} ms",
        jitter_ms / 2
    );
    let batches = if jitter_ms > 0 { 80.0 } else { 40.0 };
    let (s, samples, truth, _) = run(
        faults(|f| {
            f.projection_delay_ms = delay_ms;
            f.response_delay_ms = response_ms;
            f.response_jitter_ms = jitter_ms;
        }),
        batches,
    )
    .await;
    for name in [
        "rehab_canary_batch_events_lost_total",
        "rehab_canary_batch_events_late_total",
        "rehab_canary_batch_events_duplicated_total",
    ] {
        assert_eq!(s.value(name, &[]), 0.0, "{what}: {name}");
    }
    for reason in ["error", "rejected"] {
        assert_eq!(
            s.value(
                "rehab_canary_batch_probe_failures_total",
                &[("reason", reason)]
            ),
            0.0,
            "{what}: {reason}"
        );
    }
    assert_eq!(
        s.value("rehab_canary_batch_probe_events_total", &[]),
        samples.len() as f64 * SIZE as f64,
        "{what}: every event of every batch accepted"
    );
    let pairs: Vec<_> = samples
        .iter()
        .filter_map(|b| truth.get(&*b.event_id).map(|t| (b, t)))
        .collect();
    assert!(
        pairs.len() >= samples.len() * 9 / 10 && pairs.len() >= 36,
        "{what}: {} of {} batches have a truth",
        pairs.len(),
        samples.len()
    );
    for (label, est, unc, tru) in [
        (
            "every event",
            pairs
                .iter()
                .map(|(b, _)| b.visible_seconds.unwrap())
                .collect::<Vec<_>>(),
            pairs
                .iter()
                .map(|(b, _)| b.visible_uncertainty_seconds.unwrap())
                .collect::<Vec<_>>(),
            pairs
                .iter()
                .map(|(_, t)| t.visible.unwrap())
                .collect::<Vec<_>>(),
        ),
        (
            "first event",
            pairs
                .iter()
                .map(|(b, _)| b.first_visible_seconds.unwrap())
                .collect(),
            pairs
                .iter()
                .map(|(b, _)| b.first_visible_uncertainty_seconds.unwrap())
                .collect(),
            pairs.iter().map(|(_, t)| t.first_visible).collect(),
        ),
    ] {
        let (m50, m95) = (exact_quantile(&est, 0.5), exact_quantile(&est, 0.95));
        let (t50, t95) = (exact_quantile(&tru, 0.5), exact_quantile(&tru, 0.95));
        let covered = est
            .iter()
            .zip(&tru)
            .zip(&unc)
            .filter(|((e, t), u)| (*e - *t).abs() <= *u + 1e-4)
            .count() as f64
            / est.len() as f64;
        eprintln!(
            "{what}, {label}: p50 {:.1} ms (truth {:.1}), p95 {:.1} ms (truth {:.1}); bar \
             covers {:.1} %; {} batches",
            m50 * 1e3,
            t50 * 1e3,
            m95 * 1e3,
            t95 * 1e3,
            covered * 100.0,
            est.len()
        );
        assert!(
            (m50 - t50).abs() <= tolerance(t50),
            "{what}, {label}: p50 {m50} vs truth {t50}"
        );
        assert!(
            jitter_ms > 0 || (m95 - t95).abs() <= tolerance(t95),
            "{what}, {label}: p95 {m95} vs truth {t95}"
        );
        assert!(covered >= 0.95, "{what}, {label}: bar covers {covered}");
    }
    // The exported histogram holds exactly the samples the probe kept.
    assert_eq!(
        s.value(
            "rehab_canary_batch_visible_seconds_count",
            &[("projection", "stream")]
        ),
        samples.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_batch_visibility_matches_ground_truth_at_40ms() {
    accuracy(40, 0, 0).await;
    accuracy(40, 30, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_batch_visibility_matches_ground_truth_at_250ms() {
    accuracy(250, 0, 0).await;
    accuracy(250, 30, 0).await;
    accuracy(250, 50, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_lost_batch_events_equal_the_drops() {
    let (s, samples, truth, sim) = run(
        faults(|f| {
            f.projection_delay_ms = 40;
            f.drop_rate = 0.03;
        }),
        40.0,
    )
    .await;
    let dropped = sim.value("rehab_sim_events_dropped_total", &[]);
    let lost = s.value("rehab_canary_batch_events_lost_total", &[]);
    eprintln!("dropped {dropped}, lost {lost}, {} batches", samples.len());
    assert!(dropped > 0.0, "the fault dropped something");
    assert_eq!(lost, dropped, "lost vs dropped");
    assert_eq!(
        samples.iter().map(|b| b.lost).sum::<u64>() as f64,
        lost,
        "per-batch losses add up"
    );
    // A batch with a dropped event has no full-visibility sample, and the
    // truth agrees it never became whole.
    for b in &samples {
        assert_eq!(b.visible_seconds.is_none(), b.lost > 0, "{b:?}");
        if let Some(t) = truth.get(&*b.event_id) {
            assert_eq!(t.dropped as u64, b.lost, "{b:?} vs {t:?}");
        }
    }
    assert_eq!(s.value("rehab_canary_batch_events_late_total", &[]), 0.0);
}
