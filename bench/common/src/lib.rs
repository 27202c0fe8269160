//! What the skiff benchmarks share: temp dirs and child processes cleaned up
//! on drop, a client from a kubeconfig, a free loopback port, the CPU and
//! memory figures read from `/proc`, medians and percentiles, flag parsing
//! ([`flags`]) and running a skiff cluster on real runc ([`cluster`]).

pub mod cluster;
pub mod flags;

pub use cluster::{
    BUSYBOX_SCRIPT, Signals, block_on_with_signals, check_built, check_repo_root, force_cleanup,
    kubectl, kubectl_cmd, mounts_under, node_ready, pod_ready, pod_running, poll_until,
    poll_while_up, private_skiff_with_busybox, run_cmd, start_server, wait_pods_gone,
};
pub use flags::{Flag, exe_dir, flags, positive, unknown};

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The median of samples (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-quantile of sorted samples (nearest rank), zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The largest sample (NaN when empty).
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// A `kB` field (`VmRSS`, `VmHWM`) in MiB from the text of `/proc/PID/status`.
pub fn parse_status_mib(status: &str, field: &str) -> Option<f64> {
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A `kB` field of `/proc/PID/status` in MiB (NaN when unreadable).
pub fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_status_mib(&s, field))
        .unwrap_or(f64::NAN)
}

/// User + system CPU time in clock ticks from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time used so far by `pid`, in seconds (USER_HZ = 100).
pub fn cpu_s(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .map_or(f64::NAN, |t| t as f64 / 100.0)
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh `<temp>/<prefix>-<pid>-<n>` directory.
    pub fn new(prefix: &str) -> Result<TempDir> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed on drop.
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with no stdin and stdout and stderr to the file `log`.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(Proc {
            child: Some(child),
            log,
        })
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What the process has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log if the process has exited.
    pub fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(st) = c.try_wait()?
        {
            bail!("{what} exited ({st}):\n{}", self.log_text());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client from a kubeconfig, with a read timeout long enough for big lists.
pub async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    config.read_timeout = Some(Duration::from_secs(600));
    Ok(kube::Client::try_from(config)?)
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn milliseconds_and_maxima() {
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
        assert_eq!(max(&[1.0, 3.0, 2.0]), 3.0);
        assert!(max(&[]).is_nan());
    }

    #[test]
    fn proc_files() {
        let status = "Name:\tskiff\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(parse_status_mib(status, "VmRSS"), Some(20.0));
        assert_eq!(parse_status_mib(status, "VmHWM"), Some(40.0));
        assert_eq!(parse_status_mib(status, "VmPeak"), None);
        // A command name with spaces and parentheses does not shift the fields.
        let stat = "123 (sk (i) ff) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }
}
