//! Unit tests of the metric families: names and types in the exposition,
//! pre-created series, hot-path label mapping, windows and snapshot.

use super::*;
use crate::client::trace::TraceId;

fn metrics() -> Metrics {
    Metrics::new(BuildInfo {
        version: "1.2.3",
        revision: "abc123",
    })
}

/// The value of the sample line that starts with `series` (name + labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

fn req(ep: &str, status: &str) -> String {
    format!("rehab_canary_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}}")
}

#[test]
fn exposition_has_every_contract_name_with_its_type() {
    let text = metrics().encode();
    let want = [
        ("rehab_canary_requests", "counter"),
        ("rehab_canary_request_duration_seconds", "histogram"),
        ("rehab_canary_events_sent", "counter"),
        ("rehab_canary_events_accepted", "counter"),
        ("rehab_canary_iterations_dropped", "counter"),
        ("rehab_canary_schedule_delay_seconds", "histogram"),
        ("rehab_canary_target_events_per_second", "gauge"),
        ("rehab_canary_burst_active", "gauge"),
        ("rehab_canary_in_flight_requests", "gauge"),
        ("rehab_canary_request_latency_window_seconds", "summary"),
        ("rehab_canary_build_info", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ];
    for (name, ty) in want {
        let line = format!("# TYPE {name} {ty}\n");
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    // Sample names as dashboards query them.
    for prefix in [
        "rehab_canary_requests_total{",
        "rehab_canary_events_sent_total{",
        "rehab_canary_events_accepted_total{",
        "rehab_canary_iterations_dropped_total{",
        "rehab_canary_request_duration_seconds_bucket{",
        "rehab_canary_schedule_delay_seconds_bucket{",
        "rehab_canary_target_events_per_second ",
        "rehab_canary_burst_active ",
        "rehab_canary_in_flight_requests ",
        "process_cpu_seconds_total ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no sample {prefix:?}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "rehab_canary_build_info{version=\"1.2.3\",revision=\"abc123\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn known_series_exist_at_zero_from_the_start() {
    let text = metrics().encode();
    for ep in Endpoint::ALL {
        let name = ep.as_str();
        let success = ep.success_status().to_string();
        for status in [
            success.as_str(),
            "429",
            "500",
            "503",
            "timeout",
            "connect_error",
            "io_error",
        ] {
            assert_eq!(
                sample(&text, &req(name, status)),
                Some(0.0),
                "{name} {status}"
            );
        }
        let count = format!("rehab_canary_request_duration_seconds_count{{endpoint=\"{name}\"}}");
        assert_eq!(sample(&text, &count), Some(0.0));
    }
    let request_series = text
        .lines()
        .filter(|l| l.starts_with("rehab_canary_requests_total{"))
        .count();
    assert_eq!(request_series, 7 * Endpoint::ALL.len());
    assert!(request_series < 100);
    for kind in EventKind::ALL {
        for fam in ["sent", "accepted"] {
            let s = format!(
                "rehab_canary_events_{fam}_total{{kind=\"{}\"}}",
                kind.as_str()
            );
            assert_eq!(sample(&text, &s), Some(0.0), "{s}");
        }
    }
    for reason in ["max_in_flight", "circuit_open", "paused", "rate_limited"] {
        let s = format!("rehab_canary_iterations_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &s), Some(0.0), "{s}");
    }
    assert_eq!(sample(&text, "rehab_canary_in_flight_requests"), Some(0.0));
    assert_eq!(sample(&text, "rehab_canary_burst_active"), Some(0.0));
    // No request yet: no window quantile series (absent, not NaN or 0).
    assert!(!text.contains("rehab_canary_request_latency_window_seconds{"));
}

#[test]
fn histogram_buckets_contain_the_slo_thresholds_exactly() {
    let text = metrics().encode();
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0",
        "+Inf",
    ] {
        let s = format!(
            "rehab_canary_request_duration_seconds_bucket{{le=\"{le}\",endpoint=\"events_create\"}}"
        );
        assert_eq!(sample(&text, &s), Some(0.0), "{s}");
    }
    for le in ["0.0001", "0.001", "1.0"] {
        let s = format!("rehab_canary_schedule_delay_seconds_bucket{{le=\"{le}\"}}");
        assert_eq!(sample(&text, &s), Some(0.0), "{s}");
    }
}

#[test]
fn hot_path_counters_map_to_the_right_labels() {
    let m = metrics();
    let cases: &[(Endpoint, Outcome, &str)] = &[
        (Endpoint::EventsCreate, Outcome::Status(201), "201"),
        (Endpoint::EventsCreate, Outcome::Status(201), "201"),
        (Endpoint::PatientStream, Outcome::Status(200), "200"),
        (Endpoint::PatientStream, Outcome::Timeout, "timeout"),
        (Endpoint::Quality, Outcome::ConnectError, "connect_error"),
        (Endpoint::Alerts, Outcome::IoError, "io_error"),
        (Endpoint::WorkQueue, Outcome::Status(503), "503"),
        // Cached but not pre-created: appears on first use.
        (Endpoint::WorkQueue, Outcome::Status(502), "502"),
    ];
    for (ep, outcome, _) in cases {
        m.record_request(*ep, *outcome, Duration::from_millis(30), TraceId(1));
    }
    let text = m.encode();
    assert_eq!(sample(&text, &req("events_create", "201")), Some(2.0));
    for (ep, _, status) in &cases[2..] {
        assert_eq!(
            sample(&text, &req(ep.as_str(), status)),
            Some(1.0),
            "{ep:?} {status}"
        );
    }
    // Nothing leaked onto neighbouring series.
    assert_eq!(sample(&text, &req("events_batch", "201")), Some(0.0));
    assert_eq!(sample(&text, &req("patient_stream", "503")), Some(0.0));
    let bucket =
        "rehab_canary_request_duration_seconds_bucket{le=\"0.05\",endpoint=\"events_create\"}";
    assert_eq!(sample(&text, bucket), Some(2.0));
    let bucket =
        "rehab_canary_request_duration_seconds_bucket{le=\"0.025\",endpoint=\"events_create\"}";
    assert_eq!(sample(&text, bucket), Some(0.0));
}

#[test]
fn unusual_status_codes_create_a_series() {
    let m = metrics();
    assert!(!m.encode().contains("status=\"418\""));
    m.record_request(
        Endpoint::Health,
        Outcome::Status(418),
        Duration::from_millis(1),
        TraceId(1),
    );
    m.record_request(
        Endpoint::Health,
        Outcome::Status(418),
        Duration::from_millis(1),
        TraceId(1),
    );
    let text = m.encode();
    assert_eq!(sample(&text, &req("health", "418")), Some(2.0));
    // And it counts as an error in the window.
    let s = m.snapshot();
    let health = &s.endpoints[Endpoint::Health.index()];
    assert_eq!(
        (health.name, health.requests, health.errors),
        ("health", 2, 2)
    );
}

#[test]
fn error_classification() {
    let cases = [
        (Outcome::Status(200), false),
        (Outcome::Status(201), false),
        (Outcome::Status(304), false),
        (Outcome::Status(399), false),
        (Outcome::Status(199), true),
        (Outcome::Status(400), true),
        (Outcome::Status(429), true),
        (Outcome::Status(503), true),
        (Outcome::Timeout, true),
        (Outcome::ConnectError, true),
        (Outcome::IoError, true),
    ];
    for (outcome, is_error) in cases {
        assert_eq!(outcome.is_error(), is_error, "{outcome:?}");
    }
}

#[test]
fn cache_labels_match_codes() {
    for (i, code) in CACHED_CODES.iter().enumerate() {
        assert_eq!(cache_index(Outcome::Status(*code)), Some(i));
        assert_eq!(CACHED_LABELS[i], code.to_string());
    }
    assert_eq!(cache_index(Outcome::Status(418)), None);
    assert_eq!(status_label(Outcome::Status(418)), "418");
    assert_eq!(status_label(Outcome::Timeout), "timeout");
}

#[test]
fn gauges_events_drops_and_delay() {
    let m = metrics();
    m.set_target_rate(125.5);
    m.set_burst_active(true);
    m.event_sent(EventKind::RepObservation);
    m.event_sent(EventKind::RepObservation);
    m.event_accepted(EventKind::RepObservation);
    m.iteration_dropped(DropReason::MaxInFlight);
    m.iteration_dropped(DropReason::Paused);
    m.record_schedule_delay(Duration::from_micros(300));
    let text = m.encode();
    assert_eq!(
        sample(&text, "rehab_canary_target_events_per_second"),
        Some(125.5)
    );
    assert_eq!(sample(&text, "rehab_canary_burst_active"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "rehab_canary_events_sent_total{kind=\"rep_observation\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "rehab_canary_events_accepted_total{kind=\"rep_observation\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "rehab_canary_events_sent_total{kind=\"feedback\"}"),
        Some(0.0)
    );
    for (reason, n) in [
        ("max_in_flight", 1.0),
        ("paused", 1.0),
        ("circuit_open", 0.0),
    ] {
        let s = format!("rehab_canary_iterations_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &s), Some(n), "{reason}");
    }
    assert_eq!(
        sample(
            &text,
            "rehab_canary_schedule_delay_seconds_bucket{le=\"0.00025\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "rehab_canary_schedule_delay_seconds_bucket{le=\"0.0005\"}"
        ),
        Some(1.0)
    );
    m.set_burst_active(false);
    assert_eq!(sample(&m.encode(), "rehab_canary_burst_active"), Some(0.0));
}

fn assert_static_send<T: Send + 'static>(_: &T) {}

#[test]
fn in_flight_guard_is_static_and_decrements_on_drop() {
    let m = metrics();
    let a = m.in_flight();
    let b = m.in_flight();
    assert_static_send(&a);
    assert_eq!(m.snapshot().in_flight, 2);
    // The guard outlives any borrow of `m`: it can move into a spawned task.
    let handle = std::thread::spawn(move || drop(b));
    handle.join().expect("thread");
    assert_eq!(m.snapshot().in_flight, 1);
    drop(a);
    assert_eq!(
        sample(&m.encode(), "rehab_canary_in_flight_requests"),
        Some(0.0)
    );
}

#[test]
fn window_quantiles_are_exported_then_rotate_out() {
    let m = metrics();
    for v in 1..=100u64 {
        let outcome = if v > 98 {
            Outcome::Status(500)
        } else {
            Outcome::Status(201)
        };
        m.record_request(
            Endpoint::EventsCreate,
            outcome,
            Duration::from_millis(v),
            TraceId(1),
        );
    }
    let text = m.encode();
    let q = |quantile: &str| {
        sample(
            &text,
            &format!(
                "rehab_canary_request_latency_window_seconds{{endpoint=\"events_create\",quantile=\"{quantile}\"}}"
            ),
        )
    };
    for (quantile, want) in [
        ("0.5", 0.050),
        ("0.95", 0.095),
        ("0.99", 0.099),
        ("0.999", 0.100),
    ] {
        let got = q(quantile).unwrap_or_else(|| panic!("no {quantile} in\n{text}"));
        assert!(
            (got - want).abs() / want < 0.01,
            "{quantile}: {got} vs {want}"
        );
    }
    // Only the endpoint with traffic has series.
    assert!(!text.contains("latency_window_seconds{endpoint=\"patient_stream\""));
    let s = m.snapshot();
    let ev = &s.endpoints[0];
    assert_eq!((ev.name, ev.requests, ev.errors), ("events_create", 100, 2));
    assert!((ev.p99.expect("p99") - 0.099).abs() < 0.001);
    for _ in 0..SLOTS {
        m.rotate_windows();
    }
    let text = m.encode();
    assert!(!text.contains("rehab_canary_request_latency_window_seconds{"));
    let ev = &m.snapshot().endpoints[0];
    assert_eq!((ev.requests, ev.errors, ev.p50), (0, 0, None));
    // The counters, unlike the window, are cumulative.
    assert_eq!(sample(&text, &req("events_create", "201")), Some(98.0));
}

#[test]
fn snapshot_reports_achieved_rates_over_the_window() {
    let m = metrics();
    let t0 = Instant::now();
    m.set_target_rate(50.0);
    // 10 s at 50 sent/s, 40 accepted/s, then rotate; then 10 s more.
    for round in 1..=2u32 {
        for i in 0..500 {
            m.event_sent(EventKind::RepObservation);
            if i % 5 != 0 {
                m.event_accepted(EventKind::RepObservation);
            }
        }
        if round == 1 {
            m.rotate_windows_at(t0 + Duration::from_secs(10));
        }
    }
    // `RateWindow` starts at construction, a hair before t0; tolerate that.
    let s = m.snapshot_at(t0 + Duration::from_secs(20));
    assert!(
        (s.achieved_events_per_second.sent - 50.0).abs() < 0.1,
        "{s:?}"
    );
    assert!(
        (s.achieved_events_per_second.accepted - 40.0).abs() < 0.1,
        "{s:?}"
    );
    assert_eq!(s.target_events_per_second, 50.0);
    assert_eq!(s.window_seconds, 60.0);
    assert_eq!(s.endpoints.len(), Endpoint::ALL.len());
    let json = serde_json::to_value(&s).expect("serializes");
    assert_eq!(json["endpoints"][0]["name"], "events_create");
    assert!(json["endpoints"][0]["p50"].is_null());
}

#[test]
fn registry_is_extensible_before_sharing() {
    let mut m = metrics();
    let g: Gauge = Gauge::default();
    m.exposition_mut().registry.register(
        "rehab_canary_lag_test",
        "A family registered by another module.",
        g.clone(),
    );
    g.set(7);
    assert_eq!(sample(&m.encode(), "rehab_canary_lag_test"), Some(7.0));
}
