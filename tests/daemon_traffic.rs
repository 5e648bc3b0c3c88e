//! The daemon in-process against the reference API on ephemeral ports: rate
//! accuracy and mix, bursts on time, drops at the in-flight bound, and latency
//! that shows without lowering the offered rate. These measure rates, so they
//! run in the nextest `serial` group (names start with `serial_`).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rehab_canary::app::Daemon;
use rehab_canary::config::Config;
use rehab_canary::sim::{Faults, SimHandle};
use support::{
    faults, free_port, histogram_quantile, scrape, scrape_over, scrape_sim, scrape_until,
    start_stack, with_faults, Scrape,
};
use tokio::time::Instant;

async fn start(faults: Faults, tweak: impl FnOnce(&mut Config)) -> (SimHandle, Daemon) {
    start_stack(with_faults(faults), |cfg| {
        cfg.traffic.journeys.rep_interval = Duration::from_millis(50);
        tweak(cfg);
    })
    .await
}

fn events_sent(s: &Scrape) -> f64 {
    s.sum("rehab_canary_events_sent_total", &[])
}

fn daemon_totals(s: &Scrape) -> (f64, f64) {
    (
        events_sent(s),
        s.sum("rehab_canary_events_accepted_total", &[]),
    )
}

fn requests(s: &Scrape, endpoint: &str) -> f64 {
    s.sum("rehab_canary_requests_total", &[("endpoint", endpoint)])
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rate_accuracy_and_mix_proportions() {
    let (sim, daemon) = start(Faults::default(), |c| {
        c.traffic.events_per_second = 200.0;
    })
    .await;
    let addr = daemon.admin_addr();
    tokio::time::sleep(Duration::from_secs(2)).await; // past start-up
    let (s0, s1, secs) = scrape_over(addr, Duration::from_secs(10)).await;

    let events = events_sent(&s1) - events_sent(&s0);
    let rate = events / secs;
    assert!(
        (rate - 200.0).abs() / 200.0 < 0.05,
        "achieved {rate:.1} events/s, target 200"
    );
    assert!((s1.value("rehab_canary_target_events_per_second", &[]) - 200.0).abs() < 1e-9);
    // Mix 70/20/10: per 70 event ticks, 20 therapist and 10 admin journeys,
    // each starting with one stream / work-queue read.
    let stream = requests(&s1, "patient_stream") - requests(&s0, "patient_stream");
    let quality = requests(&s1, "quality") - requests(&s0, "quality");
    let queue = requests(&s1, "work_queue") - requests(&s0, "work_queue");
    let alerts = requests(&s1, "alerts") - requests(&s0, "alerts");
    for (name, got, want) in [
        ("patient_stream", stream, events * 20.0 / 70.0),
        ("quality", quality, events * 20.0 / 70.0),
        ("work_queue", queue, events * 10.0 / 70.0),
        ("alerts", alerts, events * 10.0 / 70.0),
    ] {
        assert!(
            (got - want).abs() / want < 0.08,
            "{name}: {got} requests, expected about {want:.0}"
        );
    }
    // Every event was accepted, and the reference API agrees.
    let (sent, accepted) = daemon_totals(&s1);
    assert!(accepted > 0.0 && accepted <= sent);
    assert!(daemon.shutdown().await);
    let truth = scrape_sim(&sim).await;
    assert!(truth.value("rehab_sim_events_accepted_total", &[]) >= accepted);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_bursts_change_the_rate_on_time() {
    // Bursts are aligned to wall-clock multiples of `every`: [0 s, 2 s) of
    // every 4 s period runs at 4x.
    let (sim, daemon) = start(Faults::default(), |c| {
        c.traffic.events_per_second = 50.0;
        c.traffic.burst.every = Duration::from_secs(4);
        c.traffic.burst.duration = Duration::from_secs(2);
        c.traffic.burst.multiplier = 4.0;
    })
    .await;
    let addr = daemon.admin_addr();
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        // The gauge was read somewhere between these two instants; a scrape
        // delayed by a busy machine must not be judged at the wrong phase.
        let before = unix_now();
        let s = scrape(addr).await;
        samples.push((
            before,
            unix_now(),
            events_sent(&s),
            s.value("rehab_canary_burst_active", &[]),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let phase = |t: f64| t.rem_euclid(4.0);
    let within = |a: f64, b: f64, lo: f64, hi: f64| {
        b - a < 1.0 && (lo..hi).contains(&phase(a)) && (lo..hi).contains(&phase(b))
    };
    let (mut in_n, mut in_t, mut out_n, mut out_t) = (0.0, 0.0, 0.0, 0.0);
    let mut judged = 0;
    for w in samples.windows(2) {
        let ((before, ta, na, ga), (before_b, tb, nb, _)) = (w[0], w[1]);
        // The gauge agrees with the wall clock, away from the edges.
        if within(before, ta, 0.25, 1.75) {
            judged += 1;
            assert_eq!(ga, 1.0, "burst gauge off mid-burst at phase {}", phase(ta));
        } else if within(before, ta, 2.25, 3.75) {
            judged += 1;
            assert_eq!(
                ga,
                0.0,
                "burst gauge on outside a burst at phase {}",
                phase(ta)
            );
        }
        // Each count was read inside its scrape: the window runs from the
        // middle of one scrape to the middle of the next, all of it inside
        // one phase.
        let span = ((before + ta) / 2.0, (before_b + tb) / 2.0);
        if within(before, tb, 0.2, 1.8) {
            in_n += nb - na;
            in_t += span.1 - span.0;
        } else if within(before, tb, 2.2, 3.8) {
            out_n += nb - na;
            out_t += span.1 - span.0;
        }
    }
    assert!(
        in_t > 1.0 && out_t > 1.0 && judged >= 10,
        "not enough samples: {in_t} {out_t} {judged}"
    );
    let (burst_rate, base_rate) = (in_n / in_t, out_n / out_t);
    assert!(
        (burst_rate - 200.0).abs() < 50.0,
        "burst rate {burst_rate:.0}/s, expected 200"
    );
    assert!(
        (base_rate - 50.0).abs() < 15.0,
        "base rate {base_rate:.0}/s, expected 50"
    );
    stop(daemon, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_drops_are_counted_when_the_in_flight_bound_is_full() {
    let (sim, daemon) = start(faults(|f| f.latency_ms = 300), |c| {
        c.traffic.events_per_second = 100.0;
        c.traffic.max_in_flight = 4;
    })
    .await;
    let addr = daemon.admin_addr();
    let dropped = |s: &Scrape| {
        s.value(
            "rehab_canary_iterations_dropped_total",
            &[("reason", "max_in_flight")],
        )
    };
    scrape_until(addr, "drops counted", Duration::from_secs(20), |s| {
        dropped(s) > 50.0
    })
    .await;
    let (s0, s1, secs) = scrape_over(addr, Duration::from_secs(3)).await;
    // At most 4 in flight at 300 ms each: about 13 jobs/s go out, the rest of
    // the ~143 ticks/s are dropped, never queued.
    let drop_rate = (dropped(&s1) - dropped(&s0)) / secs;
    assert!(drop_rate > 100.0, "drop rate {drop_rate:.0}/s");
    assert!(s1.value("rehab_canary_in_flight_requests", &[]) <= 4.0);
    let sent_rate = (events_sent(&s1) - events_sent(&s0)) / secs;
    assert!(sent_rate < 20.0, "sent {sent_rate:.0}/s past the bound");
    stop(daemon, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_latency_shows_and_the_offered_rate_holds() {
    let (sim, daemon) = start(faults(|f| f.latency_ms = 300), |c| {
        c.traffic.events_per_second = 50.0;
    })
    .await;
    let addr = daemon.admin_addr();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s0, s1, secs) = scrape_over(addr, Duration::from_secs(6)).await;
    let rate = (events_sent(&s1) - events_sent(&s0)) / secs;
    assert!(
        (rate - 50.0).abs() < 5.0,
        "offered {rate:.1}/s under latency, want 50"
    );
    assert_eq!(
        s1.value(
            "rehab_canary_iterations_dropped_total",
            &[("reason", "max_in_flight")]
        ),
        0.0
    );
    let labels = [("endpoint", "events_create")];
    let p50 = histogram_quantile(&s1, "rehab_canary_request_duration_seconds", &labels, 0.5);
    assert!(p50 >= 0.3, "p50 {p50}");
    let fast = s1.value(
        "rehab_canary_request_duration_seconds_bucket",
        &[("endpoint", "events_create"), ("le", "0.25")],
    );
    assert_eq!(fast, 0.0, "requests faster than the injected latency");
    stop(daemon, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_reported_not_fatal() {
    // A port that was free a moment ago: connections are refused.
    let port = free_port();
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.target.base_url = format!("http://127.0.0.1:{port}");
    cfg.traffic.events_per_second = 20.0;
    let daemon = Daemon::start(cfg).await.expect("starts without a target");
    let addr = daemon.admin_addr();
    scrape_until(
        addr,
        "connect errors counted",
        Duration::from_secs(10),
        |s| {
            s.value(
                "rehab_canary_requests_total",
                &[("endpoint", "events_create"), ("status", "connect_error")],
            ) > 5.0
        },
    )
    .await;
    let ready = reqwest::get(format!("http://{addr}/-/ready"))
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "readiness does not depend on the target"
    );
    assert!(daemon.shutdown().await);
}

/// Stops the daemon (its drain is not judged here), then the reference API.
async fn stop(daemon: rehab_canary::app::Daemon, sim: rehab_canary::sim::SimHandle) {
    daemon.shutdown().await;
    sim.shutdown().await;
}
