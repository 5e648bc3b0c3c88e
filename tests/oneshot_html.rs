//! The HTML report of a real one-shot run: `rehab-canary run --profile`
//! against the embedded reference API, with bursts, writes a report.html
//! with the three charts, the six threshold rows and burst shading, and
//! headless Chromium renders it. Chromium is required: a missing browser
//! fails the test, it is never skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "embedded"
[profiles.html]
events_per_second = 50
burst_every = "3s"
burst_duration = "1s"
burst_multiplier = 3
"#;

/// Runs `cmd` to completion, killing it after `limit`.
fn run_with_limit(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// The browser: `$CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Command {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "headless Chromium is required to check the HTML report: install Debian's \
         `chromium` (or set CHROMIUM to the browser binary); `{bin} --version` failed"
    );
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        // CI containers often have a tiny /dev/shm.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
    ]);
    cmd
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn serial_report_html_renders_in_headless_chromium() {
    // Fail early, before the run, when there is no browser.
    drop(chromium());

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canary.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let results = dir.path().join("results");
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehab-canary"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--profile", "html", "--for", "7s", "--results-dir"])
        .arg(&results);
    let out = run_with_limit(cmd, Duration::from_secs(60), "rehab-canary run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Pass or fail by thresholds are both fine here; not running is not.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    eprintln!("run took {:?}", started.elapsed());

    let runs: Vec<PathBuf> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let report = runs[0].join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();

    assert!(html.starts_with("<!doctype html>"));
    // Three charts, plus batch latency and the service's queue when the run
    // saw a probe batch and read a queue depth.
    let charts = html.matches("<svg").count();
    assert!((3..=5).contains(&charts), "{charts} charts");
    for title in ["Event rates", "Request latency", "Projection lag"] {
        assert!(html.contains(&format!("<title>{title}")), "chart {title}");
    }
    let table = &html[html.find("<table class=\"thresholds\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    for id in support::THRESHOLD_IDS {
        assert!(
            table.contains(&format!("data-id=\"{id}\"")),
            "threshold row {id}"
        );
    }
    assert_eq!(table.matches("<tr class=").count(), 6);
    // 7 s with a 1 s burst every 3 s: at least one burst, on all charts.
    let shaded = html.matches("class=\"span\"").count();
    assert!(
        shaded >= charts && shaded.is_multiple_of(charts),
        "{shaded} burst spans\n{stdout}"
    );
    assert!(html.contains(">burst</text>"));
    for bad in ["<script", "<link", "src=", "href=", "NaN"] {
        assert!(!html.contains(bad), "{bad} in report.html");
    }

    // The browser parses the page into the same charts and table.
    let mut cmd = chromium();
    cmd.arg("--dump-dom").arg(file_url(&report));
    let dom = run_with_limit(cmd, Duration::from_secs(60), "chromium --dump-dom");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<svg").count(), charts, "parsed DOM:\n{dom}");
    assert!(dom.contains("data-id=\"lost_events\""));

    // And draws it.
    let png = dir.path().join("report.png");
    let mut cmd = chromium();
    cmd.arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(file_url(&report));
    let shot = run_with_limit(cmd, Duration::from_secs(60), "chromium --screenshot");
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\n{}",
            png.display(),
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert_eq!(png_size(&bytes), (1280, 2000));
    // A blank page of that size is a few KB; the charts and tables are far more.
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    eprintln!("whole test took {:?}", started.elapsed());
}
