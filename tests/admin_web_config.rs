//! The daemon's admin server behind a web config, over real sockets: HTTPS
//! with basic auth (scrapes need the right credentials, probes do not, plain
//! HTTP to the TLS port fails), client certificates, and `check-config`
//! validating the web config.

use std::path::{Path, PathBuf};

mod support;

use rehab_canary::app::Daemon;
use rehab_canary::config::Config;
use rehab_canary::sim::{SimConfig, SimHandle};
use support::certs::{write_ca_and_client_cert, write_server_cert};
use support::process::{canary, run};
use support::{daemon_config_for, dev_token_file, start_daemon, start_sim};

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";

struct Certs {
    dir: tempfile::TempDir,
    server_pem: String,
}

impl Certs {
    /// A self-signed server certificate for 127.0.0.1 in a temp dir.
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let server_pem = write_server_cert(dir.path(), &["127.0.0.1", "localhost"]);
        dev_token_file(dir.path());
        Certs { server_pem, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_web(&self, yaml: &str) -> PathBuf {
        let p = self.path("web.yml");
        std::fs::write(&p, yaml).unwrap();
        p
    }
}

/// A web config with TLS and one user (bcrypt cost 4 keeps the test fast).
fn tls_and_auth_yaml() -> String {
    format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(PASSWORD, 4).unwrap()
    )
}

async fn start_stack(certs: &Certs, web: &Path) -> (SimHandle, Daemon) {
    let sim = start_sim(SimConfig::default()).await;
    let mut cfg = daemon_config_for(&sim, certs.path("token"));
    cfg.server.web_config_file = Some(web.to_path_buf());
    cfg.traffic.events_per_second = 5.0;
    let daemon = start_daemon(cfg).await;
    (sim, daemon)
}

fn trusting_client(certs: &Certs) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs.server_pem.as_bytes()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_basic_auth_guards_everything_but_probes() {
    let certs = Certs::new();
    let web = certs.write_web(&tls_and_auth_yaml());
    let (sim, daemon) = start_stack(&certs, &web).await;
    let base = format!("https://127.0.0.1:{}", daemon.admin_addr().port());
    let client = trusting_client(&certs).build().unwrap();

    // The right credentials scrape, twice (the second from the cache).
    for _ in 0..2 {
        let resp = client
            .get(format!("{base}/metrics"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("https scrape");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-frame-options"], "deny");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("rehab_canary_build_info"));
    }

    // No credentials, wrong password, unknown user: 401 with a challenge.
    let attempts = [
        client.get(format!("{base}/metrics")),
        client
            .get(format!("{base}/metrics"))
            .basic_auth(USER, Some("wrong")),
        client
            .get(format!("{base}/status"))
            .basic_auth("mallory", Some(PASSWORD)),
        client.get(format!("{base}/")),
        // Mutating routes always need auth, even on a probe path.
        client.post(format!("{base}/-/healthy")),
        client.post(format!("{base}/-/reload")),
        // The deploy verdict and its marker are admin routes like the rest.
        client.get(format!("{base}/api/v1/verdict?since=0")),
        client
            .post(format!("{base}/-/deploy"))
            .body(r#"{"version":"v1"}"#),
    ];
    for req in attempts {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{}", resp.url());
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic"), "{challenge}");
        assert_eq!(resp.headers()["x-frame-options"], "deny");
    }

    // With credentials, a deploy is recorded and the verdict answers.
    let resp = client
        .post(format!("{base}/-/deploy"))
        .basic_auth(USER, Some(PASSWORD))
        .body(r#"{"version":"v1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("{base}/api/v1/verdict?since=last-deploy"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Probes need no secret.
    for path in ["/-/healthy", "/-/ready"] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/-/healthy",
            daemon.admin_addr().port()
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain http was answered: {plain:?}");

    // A client that does not trust the certificate cannot connect.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .is_err());

    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_configured() {
    let certs = Certs::new();
    // A CA that signs the client's certificate.
    let (_, client_pem) = write_ca_and_client_cert(certs.dir.path(), "scraper");
    let web = certs.write_web(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let (sim, daemon) = start_stack(&certs, &web).await;
    let url = format!("https://127.0.0.1:{}/metrics", daemon.admin_addr().port());

    let anonymous = trusting_client(&certs).build().unwrap();
    assert!(anonymous.get(&url).send().await.is_err());

    let identity = reqwest::Identity::from_pem(client_pem.as_bytes()).unwrap();
    let with_cert = trusting_client(&certs).identity(identity).build().unwrap();
    let resp = with_cert.get(&url).send().await.expect("mTLS scrape");
    assert_eq!(resp.status(), 200);

    assert!(daemon.shutdown().await);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_web_config_stops_the_start_naming_the_key() {
    let certs = Certs::new();
    let web =
        certs.write_web("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n");
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.server.web_config_file = Some(web);
    let err = Daemon::start(cfg).await.err().expect("start refused");
    assert!(
        err.to_string().contains("tls_server_config.cert_file"),
        "{err}"
    );
}

#[test]
fn check_config_validates_the_web_config() {
    let certs = Certs::new();
    let cfg = certs.path("canary.toml");
    std::fs::write(&cfg, "").unwrap();
    let check = |web: &Path| {
        run(canary(&["check-config", "--config"])
            .arg(&cfg)
            .arg("--web.config.file")
            .arg(web))
    };
    check(&certs.write_web(&tls_and_auth_yaml())).assert_success("check-config");

    let bad = check(&certs.write_web(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_versoin: TLS12\nbasic_auth_users:\n  alice: hunter2\n",
    ));
    assert_eq!(bad.code, Some(64));
    let err = &bad.stderr;
    assert!(
        err.contains("tls_server_config.min_versoin: unknown key"),
        "{err}"
    );
    assert!(err.contains("basic_auth_users.alice"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // The same file named in the daemon config is checked too.
    std::fs::write(
        &cfg,
        format!(
            "[server]\nweb_config_file = \"{}\"\n",
            certs.path("web.yml").display()
        ),
    )
    .unwrap();
    let out = run(canary(&["check-config", "--config"]).arg(&cfg));
    assert_eq!(out.code, Some(64));
}
