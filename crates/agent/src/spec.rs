//! From a pod's container spec and its image to what the runtime runs:
//! argv, environment, working directory, user and cgroup limits, combined
//! the way the kubelet combines them. Pure functions.

use crate::image::ImageConfig;
use crate::runtime::{Process, Resources, Security};
use k8s_openapi::api::core::v1::{Container, PodSecurityContext};
use std::collections::BTreeMap;

/// argv as Kubernetes builds it: `command` replaces ENTRYPOINT and drops
/// CMD; `args` alone replaces CMD; neither runs ENTRYPOINT + CMD.
pub fn argv(
    container: &Container,
    image: &ImageConfig,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let (cmd, args) = if !command.is_empty() {
        (command, args)
    } else if !args.is_empty() {
        (image.entrypoint.clone(), args)
    } else {
        (image.entrypoint.clone(), image.cmd.clone())
    };
    cmd.into_iter()
        .chain(args)
        .map(|a| expand(&a, env))
        .collect()
}

/// Expands `$(VAR)` references as Kubernetes does: defined variables are
/// replaced, `$$` is a literal `$`, undefined references stay as written.
pub fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match env.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The container's environment: the image's ENV, then the pod's `env`
/// entries in order (already resolved values, each able to reference the
/// ones before it). Returns the map used for expansion and the `K=V` list.
pub fn environment(
    image: &ImageConfig,
    pod_env: &[(String, String)],
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut map = BTreeMap::new();
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if !map.contains_key(k) {
            order.push(k.to_string());
        }
        map.insert(k.to_string(), v.to_string());
    }
    for (k, v) in pod_env {
        let value = expand(v, &map);
        if !map.contains_key(k) {
            order.push(k.clone());
        }
        map.insert(k.clone(), value);
    }
    let list = order.iter().map(|k| format!("{k}={}", map[k])).collect();
    (map, list)
}

/// uid/gid: the container's securityContext, then the pod's, then the
/// image's numeric USER (names resolve to 0 unless numeric).
pub fn user(
    container: &Container,
    pod: Option<&PodSecurityContext>,
    image: &ImageConfig,
) -> (u32, u32, Vec<u32>) {
    let (img_uid, img_gid) = match image.user.split_once(':') {
        Some((u, g)) => (u.parse().ok(), g.parse().ok()),
        None => (image.user.parse().ok(), None),
    };
    let sc = container.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod.and_then(|p| p.run_as_user))
        .map(|u| u as u32)
        .or(img_uid)
        .unwrap_or(0);
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod.and_then(|p| p.run_as_group))
        .map(|g| g as u32)
        .or(img_gid)
        .unwrap_or(0);
    let mut extra: Vec<u32> = pod
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = pod.and_then(|p| p.fs_group) {
        extra.push(fs as u32);
    }
    (uid, gid, extra)
}

fn millis(q: &str) -> Option<i64> {
    skiff_api::validation::parse_quantity(q)
        .ok()
        .map(|q| (q.nanos / 1_000_000) as i64)
}

fn bytes(q: &str) -> Option<i64> {
    skiff_api::validation::parse_quantity(q)
        .ok()
        .map(|q| (q.nanos / 1_000_000_000) as i64)
}

/// cgroup limits from requests and limits, as the kubelet converts them:
/// shares = requested millicores × 1024 / 1000 (minimum 2), quota = limited
/// millicores × period / 1000 (minimum 1 ms), memory limit in bytes.
pub fn resources(container: &Container) -> Resources {
    let r = container.resources.as_ref();
    let req = |n: &str| {
        r.and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(n))
            .map(|q| q.0.clone())
    };
    let lim = |n: &str| {
        r.and_then(|r| r.limits.as_ref())
            .and_then(|m| m.get(n))
            .map(|q| q.0.clone())
    };
    let cpu_req = req("cpu").or_else(|| lim("cpu")).and_then(|q| millis(&q));
    let shares = match cpu_req {
        Some(m) if m > 0 => ((m as u64 * 1024) / 1000).max(2),
        _ => 2,
    };
    const PERIOD: u64 = 100_000;
    let quota = lim("cpu")
        .and_then(|q| millis(&q))
        .map(|m| (m * PERIOD as i64 / 1000).max(1000));
    Resources {
        cpu_shares: Some(shares),
        cpu_quota: quota,
        cpu_period: quota.map(|_| PERIOD),
        memory_limit: lim("memory").and_then(|q| bytes(&q)),
    }
}

/// The process settings of a container.
pub fn process(
    container: &Container,
    pod_security: Option<&PodSecurityContext>,
    image: &ImageConfig,
    pod_env: &[(String, String)],
) -> Process {
    let (env_map, env) = environment(image, pod_env);
    let (uid, gid, additional_gids) = user(container, pod_security, image);
    let cwd = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let mut env = env;
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    Process {
        args: argv(container, image, &env_map),
        env,
        cwd,
        uid,
        gid,
        additional_gids,
    }
}

/// Security settings from the container's securityContext.
pub fn security(container: &Container) -> Security {
    let sc = container.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    Security {
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        read_only_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn img(entry: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entry.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into(), "A=img".into()],
            working_dir: "/srv".into(),
            user: "".into(),
        }
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        let image = img(&["/ep"], &["cmd1"]);
        let env = BTreeMap::new();
        let cases = [
            (json!({"name": "c"}), vec!["/ep", "cmd1"]),
            (json!({"name": "c", "args": ["a1"]}), vec!["/ep", "a1"]),
            (
                json!({"name": "c", "command": ["/bin/sh"]}),
                vec!["/bin/sh"],
            ),
            (
                json!({"name": "c", "command": ["/bin/sh"], "args": ["-c", "x"]}),
                vec!["/bin/sh", "-c", "x"],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(argv(&c(spec.clone()), &image, &env), want, "{spec}");
        }
    }

    #[test]
    fn dollar_paren_references_expand() {
        let mut env = BTreeMap::new();
        env.insert("NAME".to_string(), "web".to_string());
        assert_eq!(expand("hello $(NAME)", &env), "hello web");
        assert_eq!(expand("$$(NAME)", &env), "$(NAME)");
        assert_eq!(expand("$(MISSING) x", &env), "$(MISSING) x");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("unterminated $(NAME", &env), "unterminated $(NAME");
    }

    #[test]
    fn pod_env_overrides_image_env_and_references_earlier_values() {
        let image = img(&[], &[]);
        let (map, list) = environment(
            &image,
            &[("A".into(), "pod".into()), ("B".into(), "$(A)-b".into())],
        );
        assert_eq!(map["B"], "pod-b");
        assert_eq!(list, vec!["PATH=/bin", "A=pod", "B=pod-b"]);
    }

    #[test]
    fn cpu_and_memory_become_cgroup_values() {
        let r = resources(&c(
            json!({"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}),
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(128 * 1024 * 1024));
        let none = resources(&c(json!({"name": "c"})));
        assert_eq!(
            none,
            Resources {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
    }

    #[test]
    fn user_comes_from_container_then_pod_then_image() {
        let mut image = img(&[], &[]);
        image.user = "1000:1000".into();
        assert_eq!(
            user(&c(json!({"name": "c"})), None, &image),
            (1000, 1000, vec![])
        );
        let pod: PodSecurityContext =
            serde_json::from_value(json!({"runAsUser": 5, "fsGroup": 7})).unwrap();
        assert_eq!(
            user(&c(json!({"name": "c"})), Some(&pod), &image),
            (5, 1000, vec![7])
        );
        let ctr = c(json!({"name": "c", "securityContext": {"runAsUser": 9, "runAsGroup": 9}}));
        assert_eq!(user(&ctr, Some(&pod), &image), (9, 9, vec![7]));
    }

    #[test]
    fn working_dir_defaults_to_image_then_root() {
        let p = process(&c(json!({"name": "c"})), None, &img(&["/ep"], &[]), &[]);
        assert_eq!(p.cwd, "/srv");
        let p = process(
            &c(json!({"name": "c", "workingDir": "/w"})),
            None,
            &img(&["/ep"], &[]),
            &[],
        );
        assert_eq!(p.cwd, "/w");
    }
}
