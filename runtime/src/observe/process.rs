//! The standard Prometheus process metrics, read from `/proc` at each scrape: open file
//! descriptors, resident memory, CPU time and the start time, under the names every
//! Prometheus client gives them.
//!
//! Linux's clock tick for `/proc/*/stat` is `USER_HZ`, 100 on every architecture Linux
//! supports (the kernel converts to it for user space), so it is a constant here rather than a
//! `sysconf` call.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/*/stat`.
const USER_HZ: f64 = 100.0;

/// What one scrape reads of the process; a figure that cannot be read is `None`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sample {
    pub open_fds: Option<i64>,
    pub resident_bytes: Option<i64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl Sample {
    /// The figures of this process now.
    pub(crate) fn read() -> Sample {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(Stat::parse);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(boot_time);
        Sample {
            // Counts the descriptor that lists the directory too, as other clients do.
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| i64::try_from(entries.count()).unwrap_or(i64::MAX)),
            resident_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .as_deref()
                .and_then(resident_bytes),
            cpu_seconds: stat
                .as_ref()
                .map(|stat| (stat.utime + stat.stime) as f64 / USER_HZ),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / USER_HZ),
        }
    }
}

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
}

impl Stat {
    /// Parses `/proc/self/stat`: the fields after the command's closing parenthesis (the
    /// command itself may hold spaces and parentheses).
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        // After the command come field 3 (the state) onwards: utime is field 14, stime 15,
        // starttime 22.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            start_ticks: field(22)?,
        })
    }
}

/// The boot time (seconds since the epoch), from `/proc/stat`'s `btime` line.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The resident set size in bytes, from `/proc/self/status`'s `VmRSS` line (in kB).
fn resident_bytes(text: &str) -> Option<i64> {
    let line = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kilobytes: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kilobytes.checked_mul(1024)
}

/// Encodes the process metrics of a fresh [`Sample`] at each scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        encode_known(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            sample.open_fds.map(ConstGauge::new),
        )?;
        encode_known(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            sample.resident_bytes.map(ConstGauge::new),
        )?;
        encode_known(
            &mut encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            sample.cpu_seconds.map(ConstCounter::new),
        )?;
        encode_known(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            sample.start_time_seconds.map(ConstGauge::new),
        )
    }
}

/// Encodes one metric of the sample, when /proc gave its value.
fn encode_known(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: Option<impl EncodeMetric>,
) -> Result<(), std::fmt::Error> {
    let Some(metric) = metric else {
        return Ok(());
    };
    let encoded = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_with_spaces_and_parentheses() {
        let text = "4242 (a (weird) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 1000000 200 18446744073709551615";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                start_ticks: 123456
            })
        );
        assert_eq!(Stat::parse("4242 (cut short) S 1"), None);
    }

    #[test]
    fn boot_time_and_resident_size_are_read_from_their_lines() {
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
        assert_eq!(
            resident_bytes("Name:\tx\nVmRSS:\t   2048 kB\nThreads:\t3\n"),
            Some(2048 * 1024)
        );
        assert_eq!(resident_bytes("Name:\tx\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_sane_figures() {
        let sample = Sample::read();
        assert!(sample.open_fds.is_some_and(|fds| fds >= 3), "{sample:?}");
        assert!(
            sample
                .resident_bytes
                .is_some_and(|bytes| bytes > 1024 * 1024),
            "{sample:?}"
        );
        assert!(sample.cpu_seconds.is_some_and(|s| s >= 0.0), "{sample:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let started = sample.start_time_seconds.unwrap_or_default();
        assert!(
            started > now - 86_400.0 && started <= now + 1.0,
            "{sample:?}"
        );
    }
}
