//! What the target says about its own load, against the reference API's
//! ground truth: backpressure (429, 503, Retry-After waits) counted per
//! endpoint exactly as the service answered them, and the detail route's
//! queue depth and processors as gauges.

mod support;

use std::time::Duration;

use rehab_canary::api::Endpoint;
use rehab_canary::app::Daemon;
use rehab_canary::config::Config;
use rehab_canary::metrics::backpressure::KINDS;
use rehab_canary::sim::{Faults, SimHandle};
use support::metrics::{metrics_text, sample};
use support::stack::{faults, start_stack, with_faults};

/// Traffic only: no lag probe posts or reads beside it.
fn traffic_only(cfg: &mut Config) {
    for p in rehab_canary::lag::Projection::ALL {
        cfg.lag.probes[p].enabled = false;
    }
    cfg.lag.probes.batch.enabled = false;
    cfg.circuit_breaker.enabled = false;
    cfg.traffic.events_per_second = 100.0;
    cfg.traffic.journeys.rep_interval = Duration::from_millis(20);
}

/// Stops the traffic and waits until nothing is in flight.
async fn quiet(daemon: &Daemon, cfg: &Config) {
    let mut q = cfg.clone();
    q.traffic.events_per_second = 0.0;
    daemon.set_traffic(&q);
    daemon.stop_for_drain();
    tokio::time::timeout(Duration::from_secs(10), daemon.quiesced())
        .await
        .expect("traffic drains");
}

async fn sim_count(sim: &SimHandle, route: &str, status: u16) -> f64 {
    let c = reqwest::Client::new();
    let text = metrics_text(&c, &sim.base_url()).await;
    sample(
        &text,
        &format!("rehab_sim_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_counts_what_the_service_answered() {
    // Ingestion capped at 20 events/s (503 beyond), then also 20 % of
    // every API request answered 429 with Retry-After: 1 (which holds the
    // traffic back, so the cap comes first).
    let capped = faults(|f| f.max_events_per_second = 20);
    let mut used = Config::default();
    let (sim, daemon) = start_stack(with_faults(capped.clone()), |cfg| {
        traffic_only(cfg);
        used = cfg.clone();
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.set_faults(Faults {
        rate_limit_rate: 0.2,
        retry_after_s: 1,
        ..capped
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    quiet(&daemon, &used).await;

    let m = &daemon.metrics().backpressure;
    let text = daemon.metrics().encode();
    let canary = |ep: &str, kind: &str| {
        sample(
            &text,
            &format!("rehab_canary_backpressure_total{{endpoint=\"{ep}\",kind=\"{kind}\"}}"),
        )
    };
    let mut total_429 = 0.0;
    for ep in Endpoint::ALL.iter().filter(|e| **e != Endpoint::Health) {
        let name = ep.as_str();
        assert_eq!(
            canary(name, "429"),
            sim_count(&sim, name, 429).await,
            "{name} 429"
        );
        assert_eq!(
            canary(name, "503"),
            sim_count(&sim, name, 503).await,
            "{name} 503"
        );
        total_429 += canary(name, "429");
    }
    assert!(
        canary("events_create", "503") > 0.0,
        "the cap never answered 503"
    );
    assert!(total_429 > 0.0, "no 429 in the run");
    // Every 429 of the reference API carries Retry-After: each was waited out.
    assert_eq!(m.total(2) as f64, total_429);
    assert_eq!(KINDS, ["429", "503", "retry_after"]);
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_detail_follows_the_services_queue_depth() {
    // A stalled pipeline: accepted events pile up in the queue.
    let mut used = Config::default();
    let (sim, daemon) = start_stack(with_faults(Faults::default()), |cfg| {
        traffic_only(cfg);
        cfg.target.detail_interval = Duration::from_millis(100);
        cfg.target
            .detail_fields
            .insert("missing".into(), "/no/such/field".into());
        used = cfg.clone();
    })
    .await;
    sim.set_faults(faults(|f| f.stall_projector = true));
    tokio::time::sleep(Duration::from_secs(1)).await;
    quiet(&daemon, &used).await;

    let c = reqwest::Client::new();
    let detail: serde_json::Value = c
        .get(format!("{}/health/detailed", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let depth = detail["queue"]["depth"].as_f64().unwrap();
    let processors = detail["pipeline"]["processors"].as_f64().unwrap();
    assert!(depth > 10.0, "the stalled queue holds {depth}");
    // Stalled and quiet, the depth no longer moves: the next polls read it.
    let series = |field: &str| format!("rehab_canary_target_detail{{field=\"{field}\"}}");
    support::eventually(
        "the gauge reads the queue depth",
        Duration::from_secs(5),
        || async {
            let text = daemon.metrics().encode();
            (sample(&text, &series("queue_depth")) == depth).then_some(())
        },
    )
    .await;
    let text = daemon.metrics().encode();
    assert_eq!(sample(&text, &series("processors")), processors);
    assert!(
        text.contains("rehab_canary_target_detail{field=\"missing\"} NaN"),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "rehab_canary_target_detail_errors_total{reason=\"field\"}"
        ) > 0.0,
        "a pointer that finds nothing is counted"
    );
    assert_eq!(
        sample(
            &text,
            "rehab_canary_target_detail_errors_total{reason=\"request\"}"
        ),
        0.0
    );
    sim.set_faults(Faults::default());
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}
