//! Lag probes against the reference API's ground truth: measured p50 and p95
//! within max(5 ms, 10 %) of the exact true lags at two projection delays,
//! probes running with no load traffic at all, and the lag shown in
//! `/status` and on the landing page. These measure lag, so they run in the
//! nextest `serial` group.

mod lag_support;
mod support;

use std::time::Duration;

use lag_support::*;
use rehab_canary::sim::Faults;
use support::{eventually, scrape};

/// Runs each per-patient probe alone (so the simulator's truth is that
/// probe's events only: probes sharing a pipeline batch have different true
/// lags) with `projection_delay_ms = delay_ms` until it has `n` samples, then
/// compares its p50 and p95 with the exact true ones.
async fn accuracy(delay_ms: u64, interval_ms: u64, n: f64) {
    for p in ["stream", "adherence", "quality"] {
        let sim = start_sim(
            Faults {
                projection_delay_ms: delay_ms,
                ..Faults::default()
            },
            |_| {},
        )
        .await;
        let daemon = start_daemon(config(&sim, &[p], |c| {
            c.lag.interval = Duration::from_millis(interval_ms);
        }))
        .await;
        let addr = daemon.admin_addr();
        let s = eventually("enough lag samples", Duration::from_secs(20), || async {
            let s = scrape(addr).await;
            (samples(&s, p) >= n).then_some(s)
        })
        .await;
        daemon.shutdown().await;
        let truth = sim.recent_lags();
        sim.shutdown().await;
        assert!(truth.len() as f64 >= n, "{} true lags", truth.len());
        let (t50, t95) = (exact_quantile(&truth, 0.5), exact_quantile(&truth, 0.95));
        for f in ["lost", "error", "rejected", "late"] {
            assert_eq!(failures(&s, p, f), 0.0, "{p} {f}");
        }
        let m50 = window(&s, p, "0.5").expect("p50");
        let m95 = window(&s, p, "0.95").expect("p95");
        eprintln!(
            "projection_delay_ms {delay_ms}, {p}: p50 {:.1} ms (truth {:.1}), p95 {:.1} ms \
             (truth {:.1}); {} samples, {} true lags",
            m50 * 1e3,
            t50 * 1e3,
            m95 * 1e3,
            t95 * 1e3,
            samples(&s, p),
            truth.len()
        );
        assert!(
            (m50 - t50).abs() <= tolerance(t50),
            "{p} p50 {m50} vs truth {t50}"
        );
        assert!(
            (m95 - t95).abs() <= tolerance(t95),
            "{p} p95 {m95} vs truth {t95}"
        );
        // End to end includes the POST, so it is never below the lag.
        let e2e = per(&s, "rehab_canary_projection_lag_end_to_end_seconds_sum", p);
        let lag = per(&s, "rehab_canary_projection_lag_seconds_sum", p);
        assert!(e2e >= lag, "{p}: end to end {e2e} < lag {lag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_lag_matches_ground_truth_at_40ms() {
    accuracy(40, 100, 50.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_lag_matches_ground_truth_at_250ms() {
    accuracy(250, 100, 40.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_probes_run_without_traffic_and_show_in_status_and_page() {
    let sim = start_sim(Faults::default(), |_| {}).await;
    let daemon = start_daemon(config(&sim, &PROJECTIONS, |c| {
        c.lag.interval = Duration::from_millis(200);
        c.lag.probes.work_queue.interval = Some(Duration::from_millis(300));
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = eventually("every probe measured", Duration::from_secs(20), || async {
        let s = scrape(addr).await;
        PROJECTIONS
            .iter()
            .all(|p| samples(&s, p) >= 3.0)
            .then_some(s)
    })
    .await;
    // No load traffic at all: every event the target saw is a probe's.
    assert_eq!(s.sum("rehab_canary_events_sent_total", &[]), 0.0);
    for p in PROJECTIONS {
        assert!(per(&s, "rehab_canary_lag_probes_total", p) >= 3.0, "{p}");
        for f in ["lost", "error", "rejected"] {
            assert_eq!(failures(&s, p, f), 0.0, "{p} {f}");
        }
        assert_eq!(per(&s, "rehab_canary_events_duplicated_total", p), 0.0);
        assert_eq!(per(&s, "rehab_canary_events_out_of_order_total", p), 0.0);
    }
    assert!(
        s.text.contains(
            "rehab_canary_projection_lag_seconds_bucket{le=\"0.1\",projection=\"stream\"}"
        ),
        "bucket bounds"
    );
    assert!(
        s.text.contains("# {event_id=\""),
        "exemplars carry the event id"
    );

    let status: serde_json::Value = reqwest::get(format!("http://{addr}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lag = &status["extras"]["lag"];
    for (i, p) in PROJECTIONS.iter().enumerate() {
        let row = &lag["projections"][i];
        assert_eq!(row["projection"], *p);
        assert!(row["last_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p50_seconds"].as_f64().is_some(), "{row}");
        assert!(row["p95_seconds"].as_f64().is_some(), "{row}");
        assert_eq!(row["lost_last_minute"], 0);
    }
    let page = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>lag</h2>"), "{page}");
    assert!(page.contains("<td>work_queue</td><td>"), "{page}");

    daemon.shutdown().await;
    // The work-queue probe cleans up after itself: no alert stays open for
    // longer than a probe cycle.
    let alerts: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/alerts", sim.base_url()))
        .bearer_auth("dev-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(alerts["count"].as_u64().unwrap() <= 2, "{alerts}");
    sim.shutdown().await;
}
