//! Resource usage of the node and its running containers: what the kubelet's
//! `/metrics/resource` reports and metrics-server turns into `kubectl top`.
//!
//! Every figure is cumulative (CPU seconds) or instantaneous (working-set
//! bytes); rates are the scraper's business.
//!
//! - Containers: the cgroup the runtime put each one in (`/skiff/pod<uid>/<id>`).
//!   cgroup v1: `cpuacct.usage` (ns) and `memory.usage_in_bytes` minus
//!   `memory.stat` `total_inactive_file`. cgroup v2: `cpu.stat` `usage_usec`
//!   and `memory.current` minus `memory.stat` `inactive_file`. The working set
//!   is floored at 0, as cAdvisor computes it.
//! - The node: `/proc/stat`'s `cpu` line (user, nice, system, irq, softirq and
//!   steal jiffies; idle and iowait count as idle) and `/proc/meminfo`. The
//!   node's working set is `MemTotal − MemAvailable`: the kubelet takes the
//!   root cgroup's working set instead, but the root cgroup counts page cache
//!   of the whole machine that the kernel can drop at once, and on a host that
//!   mounts only some hierarchies (or none, in a sandbox) it is not there at
//!   all. `MemAvailable` is the kernel's own estimate of what can be had
//!   without swapping, so its complement is the same idea: memory in use that
//!   cannot be reclaimed cheaply.
//!
//! The parsers are pure functions of file contents; the readers take the
//! roots (`/sys/fs/cgroup`, `/proc`) as arguments so tests run on a fake tree.

use crate::runtime::runc::RuncRuntime;
use crate::runtime::{ContainerState, Runtime, labels};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `USER_HZ`: the unit of `/proc/stat` times (jiffies per second), 100 on every Linux ABI.
pub const USER_HZ: f64 = 100.0;

/// One cumulative usage reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time used since the node or container started, in seconds.
    pub cpu_seconds: f64,
    /// Working-set memory in bytes.
    pub memory_working_set_bytes: u64,
}

/// A reading and when it was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The reading.
    pub usage: Usage,
}

/// A running container, as the collector needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Its cgroup path, relative to each hierarchy's mount point (`/skiff/pod<uid>/<id>`).
    pub cgroup: String,
}

impl Target {
    /// The target for a container with these runtime labels in `cgroup`;
    /// None when the labels do not name a pod's container.
    pub fn from_labels(labels: &BTreeMap<String, String>, cgroup: String) -> Option<Target> {
        let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        Some(Target {
            namespace: get(labels::POD_NAMESPACE)?,
            pod: get(labels::POD_NAME)?,
            container: get(labels::CONTAINER_NAME)?,
            cgroup,
        })
    }
}

/// One container's sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The sample.
    pub sample: Sample,
}

/// The node's sample and its running containers'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    /// The node as a whole (None when `/proc` could not be read).
    pub node: Option<Sample>,
    /// Every running container whose cgroup could be read, sorted by namespace, pod, container.
    pub containers: Vec<ContainerUsage>,
}

/// Where the kernel's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The cgroup mount point (`/sys/fs/cgroup`).
    pub cgroup: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            cgroup: "/sys/fs/cgroup".into(),
            proc: "/proc".into(),
        }
    }
}

/// Which cgroup layout the host has, and where the controllers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v1 (or hybrid): one hierarchy per controller.
    V1 {
        /// The cpuacct hierarchy (`cpuacct`, or co-mounted `cpu,cpuacct`).
        cpuacct: PathBuf,
        /// The memory hierarchy.
        memory: PathBuf,
    },
    /// cgroup v2: the unified hierarchy mounted at the root.
    V2 {
        /// The mount point.
        root: PathBuf,
    },
}

impl Cgroups {
    /// Detects the layout under `root`: v2 when the root is itself a cgroup2
    /// mount (it has `cgroup.controllers`), else v1 with the cpuacct and
    /// memory hierarchies found by name.
    pub fn detect(root: &Path) -> Cgroups {
        if root.join("cgroup.controllers").is_file() {
            return Cgroups::V2 {
                root: root.to_path_buf(),
            };
        }
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.join("cpuacct.usage").is_file())
            .unwrap_or_else(|| root.join("cpuacct"));
        Cgroups::V1 {
            cpuacct,
            memory: root.join("memory"),
        }
    }

    /// The usage of the cgroup at `path` (relative to the hierarchies' mount points).
    pub fn read(&self, path: &str) -> Result<Usage, String> {
        let rel = path.trim_start_matches('/');
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        match self {
            Cgroups::V1 { cpuacct, memory } => {
                let dir = memory.join(rel);
                usage_v1(
                    &read(cpuacct.join(rel).join("cpuacct.usage"))?,
                    &read(dir.join("memory.usage_in_bytes"))?,
                    &read(dir.join("memory.stat"))?,
                )
            }
            Cgroups::V2 { root } => {
                let dir = root.join(rel);
                usage_v2(
                    &read(dir.join("cpu.stat"))?,
                    &read(dir.join("memory.current"))?,
                    &read(dir.join("memory.stat"))?,
                )
            }
        }
    }
}

/// The value of `key` in a flat-keyed file (`key value` lines).
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what}: not a number: {:?}", text.trim()))
}

/// Usage minus inactive file pages, floored at 0 (cAdvisor's working set).
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// A cgroup v1 reading from `cpuacct.usage`, `memory.usage_in_bytes` and `memory.stat`.
pub fn usage_v1(
    cpuacct_usage: &str,
    memory_usage: &str,
    memory_stat: &str,
) -> Result<Usage, String> {
    let ns = number(cpuacct_usage, "cpuacct.usage")?;
    let usage = number(memory_usage, "memory.usage_in_bytes")?;
    let inactive = flat_keyed(memory_stat, "total_inactive_file").unwrap_or(0);
    Ok(Usage {
        cpu_seconds: ns as f64 / 1e9,
        memory_working_set_bytes: working_set(usage, inactive),
    })
}

/// A cgroup v2 reading from `cpu.stat`, `memory.current` and `memory.stat`.
pub fn usage_v2(cpu_stat: &str, memory_current: &str, memory_stat: &str) -> Result<Usage, String> {
    let usec = flat_keyed(cpu_stat, "usage_usec").ok_or("cpu.stat: no usage_usec")?;
    let current = number(memory_current, "memory.current")?;
    let inactive = flat_keyed(memory_stat, "inactive_file").unwrap_or(0);
    Ok(Usage {
        cpu_seconds: usec as f64 / 1e6,
        memory_working_set_bytes: working_set(current, inactive),
    })
}

/// The node's CPU seconds from `/proc/stat`: the `cpu` line's user, nice,
/// system, irq, softirq and steal jiffies over [`USER_HZ`].
pub fn node_cpu_seconds(proc_stat: &str) -> Result<f64, String> {
    let line = proc_stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
        .ok_or("/proc/stat: no cpu line")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| {
            f.parse()
                .map_err(|_| format!("/proc/stat: bad field {f:?}"))
        })
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return Err(format!("/proc/stat: short cpu line {line:?}"));
    }
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok(busy as f64 / USER_HZ)
}

/// The node's working set from `/proc/meminfo`: `MemTotal − MemAvailable`.
pub fn node_working_set(meminfo: &str) -> Result<u64, String> {
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .ok_or_else(|| format!("/proc/meminfo: no {key}"))
    };
    Ok(kib("MemTotal")?.saturating_sub(kib("MemAvailable")?) * 1024)
}

/// Reads the node's usage under `proc`.
pub fn read_node(proc: &Path) -> Result<Usage, String> {
    let read = |name: &str| {
        let p = proc.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))
    };
    Ok(Usage {
        cpu_seconds: node_cpu_seconds(&read("stat")?)?,
        memory_working_set_bytes: node_working_set(&read("meminfo")?)?,
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Reads the node and each target. A target whose cgroup cannot be read
/// (it exited since it was listed) is left out.
pub fn collect(roots: &Roots, targets: &[Target]) -> NodeUsage {
    let node = match read_node(&roots.proc) {
        Ok(usage) => Some(Sample {
            timestamp_ms: now_ms(),
            usage,
        }),
        Err(e) => {
            tracing::debug!("node metrics: {e}");
            None
        }
    };
    let cgroups = Cgroups::detect(&roots.cgroup);
    let mut containers: Vec<ContainerUsage> = targets
        .iter()
        .filter_map(|t| match cgroups.read(&t.cgroup) {
            Ok(usage) => Some(ContainerUsage {
                namespace: t.namespace.clone(),
                pod: t.pod.clone(),
                container: t.container.clone(),
                sample: Sample {
                    timestamp_ms: now_ms(),
                    usage,
                },
            }),
            Err(e) => {
                tracing::debug!("container metrics: {e}");
                None
            }
        })
        .collect();
    containers.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    NodeUsage { node, containers }
}

/// The running containers of `runtime` that belong to pods, with their cgroups.
pub async fn running_targets(runtime: &RuncRuntime) -> Vec<Target> {
    let Ok(all) = runtime.list_containers().await else {
        return Vec::new();
    };
    all.into_iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .filter_map(|c| {
            let cgroup = runtime.cgroup(&c.id).ok()?;
            Target::from_labels(&c.labels, cgroup)
        })
        .collect()
}

/// [`collect`] over the running containers of `runtime`.
pub async fn collect_runc(runtime: &RuncRuntime, roots: &Roots) -> NodeUsage {
    let targets = running_targets(runtime).await;
    let roots = roots.clone();
    tokio::task::spawn_blocking(move || collect(&roots, &targets))
        .await
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_readings() {
        let stat = "cache 100\ninactive_file 7\ntotal_inactive_file 4096\ntotal_active_file 10\n";
        let cases = [
            // (cpuacct.usage, usage_in_bytes, memory.stat, cpu seconds, working set)
            ("2500000000\n", "10000\n", stat, 2.5, 10000 - 4096),
            ("0\n", "1000\n", stat, 0.0, 0),
            ("1\n", "5000\n", "cache 1\n", 1e-9, 5000),
        ];
        for (cpu, mem, stat, secs, ws) in cases {
            let u = usage_v1(cpu, mem, stat).unwrap();
            assert_eq!(
                (u.cpu_seconds, u.memory_working_set_bytes),
                (secs, ws),
                "{cpu:?} {mem:?}"
            );
        }
        assert!(
            usage_v1("x", "1", "")
                .unwrap_err()
                .contains("cpuacct.usage")
        );
    }

    #[test]
    fn cgroup_v2_readings() {
        let cpu = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n";
        let u = usage_v2(
            cpu,
            "8192\n",
            "anon 4096\ninactive_file 1024\nactive_file 1\n",
        )
        .unwrap();
        assert_eq!((u.cpu_seconds, u.memory_working_set_bytes), (1.5, 7168));
        // The v1 key is not the v2 one.
        let u = usage_v2(cpu, "8192\n", "total_inactive_file 1024\n").unwrap();
        assert_eq!(u.memory_working_set_bytes, 8192);
        let u = usage_v2(cpu, "100\n", "inactive_file 4096\n").unwrap();
        assert_eq!(u.memory_working_set_bytes, 0, "floored at 0");
        assert_eq!(
            usage_v2("user_usec 1\n", "1", "").unwrap_err(),
            "cpu.stat: no usage_usec"
        );
    }

    #[test]
    fn node_cpu_counts_busy_jiffies_only() {
        let cases = [
            // user nice system idle iowait irq softirq steal guest guest_nice
            (
                "cpu  100 20 30 5000 700 4 6 10 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n",
                1.7,
            ),
            ("cpu  100 0 0 999999 999999 0 0 0 0 0\n", 1.0),
            // Old kernels: no steal column.
            ("cpu  100 100 100 100 100 100 100\n", 5.0),
            ("intr 1\ncpu  1 0 0 0\n", 0.01),
        ];
        for (text, secs) in cases {
            let got = node_cpu_seconds(text).unwrap();
            assert!((got - secs).abs() < 1e-9, "{text:?}: {got} != {secs}");
        }
        assert!(node_cpu_seconds("cpu0 1 2 3 4\n").is_err());
        assert!(node_cpu_seconds("cpu 1 2\n").is_err());
    }

    #[test]
    fn node_working_set_is_total_minus_available() {
        let text = "MemTotal:       2000 kB\nMemFree:         100 kB\nMemAvailable:    1500 kB\n";
        assert_eq!(node_working_set(text).unwrap(), 500 * 1024);
        assert_eq!(
            node_working_set("MemTotal: 1 kB\n").unwrap_err(),
            "/proc/meminfo: no MemAvailable"
        );
    }

    #[test]
    fn flat_keyed_files() {
        let text = "a 1\nab 2\nb  3\nc x\n";
        assert_eq!(flat_keyed(text, "a"), Some(1));
        assert_eq!(flat_keyed(text, "ab"), Some(2));
        assert_eq!(flat_keyed(text, "b"), Some(3));
        assert_eq!(flat_keyed(text, "c"), None);
        assert_eq!(flat_keyed(text, "d"), None);
    }

    #[test]
    fn targets_come_from_the_pod_labels() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let full = l(&[
            (labels::POD_NAMESPACE, "ns"),
            (labels::POD_NAME, "web"),
            (labels::CONTAINER_NAME, "app"),
        ]);
        assert_eq!(
            Target::from_labels(&full, "/skiff/podu/c1".into()),
            Some(Target {
                namespace: "ns".into(),
                pod: "web".into(),
                container: "app".into(),
                cgroup: "/skiff/podu/c1".into()
            })
        );
        let no_ns = l(&[(labels::POD_NAME, "web"), (labels::CONTAINER_NAME, "app")]);
        assert_eq!(Target::from_labels(&no_ns, "/x".into()), None);
    }

    /// Writes a fake kernel tree: `/proc` and cgroup v1 or v2 with the given containers.
    pub(crate) fn fake_tree(dir: &Path, v2: bool, containers: &[(&str, u64, u64)]) -> Roots {
        let proc = dir.join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("stat"), "cpu  300 0 100 900 50 0 0 0 0 0\n").unwrap();
        std::fs::write(
            proc.join("meminfo"),
            "MemTotal: 4000 kB\nMemAvailable: 3000 kB\n",
        )
        .unwrap();
        let cg = dir.join("cgroup");
        if v2 {
            std::fs::create_dir_all(&cg).unwrap();
            std::fs::write(cg.join("cgroup.controllers"), "cpu memory\n").unwrap();
        } else {
            std::fs::create_dir_all(cg.join("cpu,cpuacct")).unwrap();
            std::fs::write(cg.join("cpu,cpuacct/cpuacct.usage"), "1\n").unwrap();
        }
        for (path, cpu_ns, mem) in containers {
            let rel = path.trim_start_matches('/');
            if v2 {
                let d = cg.join(rel);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(
                    d.join("cpu.stat"),
                    format!("usage_usec {}\n", cpu_ns / 1000),
                )
                .unwrap();
                std::fs::write(d.join("memory.current"), format!("{}\n", mem + 100)).unwrap();
                std::fs::write(d.join("memory.stat"), "inactive_file 100\n").unwrap();
            } else {
                let c = cg.join("cpu,cpuacct").join(rel);
                let m = cg.join("memory").join(rel);
                std::fs::create_dir_all(&c).unwrap();
                std::fs::create_dir_all(&m).unwrap();
                std::fs::write(c.join("cpuacct.usage"), format!("{cpu_ns}\n")).unwrap();
                std::fs::write(m.join("memory.usage_in_bytes"), format!("{}\n", mem + 100))
                    .unwrap();
                std::fs::write(m.join("memory.stat"), "total_inactive_file 100\n").unwrap();
            }
        }
        Roots { cgroup: cg, proc }
    }

    fn target(pod: &str, container: &str, cgroup: &str) -> Target {
        Target {
            namespace: "default".into(),
            pod: pod.into(),
            container: container.into(),
            cgroup: cgroup.into(),
        }
    }

    #[test]
    fn collect_reads_node_and_containers_on_either_cgroup_version() {
        for v2 in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let roots = fake_tree(
                dir.path(),
                v2,
                &[
                    ("/skiff/podb/c2", 3_000_000_000, 2048),
                    ("/skiff/poda/c1", 1_500_000_000, 1024),
                ],
            );
            assert_eq!(
                matches!(Cgroups::detect(&roots.cgroup), Cgroups::V2 { .. }),
                v2
            );
            let before = now_ms();
            let got = collect(
                &roots,
                &[
                    target("b", "app", "/skiff/podb/c2"),
                    target("a", "app", "/skiff/poda/c1"),
                    // Exited between listing and reading: left out.
                    target("gone", "app", "/skiff/podgone/c3"),
                ],
            );
            let node = got.node.unwrap();
            assert_eq!(
                node.usage,
                Usage {
                    cpu_seconds: 4.0,
                    memory_working_set_bytes: 1000 * 1024
                }
            );
            assert!(node.timestamp_ms >= before);
            let seen: Vec<(&str, f64, u64)> = got
                .containers
                .iter()
                .map(|c| {
                    (
                        c.pod.as_str(),
                        c.sample.usage.cpu_seconds,
                        c.sample.usage.memory_working_set_bytes,
                    )
                })
                .collect();
            assert_eq!(seen, vec![("a", 1.5, 1024), ("b", 3.0, 2048)], "v2={v2}");
        }
    }

    #[test]
    fn v1_finds_a_separately_mounted_cpuacct() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cpuacct")).unwrap();
        std::fs::write(dir.path().join("cpuacct/cpuacct.usage"), "1\n").unwrap();
        assert_eq!(
            Cgroups::detect(dir.path()),
            Cgroups::V1 {
                cpuacct: dir.path().join("cpuacct"),
                memory: dir.path().join("memory")
            }
        );
    }

    /// Agent CPU time of one collection over 100 containers (a fake v1 tree).
    /// `cargo test -p skiff-agent --lib metrics::tests::collection_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn collection_cost() {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<(String, u64, u64)> = (0..100)
            .map(|i| (format!("/skiff/pod{i}/c{i}"), i * 1000, i * 4096))
            .collect();
        let refs: Vec<(&str, u64, u64)> =
            specs.iter().map(|(p, c, m)| (p.as_str(), *c, *m)).collect();
        let roots = fake_tree(dir.path(), false, &refs);
        let targets: Vec<Target> = specs
            .iter()
            .enumerate()
            .map(|(i, (p, _, _))| target(&format!("p{i}"), "app", p))
            .collect();
        let rounds = 200;
        // This thread's user + system time, from its stat (jiffies).
        let cpu = || {
            let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after = &text[text.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            // After the command: state is field 3, utime 14, stime 15.
            (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / USER_HZ
        };
        let (c0, w0) = (cpu(), std::time::Instant::now());
        for _ in 0..rounds {
            assert_eq!(collect(&roots, &targets).containers.len(), 100);
        }
        let (c1, w1) = (cpu(), w0.elapsed());
        println!(
            "collection of 100 containers: {:.3} ms CPU, {:.3} ms wall per scrape",
            (c1 - c0) * 1e3 / rounds as f64,
            w1.as_secs_f64() * 1e3 / rounds as f64
        );
    }
}
