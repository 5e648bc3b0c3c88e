//! Lag probe outcomes against the reference API's faults: losses counted at
//! the drop rate, duplicates detected, stalls shown as lag or as lost-then-
//! late, no false duplicates or losses across a restart, and unreadable read
//! bodies counted as errors. They measure lag, so they run in the nextest
//! `serial` group.

mod support;

use std::time::Duration;

use rehab_canary::lag::Projection;
use rehab_canary::sim::Faults;
use support::lag::*;
use support::{scrape, scrape_sim, scrape_until, Scrape};

/// Events whose run is over: in time, lost, unreadable or rejected.
fn resolved(s: &Scrape, p: &str) -> f64 {
    // `late` is also in `samples` and in `lost`; count it once.
    samples(s, p) - failures(s, p, "late")
        + failures(s, p, "lost")
        + failures(s, p, "error")
        + failures(s, p, "rejected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_lost_fraction_follows_the_drop_rate() {
    let sim = start_sim(faults(|f| f.drop_rate = 0.1), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5)
    })
    .await;
    let probes = ["stream", "adherence", "quality"];
    let daemon = start_daemon(config(&sim, &probes, |c| {
        c.lag.interval = Duration::from_millis(20);
        c.lag.timeout = Duration::from_millis(500);
        c.lag.probes[Projection::Stream].route =
            Some("api/v1/patients/{patient}/stream?limit=20".into());
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = scrape_until(
        addr,
        "enough resolved probes",
        Duration::from_secs(30),
        |s| {
            let total: f64 = probes.iter().map(|p| resolved(s, p)).sum();
            total >= 1200.0
        },
    )
    .await;
    daemon.shutdown().await;
    let truth = scrape_sim(&sim).await;
    sim.shutdown().await;
    let (mut lost, mut total) = (0.0, 0.0);
    for p in probes {
        lost += failures(&s, p, "lost");
        total += resolved(&s, p);
        for f in ["error", "rejected", "late"] {
            assert_eq!(failures(&s, p, f), 0.0, "{p} {f}");
        }
        // A dropped event leaves a gap, never a reordering or a duplicate.
        assert_eq!(per(&s, "rehab_canary_events_out_of_order_total", p), 0.0);
        assert_eq!(per(&s, "rehab_canary_events_duplicated_total", p), 0.0);
    }
    let fraction = lost / total;
    eprintln!("lost {lost} of {total} resolved probes: {fraction:.3}");
    assert!(
        (fraction - 0.1).abs() <= 0.03,
        "lost fraction {fraction:.3} ({lost}/{total})"
    );
    // Never more losses than the simulator really dropped.
    assert!(lost <= truth.value("rehab_sim_events_dropped_total", &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_duplicates_are_detected() {
    let sim = start_sim(faults(|f| f.duplicate_rate = 0.3), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5)
    })
    .await;
    let daemon = start_daemon(config(&sim, &["stream"], |c| {
        c.lag.interval = Duration::from_millis(50);
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = scrape_until(addr, "duplicates detected", Duration::from_secs(20), |s| {
        per(s, "rehab_canary_events_duplicated_total", "stream") >= 10.0
    })
    .await;
    daemon.shutdown().await;
    let truth = scrape_sim(&sim).await;
    sim.shutdown().await;
    let dups = per(&s, "rehab_canary_events_duplicated_total", "stream");
    assert!(dups <= truth.value("rehab_sim_events_duplicated_total", &[]));
    assert_eq!(failures(&s, "stream", "lost"), 0.0);
    assert_eq!(
        per(&s, "rehab_canary_events_out_of_order_total", "stream"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_stall_within_the_timeout_shows_as_lag_not_loss() {
    let sim = start_sim(Faults::default(), |_| {}).await;
    let probes = ["stream", "adherence", "quality"];
    let daemon = start_daemon(config(&sim, &probes, |c| {
        c.lag.interval = Duration::from_millis(200);
        c.lag.timeout = Duration::from_secs(10);
    }))
    .await;
    let addr = daemon.admin_addr();
    scrape_until(addr, "probes measuring", Duration::from_secs(10), |s| {
        probes.iter().all(|p| samples(s, p) >= 2.0)
    })
    .await;
    sim.set_faults(faults(|f| f.stall_projector = true));
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.set_faults(Faults::default());
    let s = scrape_until(addr, "the stall measured", Duration::from_secs(15), |s| {
        probes.iter().all(|p| {
            // Events that waited out the stall landed above 2 s.
            let under_2s = s.value(
                "rehab_canary_projection_lag_seconds_bucket",
                &[("projection", p), ("le", "2.0")],
            );
            samples(s, p) - under_2s >= 1.0
        })
    })
    .await;
    for p in probes {
        let last = s.value(
            "rehab_canary_projection_lag_seconds_bucket",
            &[("projection", p), ("le", "5.0")],
        );
        assert_eq!(last, samples(&s, p), "{p}: a lag above the 3 s stall");
        no_failures(&s, p, "");
    }
    daemon.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_stall_past_the_timeout_is_lost_then_late() {
    let sim = start_sim(Faults::default(), |_| {}).await;
    let probes = ["stream", "adherence"];
    let daemon = start_daemon(config(&sim, &probes, |c| {
        c.lag.interval = Duration::from_millis(200);
        c.lag.timeout = Duration::from_secs(1);
        c.lag.late_poll_interval = Duration::from_millis(100);
    }))
    .await;
    let addr = daemon.admin_addr();
    sim.set_faults(faults(|f| f.stall_projector = true));
    let stalled = scrape_until(addr, "losses while stalled", Duration::from_secs(10), |s| {
        probes.iter().all(|p| failures(s, p, "lost") >= 3.0)
    })
    .await;
    for p in probes {
        assert_eq!(failures(&stalled, p, "late"), 0.0, "{p}: nothing late yet");
    }
    sim.set_faults(Faults::default());
    let s = scrape_until(
        addr,
        "every lost event late",
        Duration::from_secs(10),
        |s| {
            probes
                .iter()
                .all(|p| failures(s, p, "late") == failures(s, p, "lost"))
        },
    )
    .await;
    for p in probes {
        let late = failures(&s, p, "late");
        assert!(late >= 3.0, "{p}: {late} late");
        // A late event's lag is recorded too, and it is past the timeout.
        let over_timeout = samples(&s, p)
            - s.value(
                "rehab_canary_projection_lag_seconds_bucket",
                &[("projection", p), ("le", "1.0")],
            );
        assert!(over_timeout >= late, "{p}: {over_timeout} samples over 1 s");
        // They appeared in order, all at once: no reordering, no copies.
        assert_eq!(per(&s, "rehab_canary_events_out_of_order_total", p), 0.0);
        assert_eq!(per(&s, "rehab_canary_events_duplicated_total", p), 0.0);
        assert_eq!(failures(&s, p, "error"), 0.0);
    }
    daemon.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_restart_fakes_no_duplicates_or_losses() {
    let sim = start_sim(Faults::default(), |c| {
        c.pipeline.batch_timeout = Duration::from_millis(5)
    })
    .await;
    let probes = ["stream", "adherence", "quality"];
    let cfg = config(&sim, &probes, |c| {
        c.lag.interval = Duration::from_millis(50);
    });
    for run in 0..2 {
        let daemon = start_daemon(cfg.clone()).await;
        let addr = daemon.admin_addr();
        let s = scrape_until(addr, "probes measuring", Duration::from_secs(15), |s| {
            probes.iter().all(|p| samples(s, p) >= 20.0)
        })
        .await;
        for p in probes {
            // The second run reads streams full of the first run's markers.
            assert_eq!(
                per(&s, "rehab_canary_events_duplicated_total", p),
                0.0,
                "run {run} {p}"
            );
            assert_eq!(
                per(&s, "rehab_canary_events_out_of_order_total", p),
                0.0,
                "run {run} {p}"
            );
            no_failures(&s, p, &format!("run {run}"));
        }
        daemon.shutdown().await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_garbage_reads_count_as_errors_not_losses() {
    let sim = start_sim(faults(|f| f.garbage_rate = 1.0), |_| {}).await;
    let probes = ["stream", "adherence", "quality"];
    let daemon = start_daemon(config(&sim, &probes, |c| {
        c.lag.interval = Duration::from_millis(100);
        c.lag.timeout = Duration::from_millis(300);
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = scrape_until(addr, "errors counted", Duration::from_secs(15), |s| {
        probes.iter().all(|p| failures(s, p, "error") >= 5.0)
    })
    .await;
    for p in probes {
        assert_eq!(failures(&s, p, "lost"), 0.0, "{p}");
        assert_eq!(samples(&s, p), 0.0, "{p}: nothing can be seen");
    }
    // Reads heal: the probes measure again, and nothing was lost.
    sim.set_faults(faults(|f| f.garbage_rate = 0.3));
    let s = scrape_until(addr, "lag measured again", Duration::from_secs(15), |s| {
        probes.iter().all(|p| samples(s, p) >= 5.0)
    })
    .await;
    for p in probes {
        assert_eq!(failures(&s, p, "lost"), 0.0, "{p}");
    }
    let healthy = reqwest::get(format!("http://{addr}/-/healthy"))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    daemon.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_hanging_target_holds_at_most_the_poll_bound_open_per_probe() {
    // Every answer takes 3 s: polls start at each POST's send and nothing
    // comes back for the first 3 s, while a new probe event starts every
    // 50 ms. The probe's reads in flight never pass its bound.
    let sim = start_sim(faults(|f| f.response_delay_ms = 3000), |_| {}).await;
    let daemon = start_daemon(config(&sim, &["stream"], |c| {
        c.lag.interval = Duration::from_millis(50);
        c.lag.timeout = Duration::from_secs(10);
        c.lag.poll_max_in_flight = 8;
    }))
    .await;
    let addr = daemon.admin_addr();
    let s = scrape_until(addr, "the bound filled", Duration::from_secs(2), |s| {
        per(s, "rehab_canary_lag_probe_reads_total", "stream") >= 8.0
    })
    .await;
    assert!(per(&s, "rehab_canary_lag_probes_total", "stream") >= 2.0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Still within the first answer's 3 s: not one read has come back.
    let s = scrape(addr).await;
    assert_eq!(per(&s, "rehab_canary_lag_probe_reads_total", "stream"), 8.0);
    // Many events started meanwhile, each wanting polls of its own.
    assert!(per(&s, "rehab_canary_lag_probes_total", "stream") >= 10.0);
    daemon.shutdown().await;
    sim.shutdown().await;
}
