//! TLS to a private staging API: the reference API serves https with a
//! certificate from a test CA (and, for mTLS, requires client certificates
//! from another). A trusted private CA passes; an untrusted one, a wrong
//! name, a missing or foreign client certificate fail as `tls_error`, with
//! the reason logged once; a rotated client pair is picked up.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rehab_canary::client::{bearer, Outcome, TargetClient};
use rehab_canary::config::{TargetConfig, TargetTlsConfig};
use rehab_canary::sim::{SimConfig, SimHandle, TlsConfig};
use support::certs::TestCa;
use support::process::Proc;
use support::{scrape_until, start_sim, DEV_TOKEN};

struct Pki {
    dir: tempfile::TempDir,
    server_ca: PathBuf,
    other_ca: PathBuf,
    client_ca: PathBuf,
    client: (PathBuf, PathBuf),
    foreign_client: (PathBuf, PathBuf),
    server: (PathBuf, PathBuf),
}

fn pki(server_names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = TestCa::new("staging CA");
    let client_ca = TestCa::new("canary clients CA");
    let other = TestCa::new("someone else's CA");
    Pki {
        server_ca: server_ca.write(d, "server-ca"),
        other_ca: other.write(d, "other-ca"),
        client_ca: client_ca.write(d, "client-ca"),
        client: client_ca.issue(d, "client", &["rehab-canary"]),
        foreign_client: other.issue(d, "foreign-client", &["rehab-canary"]),
        server: server_ca.issue(d, "server", server_names),
        dir,
    }
}

async fn https_sim(p: &Pki, mtls: bool) -> SimHandle {
    start_sim(SimConfig {
        tls: TlsConfig {
            cert_file: Some(p.server.0.clone()),
            key_file: Some(p.server.1.clone()),
            client_ca_file: mtls.then(|| p.client_ca.clone()),
        },
        ..SimConfig::default()
    })
    .await
}

/// An authorised client of the sim with these TLS settings, and the URL of
/// `path` on it.
fn client(sim: &SimHandle, tls: TargetTlsConfig, path: &str) -> (TargetClient, reqwest::Url) {
    let cfg = TargetConfig {
        base_url: sim.base_url(),
        tls,
        ..TargetConfig::default()
    };
    let c = TargetClient::new(&cfg).unwrap();
    c.set_auth(Some(bearer(DEV_TOKEN, "test").unwrap()));
    let url = reqwest::Url::parse(&sim.base_url())
        .unwrap()
        .join(path)
        .unwrap();
    (c, url)
}

/// One authorised read of the sim through a client built from `tls`.
async fn read(sim: &SimHandle, tls: TargetTlsConfig) -> Outcome {
    let (c, url) = client(sim, tls, "api/v1/projections/work-queue?therapist_id=t-1");
    c.get(url).await.outcome
}

fn trusting(ca: &Path) -> TargetTlsConfig {
    TargetTlsConfig {
        ca_file: Some(ca.to_owned()),
        ..TargetTlsConfig::default()
    }
}

fn with_client(ca: &Path, pair: &(PathBuf, PathBuf)) -> TargetTlsConfig {
    TargetTlsConfig {
        cert_file: Some(pair.0.clone()),
        key_file: Some(pair.1.clone()),
        ..trusting(ca)
    }
}

/// Each TLS setting decides a read: a private CA (beside or instead of the
/// built-in roots) passes, the built-in roots or another CA do not; a
/// certificate for another name passes only with that `server_name`; an
/// mTLS target wants our pair, not none or a foreign one.
/// How a read should end.
#[derive(Debug, Clone, Copy)]
enum Want {
    Served,
    /// Our side refuses the server: `tls_error`, decided in our handshake.
    Untrusted,
    /// The server refuses our client certificate. A TLS 1.3 client learns
    /// it only after its own handshake: the alert arrives in place of the
    /// answer (`tls_error`), or the server's close resets the connection
    /// before the alert is read (`io_error`). Either way nothing is served.
    RefusedByServer,
}

impl Want {
    fn matches(self, got: Outcome) -> bool {
        match self {
            Want::Served => got == Outcome::Status(200),
            Want::Untrusted => got == Outcome::TlsError,
            Want::RefusedByServer => matches!(got, Outcome::TlsError | Outcome::IoError),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_setting_decides_a_read() {
    for (names, mtls) in [
        (&["127.0.0.1", "localhost"][..], false),
        (&["rehab-staging.internal"][..], false),
        (&["127.0.0.1"][..], true),
    ] {
        let p = pki(names);
        let sim = https_sim(&p, mtls).await;
        assert!(sim.base_url().starts_with("https://127.0.0.1:"));
        let (ok, refused, by_server) = (Want::Served, Want::Untrusted, Want::RefusedByServer);
        let ca = || trusting(&p.server_ca);
        let named = |name: &str| TargetTlsConfig {
            server_name: Some(name.to_owned()),
            ..ca()
        };
        let cases = match (names[0], mtls) {
            (_, true) => vec![
                ("our client pair", with_client(&p.server_ca, &p.client), ok),
                ("no client pair", ca(), by_server),
                (
                    "a foreign pair",
                    with_client(&p.server_ca, &p.foreign_client),
                    by_server,
                ),
            ],
            ("rehab-staging.internal", _) => vec![
                ("the address", ca(), refused),
                ("the name", named("rehab-staging.internal"), ok),
                ("another name", named("elsewhere.internal"), refused),
            ],
            _ => vec![
                ("the private CA", ca(), ok),
                (
                    "the private CA alone",
                    TargetTlsConfig {
                        web_roots: false,
                        ..ca()
                    },
                    ok,
                ),
                ("the built-in roots", TargetTlsConfig::default(), refused),
                ("another CA", trusting(&p.other_ca), refused),
            ],
        };
        for (what, tls, want) in cases {
            let got = read(&sim, tls).await;
            assert!(
                want.matches(got),
                "{names:?}: {what}: {got:?}, want {want:?}"
            );
        }
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_pair_is_picked_up_and_a_broken_one_keeps_the_old() {
    let p = pki(&["127.0.0.1"]);
    let sim = https_sim(&p, true).await;
    // Start with the foreign pair in place: refused.
    let dir = p.dir.path();
    let (crt, key) = (dir.join("live.crt"), dir.join("live.key"));
    std::fs::copy(&p.foreign_client.0, &crt).unwrap();
    std::fs::copy(&p.foreign_client.1, &key).unwrap();
    let tls = with_client(&p.server_ca, &(crt.clone(), key.clone()));
    let (c, health) = client(&sim, tls, "health");
    let got = c.get(health.clone()).await.outcome;
    assert!(Want::RefusedByServer.matches(got), "{got:?}");
    let id = c.identity().unwrap();
    assert!(!id.reload_if_changed().unwrap(), "nothing changed yet");

    // A half-written rotation (certificate only) is refused and keeps the
    // running pair; the complete one is picked up.
    std::fs::copy(&p.client.0, &crt).unwrap();
    let err = id.reload_if_changed().unwrap_err().to_string();
    assert!(err.contains("target.tls.key_file"), "{err}");
    std::fs::copy(&p.client.1, &key).unwrap();
    assert!(id.reload_if_changed().unwrap());
    // New connections present the new pair (the refused ones were closed).
    assert_eq!(c.get(health).await.outcome, Outcome::Status(200));
    sim.shutdown().await;
}

#[test]
fn bad_files_are_errors_naming_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let junk = support::write(dir.path(), "junk.pem", "not a certificate\n");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (trusting(&junk), "target.tls.ca_file"),
        (trusting(&missing), "target.tls.ca_file"),
        (
            with_client(&missing, &(junk.clone(), junk.clone())),
            "target.tls.ca_file",
        ),
    ];
    for (tls, key) in cases {
        let cfg = TargetConfig {
            base_url: "https://127.0.0.1:1/".into(),
            tls,
            ..TargetConfig::default()
        };
        let err = TargetClient::new(&cfg).unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }
    let p = pki(&["127.0.0.1"]);
    // A key that is not the certificate's.
    let mismatched = with_client(&p.server_ca, &(p.client.0.clone(), p.server.1.clone()));
    let cfg = TargetConfig {
        base_url: "https://127.0.0.1:1/".into(),
        tls: mismatched,
        ..TargetConfig::default()
    };
    let err = TargetClient::new(&cfg).unwrap_err().to_string();
    assert!(err.starts_with("target.tls.key_file"), "{err}");

    // check-config reads the files as `run` would, and exits 64.
    let toml = format!(
        "[target]\nbase_url = \"https://127.0.0.1:1/\"\n[target.tls]\nca_file = \"{}\"\n",
        junk.display()
    );
    let config = support::write(dir.path(), "canary.toml", &toml);
    let ran = support::process::run(&mut support::process::canary(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(ran.code, Some(64), "{}", ran.stderr);
    assert!(ran.stderr.contains("target.tls.ca_file"), "{}", ran.stderr);
}

/// The traffic's own connections (hyper, not reqwest) speak the same TLS:
/// events reach an mTLS target through a private CA and a client pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_daemons_traffic_reaches_an_mtls_target() {
    let p = pki(&["127.0.0.1"]);
    let sim = https_sim(&p, true).await;
    let mut cfg = support::daemon_config_for(&sim, support::dev_token_file(p.dir.path()));
    cfg.target.tls = with_client(&p.server_ca, &p.client);
    cfg.traffic.events_per_second = 50.0;
    let daemon = rehab_canary::app::Daemon::start(cfg).await.unwrap();
    let s = scrape_until(
        daemon.admin_addr(),
        "events accepted over mTLS",
        Duration::from_secs(15),
        |s| s.sum("rehab_canary_events_accepted_total", &[]) >= 20.0,
    )
    .await;
    assert_eq!(
        s.sum("rehab_canary_requests_total", &[("status", "tls_error")]),
        0.0
    );
    assert!(s.value("rehab_canary_connections_open", &[]) >= 1.0);
    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_daemon_counts_an_untrusted_target_as_tls_error_and_logs_why_once() {
    let p = pki(&["127.0.0.1"]);
    let sim = https_sim(&p, false).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [target]\nbase_url = \"{}\"\n\
         [target.tls]\nca_file = \"{}\"\n\
         [traffic]\nevents_per_second = 20\n\
         [traffic.burst]\nduration = \"0s\"\n",
        sim.base_url(),
        p.other_ca.display()
    );
    let mut proc = Proc::start(&p.dir, &toml, &[("REHAB_CANARY_TOKEN", DEV_TOKEN)]);
    let addr = proc.admin_addr();
    scrape_until(addr, "tls_error counted", Duration::from_secs(15), |s| {
        s.sum("rehab_canary_requests_total", &[("status", "tls_error")]) >= 10.0
    })
    .await;
    proc.sigterm();
    let (code, log) = proc.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    let why: Vec<_> = log
        .iter()
        .filter(|l| l.contains("TLS with the target failed"))
        .collect();
    assert_eq!(why.len(), 1, "logged once: {why:?}");
    assert!(why[0].contains("UnknownIssuer"), "{}", why[0]);
    sim.shutdown().await;
}
