//! The results directory: one folder per run, named by its UTC start time and
//! profile (`20261124T150102Z-smoke`), and `--keep` retention as in the
//! seed's `run_tests.sh cleanup`, which removes only run folders this tool
//! wrote (name pattern plus a `summary.json` inside), never anything else.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The summary file every run folder holds.
pub const SUMMARY: &str = "summary.json";
pub const REPORT: &str = "report.html";
/// The daemon's final metrics exposition (OpenMetrics text).
pub const METRICS: &str = "metrics.txt";

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write results to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `2026-11-24T15:01:02Z` → `20261124T150102Z`.
fn compact(rfc3339: &str) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The start time encoded in a run folder's name, if it is one of ours.
fn started_at(name: &str) -> Option<SystemTime> {
    let stamp = name.get(..16)?;
    let b = stamp.as_bytes();
    if b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') || name.as_bytes().get(16) != Some(&b'-')
    {
        return None;
    }
    let full = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    humantime::parse_rfc3339(&full).ok()
}

/// Creates the folder of a run that started at `started` (RFC 3339). A
/// second run in the same second gets a numbered suffix.
pub fn create_run_dir(root: &Path, started: &str, profile: &str) -> Result<PathBuf, ResultsError> {
    let safe: String = profile
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = format!("{}-{safe}", compact(started));
    let err = |path: &Path, source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(root).map_err(|e| err(root, e))?;
    for n in 0..100 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(&dir, e)),
        }
    }
    Err(err(
        root,
        io::Error::new(io::ErrorKind::AlreadyExists, "100 runs in one second"),
    ))
}

pub fn write(dir: &Path, file: &str, contents: &str) -> Result<(), ResultsError> {
    let path = dir.join(file);
    std::fs::write(&path, contents).map_err(|source| ResultsError::Write { path, source })
}

/// Removes run folders under `root` that started more than `keep` before
/// `now`. Returns the removed folders; failures to remove are logged and
/// skipped (retention must never fail a run).
pub fn prune(root: &Path, keep: Duration, now: SystemTime) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(started) = started_at(&name) else {
            continue;
        };
        let is_run = entry.file_type().is_ok_and(|t| t.is_dir()) && path.join(SUMMARY).is_file();
        let old = now.duration_since(started).is_ok_and(|age| age > keep);
        if !(is_run && old) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove old results")
            }
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_round_trip_their_start_time() {
        let t = humantime::parse_rfc3339("2026-11-24T15:01:02Z").unwrap();
        assert_eq!(compact("2026-11-24T15:01:02Z"), "20261124T150102Z");
        assert_eq!(started_at("20261124T150102Z-smoke"), Some(t));
        assert_eq!(started_at("20261124T150102Z-smoke.2"), Some(t));
        for not_ours in [
            "notes",
            "20261124T150102Z",
            "2026-11-24-smoke",
            "20261324T150102Z-x",
            "é",
        ] {
            assert_eq!(started_at(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn a_second_run_in_the_same_second_gets_its_own_folder() {
        let root = tempfile::tempdir().unwrap();
        let a = create_run_dir(root.path(), "2026-11-24T15:01:02Z", "smoke").unwrap();
        let b = create_run_dir(root.path(), "2026-11-24T15:01:02Z", "smoke").unwrap();
        assert_ne!(a, b);
        let c = create_run_dir(root.path(), "2026-11-24T15:01:02Z", "../x y").unwrap();
        assert_eq!(c.parent(), Some(root.path()));
    }
}
