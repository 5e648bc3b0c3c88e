//! Process metrics (`process_*`), read from `/proc/self` on each scrape.
//!
//! prometheus-client has no process collector, so this is a small one with the
//! names and semantics of the Go and Python clients, which dashboards expect:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`. It only works on Linux; anything that cannot be
//! read is skipped (the series is absent), never a panic or a failed scrape.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/*/stat` times. The kernel reports these in
/// USER_HZ, which is 100 on every architecture Linux still ships for; reading
/// `sysconf(_SC_CLK_TCK)` would need `unsafe` FFI, which this crate forbids.
/// (The Go client's procfs makes the same assumption.)
const USER_HZ: f64 = 100.0;

/// Collector registered in the registry; holds the start time, which does not change.
#[derive(Debug)]
pub struct ProcessCollector {
    start_time_seconds: Option<f64>,
}

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector {
            start_time_seconds: start_time_seconds(),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// Fields of `/proc/self/stat` we need.
#[derive(Debug, PartialEq)]
struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted from
/// the *last* `)`.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    // After ")": field 3 (state) is at index 0, so field N is at index N-3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks: field(22)?,
    })
}

/// Value in bytes of a `Key:   123 kB` line of `/proc/self/status`.
fn status_kb(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// Soft limit of "Max open files" in `/proc/self/limits` (None if unlimited).
fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
}

/// `btime` (boot time, Unix seconds) from `/proc/stat`.
fn parse_btime(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn start_time_seconds() -> Option<f64> {
    let from_proc = || {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(btime + stat.start_ticks as f64 / USER_HZ)
    };
    // Off Linux, "now" at collector creation is within moments of process start.
    from_proc().or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64())
    })
}

fn open_fds() -> Option<f64> {
    // Counts the directory's own fd too, like the Go client does.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

/// One scrape's worth of readings; each is `None` when it could not be read.
#[derive(Debug, Default)]
struct Readings {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

fn read() -> Readings {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s));
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    Readings {
        cpu_seconds: stat.map(|s| (s.utime_ticks + s.stime_ticks) as f64 / USER_HZ),
        resident_bytes: status.as_deref().and_then(|s| status_kb(s, "VmRSS")),
        virtual_bytes: status.as_deref().and_then(|s| status_kb(s, "VmSize")),
        open_fds: open_fds(),
        max_fds: limits.as_deref().and_then(parse_max_fds),
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: Option<f64>,
) -> std::fmt::Result {
    if let Some(v) = v {
        let g = ConstGauge::new(v);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = read();
        if let Some(cpu) = r.cpu_seconds {
            let c = ConstCounter::new(cpu);
            // Registered without `_total`; the OpenMetrics encoder appends it.
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            r.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            r.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors.",
            r.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            r.max_fds,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        // comm "(a b) c)" contains spaces and a ')'.
        let line = "1234 ((a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 98765 12345678 456 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime_ticks: 250,
                stime_ticks: 75,
                start_ticks: 98765
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_status_limits_and_btime() {
        let status = "Name:\tx\nVmSize:\t  2048 kB\nVmRSS:\t    512 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(512.0 * 1024.0));
        assert_eq!(status_kb(status, "VmSize"), Some(2048.0 * 1024.0));
        assert_eq!(status_kb(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        assert_eq!(
            parse_max_fds("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(parse_btime("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn readings_are_plausible_on_linux() {
        let r = read();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after epoch")
            .as_secs_f64();
        assert!(r.cpu_seconds.expect("cpu") >= 0.0);
        let rss = r.resident_bytes.expect("rss");
        assert!(rss > 100_000.0 && rss < 64e9, "{rss}");
        assert!(r.virtual_bytes.expect("vsz") >= rss);
        let fds = r.open_fds.expect("fds");
        assert!(fds >= 3.0, "{fds}");
        assert!(r.max_fds.expect("max fds") >= fds);
        let start = ProcessCollector::new().start_time_seconds.expect("start");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start} vs {now}"
        );
    }
}
