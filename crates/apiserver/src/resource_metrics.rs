//! The kubelet's `/metrics/resource` in the Prometheus text format (0.0.4):
//! rendering a node's [`ResourceMetrics`] as an agent serves them, and
//! parsing them back as metrics-server reads them.
//!
//! As the kubelet prints it: families sorted by name, each with `# HELP`
//! (the stability level in brackets) and `# TYPE`; labels sorted by name;
//! values as Go prints floats (`1.0469376e+07`), followed by the sample's
//! timestamp in milliseconds. Pod figures are the sums of the pod's
//! containers; `scrape_error` and `resource_scrape_error` are 0.

use crate::node::{ContainerSample, ResourceMetrics, UsageSample};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The `Content-Type` of the rendered text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints it (what
/// Prometheus' text encoder uses): the shortest digits that read back the
/// same, with an exponent when it is below -4 or at least 6.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// One sample of a family: its label pairs (sorted by name), value and timestamp.
type FamilySample = (Vec<(&'static str, String)>, f64, Option<i64>);

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<FamilySample>,
}

/// Renders `m` as the kubelet's `/metrics/resource` page.
pub fn render_prometheus(m: &ResourceMetrics) -> String {
    let container_labels = |c: &ContainerSample| {
        vec![
            ("container", c.container.clone()),
            ("namespace", c.namespace.clone()),
            ("pod", c.pod.clone()),
        ]
    };
    let mut containers: Vec<&ContainerSample> = m.containers.iter().collect();
    containers.sort_by(|a, b| {
        (&a.container, &a.namespace, &a.pod).cmp(&(&b.container, &b.namespace, &b.pod))
    });
    // Pods: the sums of their containers, stamped with the newest sample.
    let mut pods: BTreeMap<(&str, &str), UsageSample> = BTreeMap::new();
    for c in &m.containers {
        let p = pods
            .entry((c.namespace.as_str(), c.pod.as_str()))
            .or_default();
        p.cpu_usage_seconds_total += c.usage.cpu_usage_seconds_total;
        p.memory_working_set_bytes += c.usage.memory_working_set_bytes;
        p.timestamp_ms = p.timestamp_ms.max(c.usage.timestamp_ms);
    }
    let pod_labels =
        |(ns, pod): (&str, &str)| vec![("namespace", ns.to_string()), ("pod", pod.to_string())];
    let families = [
        Family {
            name: "container_cpu_usage_seconds_total",
            help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            kind: "counter",
            samples: containers
                .iter()
                .map(|c| {
                    (
                        container_labels(c),
                        c.usage.cpu_usage_seconds_total,
                        Some(c.usage.timestamp_ms),
                    )
                })
                .collect(),
        },
        Family {
            name: "container_memory_working_set_bytes",
            help: "[STABLE] Current working set of the container in bytes",
            kind: "gauge",
            samples: containers
                .iter()
                .map(|c| {
                    (
                        container_labels(c),
                        c.usage.memory_working_set_bytes as f64,
                        Some(c.usage.timestamp_ms),
                    )
                })
                .collect(),
        },
        Family {
            name: "node_cpu_usage_seconds_total",
            help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
            kind: "counter",
            samples: vec![(
                vec![],
                m.node.cpu_usage_seconds_total,
                Some(m.node.timestamp_ms),
            )],
        },
        Family {
            name: "node_memory_working_set_bytes",
            help: "[STABLE] Current working set of the node in bytes",
            kind: "gauge",
            samples: vec![(
                vec![],
                m.node.memory_working_set_bytes as f64,
                Some(m.node.timestamp_ms),
            )],
        },
        Family {
            name: "pod_cpu_usage_seconds_total",
            help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            kind: "counter",
            samples: pods
                .iter()
                .map(|(k, u)| {
                    (
                        pod_labels(*k),
                        u.cpu_usage_seconds_total,
                        Some(u.timestamp_ms),
                    )
                })
                .collect(),
        },
        Family {
            name: "pod_memory_working_set_bytes",
            help: "[STABLE] Current working set of the pod in bytes",
            kind: "gauge",
            samples: pods
                .iter()
                .map(|(k, u)| {
                    (
                        pod_labels(*k),
                        u.memory_working_set_bytes as f64,
                        Some(u.timestamp_ms),
                    )
                })
                .collect(),
        },
        Family {
            name: "resource_scrape_error",
            help: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
            kind: "gauge",
            samples: vec![(vec![], 0.0, None)],
        },
        Family {
            name: "scrape_error",
            help: "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
            kind: "gauge",
            samples: vec![(vec![], 0.0, None)],
        },
    ];
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value, ts) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = write!(out, " {}", go_float(*value));
            if let Some(ts) = ts {
                let _ = write!(out, " {ts}");
            }
            out.push('\n');
        }
    }
    out
}

/// One sample line: its name, labels, value and timestamp.
type Line = (String, BTreeMap<String, String>, f64, Option<i64>);

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("invalid value {s:?}")),
    }
}

/// Parses the labels after a `{`: `k="v",…}`; returns them and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = s.split_once('=').ok_or("label without a value")?;
        let key = key.trim();
        let rest = rest
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key} not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label".into()),
            }
        };
        labels.insert(key.to_string(), value);
        s = &rest[end..];
    }
}

/// Parses one sample line of the text format.
fn parse_line(line: &str) -> Result<Line, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = line[..name_end].to_string();
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(r) => parse_labels(r).map_err(|e| format!("{e} in {line:?}"))?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let mut words = rest.split_whitespace();
    let value = parse_value(
        words
            .next()
            .ok_or_else(|| format!("no value in {line:?}"))?,
    )?;
    let ts = words
        .next()
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {t:?}"))
        })
        .transpose()?;
    Ok((name, labels, value, ts))
}

/// Reads a `/metrics/resource` page back into [`ResourceMetrics`], as
/// metrics-server does: node and container CPU and working set; pod
/// figures and other families are ignored. A container appears when it
/// has a CPU sample; a node or container sample without a timestamp is an error.
pub fn parse_prometheus(text: &str) -> Result<ResourceMetrics, String> {
    let mut out = ResourceMetrics::default();
    let mut containers: BTreeMap<(String, String, String), UsageSample> = BTreeMap::new();
    let mut memory: BTreeMap<(String, String, String), (u64, i64)> = BTreeMap::new();
    let key = |l: &BTreeMap<String, String>| -> Result<(String, String, String), String> {
        let get = |k: &str| {
            l.get(k)
                .cloned()
                .ok_or_else(|| format!("container sample without the {k} label"))
        };
        Ok((get("namespace")?, get("pod")?, get("container")?))
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value, ts) = parse_line(line)?;
        let stamped = || ts.ok_or_else(|| format!("{name} without a timestamp"));
        match name.as_str() {
            "node_cpu_usage_seconds_total" => {
                out.node.cpu_usage_seconds_total = value;
                out.node.timestamp_ms = out.node.timestamp_ms.max(stamped()?);
            }
            "node_memory_working_set_bytes" => {
                out.node.memory_working_set_bytes = value as u64;
                out.node.timestamp_ms = out.node.timestamp_ms.max(stamped()?);
            }
            "container_cpu_usage_seconds_total" => {
                let ts = stamped()?;
                let u = containers.entry(key(&labels)?).or_default();
                u.cpu_usage_seconds_total = value;
                u.timestamp_ms = u.timestamp_ms.max(ts);
            }
            "container_memory_working_set_bytes" => {
                memory.insert(key(&labels)?, (value as u64, stamped()?));
            }
            _ => {}
        }
    }
    for (k, (bytes, ts)) in memory {
        if let Some(u) = containers.get_mut(&k) {
            u.memory_working_set_bytes = bytes;
            u.timestamp_ms = u.timestamp_ms.max(ts);
        }
    }
    out.containers = containers
        .into_iter()
        .map(|((namespace, pod, container), usage)| ContainerSample {
            namespace,
            pod,
            container,
            usage,
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts: i64, cpu: f64, mem: u64) -> UsageSample {
        UsageSample {
            timestamp_ms: ts,
            cpu_usage_seconds_total: cpu,
            memory_working_set_bytes: mem,
        }
    }

    fn container(ns: &str, pod: &str, c: &str, u: UsageSample) -> ContainerSample {
        ContainerSample {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
            usage: u,
        }
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (10.0, "10"),
            (1000.0, "1000"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (10469376.0, "1.0469376e+07"),
            (1.6243962483020916e9, "1.6243962483020916e+09"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn renders_as_the_kubelet_does() {
        let m = ResourceMetrics {
            node: sample(1624396278302, 10.0, 1000),
            containers: vec![
                container(
                    "namespace_b",
                    "pod_b",
                    "container_a",
                    sample(1624396278302, 10.0, 1000),
                ),
                container(
                    "namespace_a",
                    "pod_a",
                    "container_b",
                    sample(1624396278302, 10.0, 1000),
                ),
                container(
                    "namespace_a",
                    "pod_a",
                    "container_a",
                    sample(1624396278300, 2.5, 10469376),
                ),
            ],
        };
        let want = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="container_a",namespace="namespace_a",pod="pod_a"} 2.5 1624396278300
container_cpu_usage_seconds_total{container="container_a",namespace="namespace_b",pod="pod_b"} 10 1624396278302
container_cpu_usage_seconds_total{container="container_b",namespace="namespace_a",pod="pod_a"} 10 1624396278302
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="container_a",namespace="namespace_a",pod="pod_a"} 1.0469376e+07 1624396278300
container_memory_working_set_bytes{container="container_a",namespace="namespace_b",pod="pod_b"} 1000 1624396278302
container_memory_working_set_bytes{container="container_b",namespace="namespace_a",pod="pod_a"} 1000 1624396278302
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 10 1624396278302
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1000 1624396278302
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="namespace_a",pod="pod_a"} 12.5 1624396278302
pod_cpu_usage_seconds_total{namespace="namespace_b",pod="pod_b"} 10 1624396278302
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="namespace_a",pod="pod_a"} 1.0470376e+07 1624396278302
pod_memory_working_set_bytes{namespace="namespace_b",pod="pod_b"} 1000 1624396278302
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;
        assert_eq!(render_prometheus(&m), want);
    }

    #[test]
    fn a_node_without_containers_has_no_container_or_pod_families() {
        let text = render_prometheus(&ResourceMetrics {
            node: sample(5, 1.5, 7),
            containers: vec![],
        });
        assert!(!text.contains("container_"), "{text}");
        assert!(!text.contains("pod_"), "{text}");
        assert!(text.contains("node_cpu_usage_seconds_total 1.5 5\n"));
    }

    #[test]
    fn round_trip() {
        let m = ResourceMetrics {
            node: sample(1700000000123, 12345.67, 8_589_934_592),
            containers: vec![
                container(
                    "default",
                    "web-7d9f",
                    "nginx",
                    sample(1700000000120, 0.000123, 3_145_728),
                ),
                container(
                    "kube-system",
                    "coredns",
                    "coredns",
                    sample(1700000000121, 98765.4321, 0),
                ),
                container(
                    "odd",
                    "we\"ird\\pod",
                    "line\nbreak",
                    sample(1700000000122, 1e-7, 1),
                ),
            ],
        };
        let back = parse_prometheus(&render_prometheus(&m)).unwrap();
        let mut want = m.clone();
        want.containers.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        assert_eq!(back, want);
    }

    #[test]
    fn parses_what_a_kubelet_serves() {
        // As a real kubelet answers (with families this parser skips).
        let text = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="metrics-server",namespace="kube-system",pod="metrics-server-5f8d"} 1.053546532 1624396278302
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="metrics-server",namespace="kube-system",pod="metrics-server-5f8d"} 1.4282752e+07 1624396278310
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="metrics-server",namespace="kube-system",pod="metrics-server-5f8d"} 1.6243962483020916e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1624396278302
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1624396278302
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;
        let m = parse_prometheus(text).unwrap();
        assert_eq!(m.node, sample(1624396278302, 357.35491, 1_616_273_408));
        assert_eq!(
            m.containers,
            vec![container(
                "kube-system",
                "metrics-server-5f8d",
                "metrics-server",
                sample(1624396278310, 1.053546532, 14_282_752)
            )]
        );
    }

    #[test]
    fn malformed_pages_are_errors() {
        let cases = [
            (
                "node_cpu_usage_seconds_total 1\n",
                "node_cpu_usage_seconds_total without a timestamp",
            ),
            ("node_cpu_usage_seconds_total x 1\n", "invalid value \"x\""),
            (
                "container_cpu_usage_seconds_total{pod=\"p\",namespace=\"n\"} 1 2\n",
                "container sample without the container label",
            ),
            (
                "container_cpu_usage_seconds_total{pod=\"p 1 2\n",
                "unterminated label in \"container_cpu_usage_seconds_total{pod=\\\"p 1 2\"",
            ),
            ("scrape_error\n", "no value in \"scrape_error\""),
        ];
        for (text, want) in cases {
            assert_eq!(parse_prometheus(text).unwrap_err(), want, "{text:?}");
        }
    }
}
