//! Batched ingestion as a traffic path, against the reference API's ground
//! truth: a share of sessions arrive as `POST /api/v1/events/batch`, and
//! every event the canary says it sent and had accepted is one the service
//! accepted, singles and batches together.

mod support;

use std::time::Duration;

use rehab_canary::config::{Config, PayloadShape};
use rehab_canary::sim::SimConfig;
use support::metrics::{metrics_text, sample};
use support::stack::start_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_singles_add_up_to_what_the_service_accepted() {
    for shape in [PayloadShape::Envelope, PayloadShape::Flat] {
        let mut used = Config::default();
        let (sim, daemon) = start_stack(SimConfig::default(), |cfg| {
            for p in rehab_canary::lag::Projection::ALL {
                cfg.lag.probes[p].enabled = false;
            }
            cfg.lag.probes.batch.enabled = false;
            cfg.traffic.events_per_second = 200.0;
            cfg.traffic.payload.shape = shape;
            cfg.traffic.batch.share = 0.5;
            cfg.traffic.batch.size.min = 5;
            cfg.traffic.batch.size.max = 20;
            cfg.traffic.journeys.rep_interval = Duration::from_millis(20);
            used = cfg.clone();
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut quiet = used.clone();
        quiet.traffic.events_per_second = 0.0;
        daemon.set_traffic(&quiet);
        daemon.stop_for_drain();
        tokio::time::timeout(Duration::from_secs(10), daemon.quiesced())
            .await
            .expect("traffic drains");

        let canary = daemon.metrics().encode();
        let c = reqwest::Client::new();
        let truth = metrics_text(&c, &sim.base_url()).await;
        let sum = |text: &str, prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let batches = sample(
            &canary,
            "rehab_canary_requests_total{endpoint=\"events_batch\",status=\"201\"}",
        );
        assert!(batches > 0.0, "{shape:?}: no batch was sent");
        assert_eq!(
            batches,
            sample(
                &truth,
                "rehab_sim_requests_total{route=\"events_batch\",status=\"201\"}"
            ),
            "{shape:?}"
        );
        let accepted = sum(&canary, "rehab_canary_events_accepted_total{");
        let sent = sum(&canary, "rehab_canary_events_sent_total{");
        assert_eq!(
            sent, accepted,
            "{shape:?}: a healthy service accepts every event"
        );
        assert_eq!(
            accepted,
            sum(&truth, "rehab_sim_events_accepted_total"),
            "{shape:?}: the canary's count is the service's"
        );
        assert!(daemon.shutdown().await);
        sim.shutdown().await;
    }
}
