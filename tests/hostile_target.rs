//! A target answering reads with huge or endless bodies: every body is cut
//! at `target.max_body_bytes` and counted as `status="body_too_large"`, the
//! budget of bodies held comes back, the daemon's memory stays bounded, and
//! traffic recovers when the target heals.

mod support;

use std::time::{Duration, Instant};

use rehab_canary::client::{bearer, Outcome, TargetClient};
use rehab_canary::config::TargetConfig;
use rehab_canary::sim::{Faults, SimHandle};
use support::process::Proc;
use support::{scrape, scrape_sim, scrape_until, start_sim, with_faults, DEV_TOKEN};

const LIMIT: u64 = 64 * 1024;

fn huge(bytes: u64) -> Faults {
    Faults {
        huge_body_rate: 1.0,
        huge_body_bytes: bytes,
        ..Faults::default()
    }
}

fn client(sim: &SimHandle) -> TargetClient {
    let cfg = TargetConfig {
        base_url: sim.base_url(),
        max_body_bytes: LIMIT,
        timeout: Duration::from_secs(10),
        ..TargetConfig::default()
    };
    let c = TargetClient::new(&cfg).unwrap();
    c.set_auth(Some(bearer(DEV_TOKEN, "test").unwrap()));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sized_and_endless_bodies_are_cut_and_the_budget_comes_back() {
    let sim = start_sim(with_faults(huge(10 << 20))).await;
    let c = client(&sim);
    let read = reqwest::Url::parse(&sim.base_url())
        .unwrap()
        .join("api/v1/projections/work-queue?therapist_id=t-1")
        .unwrap();

    // A Content-Length past the limit is refused before any of it is read.
    let r = c.get(read.clone()).await;
    assert_eq!(r.outcome, Outcome::BodyTooLarge);
    assert!(r.body.is_empty());

    // An endless chunked body is cut at the limit, promptly: nothing waits
    // for an end that never comes.
    sim.set_faults(huge(0));
    let t = Instant::now();
    let r = c.get(read.clone()).await;
    assert_eq!(r.outcome, Outcome::BodyTooLarge);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(r);
    assert_eq!(c.bodies().held(), 0, "a cut body gives its bytes back");

    // Under the limit: read whole, held while the response lives.
    sim.set_faults(huge(LIMIT / 2));
    let r = c.get(read.clone()).await;
    assert_eq!(r.outcome, Outcome::Status(200));
    assert_eq!(r.body.len() as u64, LIMIT / 2);
    assert_eq!(c.bodies().held(), LIMIT / 2);
    drop(r);
    assert_eq!(c.bodies().held(), 0);

    // Exactly at the limit still passes; one byte more does not.
    sim.set_faults(huge(LIMIT));
    assert_eq!(c.get(read.clone()).await.outcome, Outcome::Status(200));
    sim.set_faults(huge(LIMIT + 1));
    assert_eq!(c.get(read.clone()).await.outcome, Outcome::BodyTooLarge);

    // Healed: an ordinary read passes on the same client.
    sim.set_faults(Faults::default());
    let r = c.get(read).await;
    assert_eq!(r.outcome, Outcome::Status(200));
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
    let truth = scrape_sim(&sim).await;
    assert!(truth.value("rehab_sim_faults_injected_total", &[("fault", "huge_body")]) >= 5.0);
    sim.shutdown().await;
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_an_endless_body_target_leaves_memory_bounded_and_traffic_recovers() {
    let sim = start_sim(with_faults(huge(0))).await;
    let dir = tempfile::tempdir().unwrap();
    // Reads-heavy at a modest rate, the default 1 MiB limit: every read
    // streams a body without end until the canary cuts it.
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [target]\nbase_url = \"{}\"\n\
         [traffic]\nevents_per_second = 20\n\
         [traffic.mix]\npatient = 20\ntherapist = 60\nadmin = 20\n\
         [traffic.burst]\nduration = \"0s\"\n",
        sim.base_url()
    );
    let mut proc = Proc::start(&dir, &toml, &[("REHAB_CANARY_TOKEN", DEV_TOKEN)]);
    let pid = proc.id();
    let addr = proc.admin_addr();
    let too_large = |s: &support::Scrape| {
        s.sum(
            "rehab_canary_requests_total",
            &[("status", "body_too_large")],
        )
    };
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        peak = peak.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = scrape(addr).await;
    // 16 bodies of 1 MiB at the most are held at once; the rest is the
    // daemon itself (about 20 MB in a debug build).
    eprintln!("peak RSS {} MB", peak >> 20);
    assert!(peak < 64 << 20, "peak RSS {} MB", peak >> 20);
    assert!(too_large(&s) >= 20.0, "bodies cut: {}", too_large(&s));
    // Writes were never affected.
    assert!(s.sum("rehab_canary_events_accepted_total", &[]) > 0.0);

    sim.set_faults(Faults::default());
    let healed_from = scrape(addr).await;
    let reads_ok = |s: &support::Scrape| {
        s.sum(
            "rehab_canary_requests_total",
            &[("endpoint", "work_queue"), ("status", "200")],
        ) + s.sum(
            "rehab_canary_requests_total",
            &[("endpoint", "alerts"), ("status", "200")],
        )
    };
    let before = reads_ok(&healed_from);
    scrape_until(
        addr,
        "reads answer 200 again",
        Duration::from_secs(15),
        |s| reads_ok(s) > before + 5.0,
    )
    .await;
    proc.sigterm();
    let (code, _) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    sim.shutdown().await;
}
