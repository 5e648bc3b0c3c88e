//! A daemon run as a real process (`rehab-canary run`) with JSON logs
//! captured, for tests of signals, logs and several instances at once; and
//! any program (the binary's one-off commands, external tools) run to its end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Proc {
    /// Starts `rehab-canary run` with `toml` as its config and JSON logs.
    pub fn start(dir: &tempfile::TempDir, toml: &str, env: &[(&str, &str)]) -> Proc {
        Self::start_args(dir, toml, env, &[])
    }

    /// Like [`Proc::start`], with more arguments after `run --config FILE`.
    pub fn start_args(
        dir: &tempfile::TempDir,
        toml: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Proc {
        let path = dir.path().join("canary.toml");
        std::fs::write(&path, toml).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehab-canary"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .args(args)
            .env("REHAB_CANARY__LOG__FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for the log line that carries the admin address.
    pub fn admin_addr(&mut self) -> SocketAddr {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("daemon logs its admin address");
            self.log.push(line.clone());
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if let Some(addr) = v.get("addr").and_then(|a| a.as_str()) {
                if v["message"].as_str().unwrap_or("").contains("admin server") {
                    return addr.parse().unwrap();
                }
            }
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for exit (at most `limit`), returning the code and every log line.
    pub fn wait(&mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(l);
                }
                return (status.code(), std::mem::take(&mut self.log));
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not exit within {limit:?}");
            }
            while let Ok(l) = self.lines.try_recv() {
                self.log.push(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A failed assertion must not leave a daemon running behind the test.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rehab-canary` with these first arguments, to add to and [`run`].
pub fn canary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehab-canary"));
    cmd.args(args);
    cmd
}

/// A program run to its end: its exit code and its output as text.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Asserts that it exited 0, quoting its stderr; `what` names the run.
    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.code, Some(0), "{what} failed:\n{}", self.stderr);
    }
}

/// Runs `cmd` to its end with its output captured.
pub fn run(cmd: &mut Command) -> Ran {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a tool the test needs in the repository's root: whether it exited
/// 0, and its stdout and stderr together. When it cannot run, panics saying
/// how to `install` it.
pub fn tool(cmd: &str, args: &[&str], install: &str) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(super::root())
        .output()
        .unwrap_or_else(|e| {
            panic!("{cmd} is required ({install}; scripts/test.sh installs it): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
