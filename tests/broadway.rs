//! The `broadway` profile against a reference API whose processors are
//! capped: the backpressure phase offers more than they apply, so the
//! service's queue grows and ingestion pushes back with 503. `summary.json`
//! shows both, phase by phase. Rate-sensitive, so `serial_`.

mod support;

use rehab_canary::sim::SimConfig;
use serde_json::Value;
use support::process::{canary, run};
use support::stack::config_toml;
use support::{faults, start_sim, DEV_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_broadway_reports_backpressure_and_a_rising_queue() {
    // The processor applies 40 events/s; its queue holds 120.
    let mut sim_cfg = SimConfig::default();
    sim_cfg.pipeline.queue_capacity = 120;
    sim_cfg.pipeline.processors = 1;
    sim_cfg.pipeline.batch_size = 20;
    let sim = start_sim(sim_cfg).await;
    sim.set_faults(faults(|f| f.apply_events_per_second = 40));
    let dir = tempfile::tempdir().unwrap();
    // 20 events/s (and about 8/s of probes): the backpressure phase offers
    // 68, so the queue grows by some 28/s until it is full. Batches of at
    // most 20 events fit an emptier queue.
    let toml = config_toml(
        &sim,
        // Still inside `[target]`.
        "detail_interval = \"200ms\"\n\
         [traffic.batch.size]\nmin = 5\nmax = 20\n\
         [profiles.broadway]\nevents_per_second = 20\n",
    );
    let cfg = dir.path().join("canary.toml");
    std::fs::write(&cfg, toml).unwrap();
    let results = dir.path().join("results");
    let mut cmd = canary(&["run", "--config"]);
    cmd.arg(&cfg)
        .args(["--profile", "broadway", "--for", "20s", "--results-dir"])
        .arg(&results)
        .env("REHAB_CANARY_TOKEN", DEV_TOKEN);
    let ran = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    assert!(
        matches!(ran.code, Some(0 | 1)),
        "a verdict, not an error:\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    let summary_dir = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .unwrap_or_else(|| panic!("no results line:\n{}", ran.stdout));
    let text = std::fs::read_to_string(format!("{summary_dir}/summary.json")).unwrap();
    let s: Value = serde_json::from_str(&text).unwrap();
    eprintln!("{}", ran.stdout);
    assert_eq!(s["mode"], "broadway");
    let phases = s["broadway"]["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["sustained", "bursts", "ramp", "backpressure"],
        "{s}"
    );
    let (first, last) = (&phases[0], &phases[3]);
    // Batched ingestion in the last two phases.
    assert_eq!(last["batch_share"], 1.0);
    assert_eq!(phases[1]["bursts_as_batches"], true);
    assert_eq!(phases[2]["steps"].as_array().unwrap().len(), 4);
    // The service pushed back, and its queue grew toward its capacity.
    let pushed = last["backpressure"]["503"].as_u64().unwrap();
    assert!(pushed > 0, "no 503 in the backpressure phase: {last}");
    let depth_max = last["queue_depth"]["max"]
        .as_f64()
        .expect("queue depth read");
    let depth_start = first["queue_depth"]["start"]
        .as_f64()
        .expect("queue depth read");
    assert!(
        depth_max >= 50.0 && depth_max > depth_start,
        "queue depth {depth_start} → {depth_max}"
    );
    // Every phase judged against every threshold; the run's rows exist.
    for p in phases {
        let ids: Vec<&str> = p["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        for id in support::THRESHOLD_IDS {
            assert!(ids.contains(&id), "{id} missing in {}", p["name"]);
        }
    }
    assert_eq!(phases[0]["judged"], true);
    assert_eq!(last["judged"], false);
    // The table shows the phases.
    assert!(ran.stdout.contains("backpressure"), "{}", ran.stdout);
    sim.shutdown().await;
}
