//! `rehab-canary healthcheck` as a process against real sockets: exit 0 for a
//! live daemon (address from --url, --config or the environment; https when
//! the web config has TLS), 1 with one line on stderr for a closed port, a 503,
//! a server that never answers, an untrusted certificate; 64 for bad usage.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rehab_canary::app::Daemon;
use support::certs::write_server_cert;
use support::{daemon_config, free_port, start_daemon as start, write};

struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs `rehab-canary healthcheck ARGS` with `env` and no other
/// `REHAB_CANARY__*` variable, off the async workers.
async fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehab-canary"));
        cmd.arg("healthcheck").args(&args);
        for (k, _) in std::env::vars() {
            if k.starts_with("REHAB_CANARY__") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env);
        let start = Instant::now();
        let out = cmd.output().expect("runs rehab-canary healthcheck");
        Run {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: start.elapsed(),
        }
    })
    .await
    .unwrap()
}

fn assert_healthy(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{what}: {}", run.stderr);
}

/// Exit 1 and one line on stderr that names the URL and contains `why`.
fn assert_unhealthy(run: &Run, url: &str, why: &str) {
    assert_eq!(run.code, Some(1), "{url}: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("rehab-canary healthcheck: ")
            && run.stderr.contains(url)
            && run.stderr.contains(why),
        "want {url} and {why:?} in: {}",
        run.stderr
    );
}

async fn start_daemon(web: Option<PathBuf>) -> Daemon {
    let mut cfg = daemon_config();
    cfg.server.web_config_file = web;
    cfg.traffic.events_per_second = 2.0;
    start(cfg).await
}

/// A server that answers every request with `response`, or (None) accepts
/// and never answers.
fn canned_server(response: Option<&'static str>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in l.incoming().map_while(Result::ok) {
            let Some(response) = response else {
                held.push(conn);
                continue;
            };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(response.as_bytes());
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_daemon_is_healthy_by_url_config_or_environment() {
    let daemon = start_daemon(None).await;
    let port = daemon.admin_addr().port();
    let dir = tempfile::tempdir().unwrap();

    let url = format!("http://127.0.0.1:{port}");
    assert_healthy(&healthcheck(&["--url", &url], &[]).await, "--url");
    let full = format!("{url}/-/healthy");
    assert_healthy(&healthcheck(&["--url", &full], &[]).await, "full --url");

    // The container's way: server.listen opened to every interface, probed
    // on loopback; from a file, and from the environment alone.
    let cfg = write(
        dir.path(),
        "canary.toml",
        &format!("[server]\nlisten = \"0.0.0.0:{port}\"\n"),
    );
    let cfg = cfg.to_str().unwrap();
    assert_healthy(&healthcheck(&["--config", cfg], &[]).await, "--config");
    let listen = format!("0.0.0.0:{port}");
    assert_healthy(
        &healthcheck(&[], &[("REHAB_CANARY__SERVER__LISTEN", &listen)]).await,
        "environment",
    );
    // The environment wins over the file, as for `run`.
    let other = format!("127.0.0.1:{}", free_port());
    let run = healthcheck(
        &["--config", cfg],
        &[("REHAB_CANARY__SERVER__LISTEN", &other)],
    )
    .await;
    assert_unhealthy(&run, &other, "refused");

    assert!(daemon.shutdown().await);
    // Stopped: the same check now fails.
    let run = healthcheck(&["--url", &url], &[]).await;
    assert_unhealthy(&run, &url, "refused");
}

#[tokio::test]
async fn a_closed_port_a_503_and_silence_are_unhealthy() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let run = healthcheck(&["--url", &closed], &[]).await;
    assert_unhealthy(&run, &closed, "Connection refused");

    let busy = canned_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    let url = format!("http://{busy}/-/healthy");
    let run = healthcheck(&["--url", &url], &[]).await;
    assert_unhealthy(&run, &url, "503 Service Unavailable");

    // Only a 200 is healthy: a redirect is not followed.
    let moved = canned_server(Some(
        "HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    let url = format!("http://{moved}/-/healthy");
    let run = healthcheck(&["--url", &url], &[]).await;
    assert_unhealthy(&run, &url, "302");

    let silent = canned_server(None);
    let url = format!("http://{silent}/-/healthy");
    let run = healthcheck(&["--url", &url, "--timeout", "300ms"], &[]).await;
    assert_unhealthy(&run, &url, "no answer within 300ms");
    assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_config_gives_https_and_an_explicit_url_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    write_server_cert(dir.path(), &["127.0.0.1", "localhost"]);
    let crt = dir.path().join("server.crt");
    // Basic auth too: /-/healthy needs no credentials.
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {}\n",
            bcrypt::hash("pw", 4).unwrap()
        ),
    );
    let daemon = start_daemon(Some(web.clone())).await;
    let port = daemon.admin_addr().port();

    let cfg = write(
        dir.path(),
        "canary.toml",
        &format!(
            "[server]\nlisten = \"0.0.0.0:{port}\"\nweb_config_file = \"{}\"\n",
            web.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    assert_healthy(&healthcheck(&["--config", cfg], &[]).await, "--config");
    // A web config given to `run` on its command line is given here too.
    let bare = write(
        dir.path(),
        "bare.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let (bare, web) = (bare.to_str().unwrap(), web.to_str().unwrap());
    assert_healthy(
        &healthcheck(&["--config", bare, "--web.config.file", web], &[]).await,
        "--web.config.file",
    );
    let run = healthcheck(&["--config", bare], &[]).await;
    assert_eq!(run.code, Some(1), "plain http to the TLS port");

    let url_tls = format!("https://127.0.0.1:{port}");
    let run = healthcheck(&["--url", &url_tls], &[]).await;
    assert_unhealthy(&run, &url_tls, "certificate");
    let crt = crt.to_str().unwrap();
    assert_healthy(
        &healthcheck(&["--url", &url_tls, "--cacert", crt], &[]).await,
        "--cacert",
    );
    assert_healthy(
        &healthcheck(&["--url", &url_tls, "--insecure"], &[]).await,
        "--insecure",
    );

    assert!(daemon.shutdown().await);
}

#[tokio::test]
async fn bad_usage_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let port0 = write(
        dir.path(),
        "port0.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n",
    );
    let bad = write(dir.path(), "bad.toml", "[server]\nlisten = \"nowhere\"\n");
    let cases: [(&[&str], &str); 6] = [
        (&["--url", "127.0.0.1:8742"], "--url"),
        (&["--url", "ftp://127.0.0.1/"], "http or https"),
        (&["--config", port0.to_str().unwrap()], "port 0"),
        (&["--config", bad.to_str().unwrap()], "server.listen"),
        (&["--timeout", "soon"], "--timeout"),
        (&["--insecure"], "--url"),
    ];
    for (args, why) in cases {
        let run = healthcheck(args, &[]).await;
        assert_eq!(run.code, Some(64), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
    }
}
