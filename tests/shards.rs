//! Sharding without a coordinator: three `rehab-canary run` processes with
//! `shard.index` 0..2 and `shard.total` 3 against one reference API. Their
//! summed rate is the configured total, their subjects are disjoint, and the
//! reference API accepted exactly what the shards say it accepted.

mod support;

use std::time::Duration;

use rehab_canary::sim::SimConfig;
use support::process::Proc;
use support::stack::config_toml;
use support::{scrape, scrape_sim, start_sim, Scrape, DEV_TOKEN};
use tokio::time::Instant;

const TOTAL_RATE: f64 = 150.0;

fn sent(s: &Scrape) -> f64 {
    s.sum("rehab_canary_events_sent_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_three_shards_share_the_rate_and_stay_disjoint() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    for index in 0..3 {
        let sub = dir.path().join(format!("shard{index}"));
        std::fs::create_dir_all(&sub).unwrap();
        let toml = config_toml(
            &sim,
            &format!(
                "[traffic]\nevents_per_second = {TOTAL_RATE}\n[traffic.burst]\nduration = \"0s\"\n\
                 [traffic.journeys]\nrep_interval = \"50ms\"\npatients = 50\n\
                 [lag.probes.stream]\nenabled = false\n[lag.probes.adherence]\nenabled = false\n\
                 [lag.probes.quality]\nenabled = false\n[lag.probes.work_queue]\nenabled = false\n\
                 [lag.probes.batch]\nenabled = false\n"
            ),
        );
        let index_s = index.to_string();
        let env = [
            ("REHAB_CANARY_TOKEN", DEV_TOKEN),
            ("REHAB_CANARY__SHARD__INDEX", index_s.as_str()),
            ("REHAB_CANARY__SHARD__TOTAL", "3"),
        ];
        let tmp = tempfile::TempDir::new_in(&sub).unwrap();
        let mut proc = Proc::start(&tmp, &toml, &env);
        let addr = proc.admin_addr();
        shards.push((proc, addr, tmp));
    }
    for (_, addr, _) in &shards {
        let s = scrape(*addr).await;
        assert_eq!(s.value("rehab_canary_target_events_per_second", &[]), 50.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut before = Vec::new();
    for (_, addr, _) in &shards {
        before.push(scrape(*addr).await);
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut total = 0.0;
    for ((_, addr, _), s0) in shards.iter().zip(&before) {
        let s1 = scrape(*addr).await;
        total += sent(&s1) - sent(s0);
    }
    let rate = total / t0.elapsed().as_secs_f64();
    assert!(
        (rate - TOTAL_RATE).abs() / TOTAL_RATE < 0.02,
        "aggregate {rate:.1} events/s, configured {TOTAL_RATE}"
    );
    // Each shard announces itself and writes only in its own namespace.
    let client = reqwest::Client::new();
    for (index, (_, addr, _)) in shards.iter().enumerate() {
        let s = scrape(*addr).await;
        let info = [("index", index.to_string()), ("total", "3".to_owned())];
        let labels: Vec<(&str, &str)> = info.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(s.value("rehab_canary_shard_info", &labels), 1.0);
        // What RehabCanaryShardMissing compares the reporting shards with.
        assert_eq!(s.value("rehab_canary_shards_configured", &[]), 3.0);
        let stream = client
            .get(format!(
                "{}/api/v1/patients/canary-s{index}-p000000/stream",
                sim.base_url()
            ))
            .bearer_auth(DEV_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200, "shard {index} wrote its namespace");
        let body: serde_json::Value = stream.json().await.unwrap();
        let text = body.to_string();
        for other in (0..3).filter(|o| *o != index) {
            assert!(
                !text.contains(&format!("canary-s{other}-")),
                "shard {other} leaked into shard {index}"
            );
        }
    }
    let unsharded = client
        .get(format!(
            "{}/api/v1/patients/canary-p000000/stream",
            sim.base_url()
        ))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .unwrap();
    assert_ne!(
        unsharded.status(),
        200,
        "no shard uses the unsharded namespace"
    );

    // Stop every shard (drained), then compare tallies with the ground truth.
    let mut accepted = 0.0;
    for (mut proc, _, _) in shards {
        proc.sigterm();
        let (code, log) = proc.wait(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        let summary = log
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "stopped")
            .expect("a final tally");
        accepted += summary["events_accepted"].as_f64().unwrap();
    }
    // Probes are off here, so every event the sim accepted came from a shard.
    let truth = scrape_sim(&sim).await;
    assert_eq!(
        truth.value("rehab_sim_events_accepted_total", &[]),
        accepted
    );
    sim.shutdown().await;
}
