//! Admin router tests through `tower::ServiceExt::oneshot`, with no socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::api::Endpoint;
use crate::client::trace::TraceId;
use crate::client::Outcome;
use crate::metrics::{BuildInfo, Metrics};

fn state(target: &str) -> AdminState {
    let metrics = Metrics::new(BuildInfo {
        version: "9.9.9",
        revision: "deadbeef",
    });
    AdminState::new(
        Arc::new(metrics),
        Arc::new(RuntimeInfo::new("9.9.9", target)),
    )
}

/// Sends one request; returns status, content type and body.
async fn call(state: &AdminState, method: Method, uri: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        ctype,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

async fn get(state: &AdminState, uri: &str) -> (StatusCode, String, String) {
    call(state, Method::GET, uri).await
}

/// `/metrics` with an `Accept` header: status, content type, raw body.
async fn scrape(state: &AdminState, accept: Option<&str>) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::builder().uri("/metrics");
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = router(state.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let ctype = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body");
    (status, ctype, body.to_vec())
}

#[tokio::test]
async fn metrics_route_negotiates_text_openmetrics_and_protobuf() {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
    use prost::Message;

    let s = state("http://localhost:8080");
    s.metrics.record_request(
        Endpoint::EventsCreate,
        Outcome::Status(201),
        Duration::from_millis(5),
        TraceId(0xfeed),
    );
    let series = "rehab_canary_requests_total{endpoint=\"events_create\",status=\"201\"} 1";
    let exemplar = "# {trace_id=\"0000000000000000000000000000feed\"} 0.005";

    // No Accept (curl), or the classic format asked for: text 0.0.4, no exemplars.
    for accept in [None, Some("text/plain;version=0.0.4")] {
        let (code, ctype, body) = scrape(&s, accept).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        assert!(body.contains(series), "{body}");
        assert!(body.contains("# TYPE rehab_canary_requests_total counter"));
        assert!(!body.contains(" # {"), "exemplar in text 0.0.4");
        assert!(!body.contains("# EOF"));
        assert!(body.contains("# TYPE rehab_canary_request_latency_window_seconds summary"));
    }

    // OpenMetrics: exemplars and `# EOF`, after the summaries.
    let (_, ctype, body) = scrape(&s, Some("application/openmetrics-text;version=1.0.0")).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.contains(series));
    assert!(body.contains(exemplar), "{body}");
    assert!(body.contains("rehab_canary_build_info{version=\"9.9.9\",revision=\"deadbeef\"} 1"));
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(body.matches("# EOF").count(), 1);

    // Protobuf (Prometheus with native histograms): decodable, native
    // buckets and the exemplar on the classic bucket.
    let (_, ctype, body) = scrape(
        &s,
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
    )
    .await;
    assert!(
        ctype.starts_with("application/vnd.google.protobuf"),
        "{ctype}"
    );
    let mut buf = &body[..];
    let mut families = std::collections::HashMap::new();
    while !buf.is_empty() {
        let f = pb::MetricFamily::decode_length_delimited(&mut buf).expect("decodes");
        families.insert(f.name.clone(), f);
    }
    let latency = &families["rehab_canary_request_duration_seconds"];
    assert_eq!(latency.r#type, pb::MetricType::Histogram as i32);
    let h = latency
        .metric
        .iter()
        .find(|m| m.label[0].value == "events_create")
        .and_then(|m| m.histogram.as_ref())
        .unwrap();
    assert_eq!((h.sample_count, h.schema), (1, 3));
    assert_eq!(h.positive_delta, vec![1]);
    let ex = h.bucket.iter().find_map(|b| b.exemplar.as_ref()).unwrap();
    assert_eq!(ex.label[0].value, "0000000000000000000000000000feed");
    let window = &families["rehab_canary_request_latency_window_seconds"];
    assert_eq!(window.r#type, pb::MetricType::Summary as i32);
    assert!(families.contains_key("rehab_canary_requests_total"));
}

#[tokio::test]
async fn healthy_is_always_ok_and_ready_follows_the_flag() {
    let s = state("embedded");
    // Liveness does not depend on readiness (nor on the target).
    assert_eq!(get(&s, "/-/healthy").await.0, StatusCode::OK);
    assert_eq!(get(&s, "/-/healthy").await.2, "OK");
    let (code, _, body) = get(&s, "/-/ready").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready")
    );
    s.info.set_ready(true);
    assert_eq!(get(&s, "/-/ready").await.0, StatusCode::OK);
    assert_eq!(get(&s, "/-/healthy").await.0, StatusCode::OK);
    s.info.set_ready(false);
    assert_eq!(get(&s, "/-/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn status_is_json_with_snapshot_and_no_secrets() {
    let s = state("https://user:s3cret@api.example.com:8443/v1?token=abc#frag");
    s.info.set_ready(true);
    s.metrics.set_target_rate(42.0);
    s.metrics.record_request(
        Endpoint::PatientStream,
        Outcome::Timeout,
        Duration::from_secs(2),
        TraceId(1),
    );
    let (code, ctype, body) = get(&s, "/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    assert!(
        !body.contains("s3cret") && !body.contains("token=abc"),
        "{body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["version"], "9.9.9");
    assert_eq!(v["target"], "https://api.example.com:8443/v1");
    assert_eq!(v["ready"], true);
    assert_eq!(v["target_events_per_second"], 42.0);
    assert_eq!(v["burst_active"], false);
    assert!(v["achieved_events_per_second"]["sent"].is_number());
    let stream = &v["endpoints"][Endpoint::PatientStream.index()];
    assert_eq!(stream["name"], "patient_stream");
    assert_eq!(
        (stream["requests"].as_u64(), stream["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert!((stream["p50"].as_f64().expect("p50") - 2.0).abs() < 0.05);
    assert!(v.get("extras").is_none(), "empty extras are omitted");
}

struct LagExtra;

impl StatusSection for LagExtra {
    fn key(&self) -> &'static str {
        "lag"
    }
    fn value(&self) -> serde_json::Value {
        serde_json::json!({"stream_p99_seconds": 1.5, "note": "<b>x</b>"})
    }
}

#[tokio::test]
async fn extras_appear_in_status_and_page() {
    let s = state("embedded");
    s.info.add_status_section(Arc::new(LagExtra));
    let v: serde_json::Value = serde_json::from_str(&get(&s, "/status").await.2).expect("json");
    assert_eq!(v["extras"]["lag"]["stream_p99_seconds"], 1.5);
    let page = get(&s, "/").await.2;
    assert!(page.contains("<h2>lag</h2>"));
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"));
}

#[tokio::test]
async fn landing_page_shows_state_and_escapes_the_target() {
    let s = state("http://evil.example/<script>alert('x')</script>\"&");
    s.metrics.set_target_rate(100.0);
    s.metrics.set_burst_active(true);
    let _guard = s.metrics.in_flight();
    s.metrics.record_request(
        Endpoint::Quality,
        Outcome::Status(500),
        Duration::from_millis(120),
        TraceId(1),
    );
    let (code, ctype, page) = get(&s, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ctype, "text/html; charset=utf-8");
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
    assert!(page.contains("rehab-canary 9.9.9"));
    assert!(page.contains("100.0 events/s"));
    assert!(page.contains("<dd>active</dd>"));
    assert!(page.contains("<dt>In flight</dt><dd>1</dd>"));
    // One 120 ms request: p50 is 120 ms within the HDR resolution.
    assert!(
        page.contains("<td>quality</td><td>1</td><td class=\"err\">1</td><td>120."),
        "{page}"
    );
    assert!(
        !page.contains("<td>events_create</td>"),
        "idle endpoints are not listed"
    );
    assert!(page.contains("href=\"metrics\""));
    assert!(
        !page.contains("src=") && !page.contains("<link"),
        "no external assets"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let s = state("embedded");
    assert_eq!(get(&s, "/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&s, Method::POST, "/metrics").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // HEAD works wherever GET does (probes and load balancers use it).
    assert_eq!(call(&s, Method::HEAD, "/-/healthy").await.0, StatusCode::OK);
}

#[tokio::test]
async fn routes_can_be_extended_by_the_wiring() {
    let s = state("embedded");
    let app = routes()
        .route(
            "/-/reload",
            axum::routing::post(|State(st): State<AdminState>| async move {
                st.info.set_ready(true);
                "reloaded"
            }),
        )
        .with_state(s.clone());
    let req = Request::builder()
        .method(Method::POST)
        .uri("/-/reload")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.oneshot(req).await.expect("infallible").status(),
        StatusCode::OK
    );
    assert!(s.info.is_ready());
}

#[test]
fn redacts_secrets_from_targets() {
    let cases = [
        ("embedded", "embedded"),
        ("http://localhost:8080", "http://localhost:8080"),
        (
            "https://api.example.com/base/",
            "https://api.example.com/base/",
        ),
        ("https://u:p@api.example.com/x", "https://api.example.com/x"),
        ("https://u:p@w@api.example.com", "https://api.example.com"),
        ("https://api.example.com?key=1", "https://api.example.com"),
        (
            "https://api.example.com/p?key=1#f",
            "https://api.example.com/p",
        ),
        ("  http://[::1]:80/  ", "http://[::1]:80/"),
        ("embedded?x=y", "embedded"),
    ];
    for (raw, want) in cases {
        assert_eq!(redact_target(raw), want, "{raw}");
    }
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_shuts_down() {
    let s = state("embedded");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(s), async {
        let _ = rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.expect("read");
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.ends_with("OK"));
    let _ = tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shuts down in time")
        .expect("task");
    assert!(res.is_ok());
}
