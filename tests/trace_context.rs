//! W3C Trace Context on every request the canary sends, as the reference
//! API received it (`/sim/traces`): a valid `traceparent` on traffic, lag
//! probes and health checks alike, a fresh trace id each time, and the
//! sampled flag that `tracing.sampled` says.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use rehab_canary::sim::SimConfig;
use support::stack::start_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_a_fresh_traceparent_with_the_configured_flag() {
    for sampled in [true, false] {
        let (sim, daemon) = start_stack(SimConfig::default(), |cfg| {
            cfg.tracing.sampled = sampled;
            cfg.traffic.events_per_second = 50.0;
        })
        .await;
        // Traffic (events and reads), the lag probes' POSTs and reads, and
        // the health poll all reach the reference API.
        let seen = support::eventually(
            "requests of every kind",
            Duration::from_secs(20),
            || async {
                let t = sim.traces();
                let n = |route: &str| t.get(route).map_or(0, Vec::len);
                (n("events_create") >= 20 && n("health") >= 1 && n("patient_stream") >= 1)
                    .then_some(t)
            },
        )
        .await;
        assert!(daemon.shutdown().await);
        sim.shutdown().await;

        let mut ids = HashSet::new();
        let mut total = 0;
        for (route, requests) in &seen {
            for r in requests {
                let id = r
                    .trace_id
                    .as_deref()
                    .unwrap_or_else(|| panic!("{route}: a request without a valid traceparent"));
                assert_eq!(r.sampled, Some(sampled), "{route}");
                ids.insert(id.to_owned());
                total += 1;
            }
        }
        assert_eq!(ids.len(), total, "a trace id was reused");
    }
}
