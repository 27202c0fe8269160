//! The embedded node agent end to end: the real `skiff` binary runs pods as
//! runc containers, and the real kubectl shows what the kubelet would show.
//!
//! Needs root, runc, /bin/busybox (busybox-static), nsenter and kubectl. Without
//! them every test is skipped with a loud message, unless `CI` is set, where
//! that is a failure.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The seed example: an init container writes index.html into an emptyDir and
/// busybox httpd serves it.
#[test]
fn init_container_prepares_content_httpd_serves_it() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: install
    image: busybox
    command: [sh, -c, 'sleep 3; echo "hello from the init container" > /work/index.html']
    volumeMounts: [{name: workdir, mountPath: /work}]
  containers:
  - name: web
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /work]
    volumeMounts: [{name: workdir, mountPath: /work}]
  volumes:
  - {name: workdir, emptyDir: {}}
"#,
    );
    let (row, seen) = s.wait_row("web", "1/1 Running", Duration::from_secs(60), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    assert_eq!(row.restarts, 0);
    assert!(seen.contains(&"Init:0/1".to_string()), "statuses: {seen:?}");
    assert_eq!(
        s.jsonpath(
            "web",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert_eq!(s.jsonpath("web", "{.status.phase}"), "Running");

    let netns = s.netns();
    let body = wait_for("httpd to answer", Duration::from_secs(10), || {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["/bin/busybox", "wget", "-q", "-O", "-"])
            .arg("http://127.0.0.1:8080/index.html")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(body, "hello from the init container\n");

    let events: Vec<(String, String)> = s
        .events("web")
        .into_iter()
        .map(|(_, reason, _, msg)| (reason, msg))
        .collect();
    // `image: busybox` means pull policy Always: the kubelet goes to the
    // registry first; offline (as in CI) it runs the image the node has.
    let pulled = |m: &str| {
        m.starts_with(
            "Registry unreachable; using container image \"busybox\" already present on machine",
        ) || m.starts_with("Successfully pulled image \"busybox\"")
    };
    type Check<'a> = &'a dyn Fn(&str) -> bool;
    let want: [(&str, Check); 9] = [
        ("Scheduled", &|m: &str| {
            m.starts_with("Successfully assigned default/web to ")
        }),
        ("Pulling", &|m: &str| m == "Pulling image \"busybox\""),
        ("Pulled", &pulled),
        ("Created", &|m: &str| m == "Created container: install"),
        ("Started", &|m: &str| m == "Started container install"),
        ("Pulling", &|m: &str| m == "Pulling image \"busybox\""),
        ("Pulled", &pulled),
        ("Created", &|m: &str| m == "Created container: web"),
        ("Started", &|m: &str| m == "Started container web"),
    ];
    let got: Vec<(String, String)> = events.iter().take(want.len()).cloned().collect();
    assert_eq!(got.len(), want.len(), "events: {events:?}");
    for ((r, m), (wr, ok)) in got.iter().zip(want) {
        assert!(r == wr && ok(m), "events: {events:?}");
    }
}

/// restartPolicy Never, OnFailure and Always with a container exiting 1; exit 0 under OnFailure.
#[test]
fn restart_policies() {
    let Some(s) = Server::start(&[]) else { return };
    let pod = |name: &str, policy: &str, code: i32| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: busybox, command: [sh, -c, 'sleep 1; exit {code}']}}
---
"
        )
    };
    s.apply(
        &[
            pod("never", "Never", 1),
            pod("onfailure", "OnFailure", 1),
            pod("always", "Always", 1),
            pod("done", "OnFailure", 0),
        ]
        .concat(),
    );
    // Never: Error, Failed, never restarted.
    let (row, _) = s.wait_row("never", "Error", Duration::from_secs(30), |r| {
        r.status == "Error"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 0));
    wait_for("phase Failed", Duration::from_secs(10), || {
        (s.jsonpath("never", "{.status.phase}") == "Failed").then_some(())
    });
    assert_eq!(
        s.jsonpath(
            "never",
            "{.status.containerStatuses[0].state.terminated.exitCode}/{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "1/Error"
    );
    // exit 0 under OnFailure: Completed, Succeeded.
    let (row, _) = s.wait_row("done", "Completed", Duration::from_secs(30), |r| {
        r.status == "Completed"
    });
    assert_eq!(row.restarts, 0);
    wait_for("phase Succeeded", Duration::from_secs(10), || {
        (s.jsonpath("done", "{.status.phase}") == "Succeeded").then_some(())
    });
    assert_eq!(
        s.jsonpath(
            "done",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
    // OnFailure and Always: restarted, into CrashLoopBackOff, phase stays Running.
    for name in ["onfailure", "always"] {
        let (row, seen) = s.wait_row(
            name,
            "CrashLoopBackOff after a restart",
            Duration::from_secs(40),
            |r| r.restarts >= 1 && r.status == "CrashLoopBackOff",
        );
        assert_eq!(row.ready, "0/1");
        assert!(
            seen.iter().all(|st| [
                "ContainerCreating",
                "Pending",
                "Running",
                "Error",
                "CrashLoopBackOff"
            ]
            .contains(&st.as_str())),
            "{name} statuses: {seen:?}"
        );
        assert_eq!(s.jsonpath(name, "{.status.phase}"), "Running");
        assert_eq!(
            s.jsonpath(
                name,
                "{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.containerStatuses[0].lastState.terminated.reason}"
            ),
            "1/Error"
        );
        // It keeps being restarted.
        s.wait_row(name, "a second restart", Duration::from_secs(30), |r| {
            r.restarts >= 2
        });
    }
    // Never stayed put.
    assert_eq!(s.row("never").unwrap().restarts, 0);
    assert_eq!(s.row("done").unwrap().restarts, 0);
}

fn parse_time(s: &str) -> i64 {
    // RFC 3339 "2024-01-02T03:04:05Z" to seconds since an arbitrary epoch (enough for gaps).
    let (date, time) = s
        .trim_end_matches('Z')
        .split_once('T')
        .expect("a timestamp");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from a civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe;
    days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]
}

/// The crash-loop back-off: the first restart is immediate, then 10 s, then 20 s (the cap).
#[test]
fn crashloop_backoff_grows_to_its_cap() {
    let Some(s) = Server::start(&["--crashloop-backoff-max", "20s"]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'exit 1']}
",
    );
    let uid = wait_for("the pod", Duration::from_secs(10), || {
        let u = s.jsonpath("crash", "{.metadata.uid}");
        (!u.is_empty()).then_some(u)
    });
    // For each restart count n: attempt n's start and the back-off message, read while
    // the container waits in CrashLoopBackOff (then lastState is attempt n).
    let created = Instant::now();
    let mut first_restart: Option<Duration> = None;
    let mut seen: std::collections::BTreeMap<u32, (String, String)> = Default::default();
    wait_for("three restarts", Duration::from_secs(90), || {
        let out = s.jsonpath(
            "crash",
            "{.status.containerStatuses[0].restartCount}|{.status.containerStatuses[0].lastState.terminated.startedAt}|{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        );
        let f: Vec<&str> = out.splitn(4, '|').collect();
        let n: u32 = f[0].parse().ok()?;
        if n >= 1 && first_restart.is_none() {
            first_restart = Some(created.elapsed());
        }
        if f[2] == "CrashLoopBackOff" {
            seen.insert(n, (f[1].to_string(), f[3].to_string()));
        }
        seen.contains_key(&3).then_some(())
    });
    assert!(
        first_restart.unwrap() < Duration::from_secs(8),
        "the first restart is immediate: {first_restart:?}"
    );
    let t = |n: u32| parse_time(&seen[&n].0);
    assert!(
        (9..=14).contains(&(t(2) - t(1))),
        "second restart ~10s after the first: {seen:?}"
    );
    assert!(
        (19..=25).contains(&(t(3) - t(2))),
        "third restart ~20s (the cap) after the second: {seen:?}"
    );
    for (n, secs) in [(1, 10), (2, 20), (3, 20)] {
        assert_eq!(
            seen[&n].1,
            format!("back-off {secs}s restarting failed container=c pod=crash_default({uid})"),
            "{seen:?}"
        );
    }
    let (row, _) = s.wait_row("crash", "CrashLoopBackOff", Duration::from_secs(5), |r| {
        r.status == "CrashLoopBackOff"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 3));
    let events = s.events("crash");
    assert!(
        events.iter().any(|(ty, reason, _, m)| ty == "Warning"
            && reason == "BackOff"
            && m == &format!("Back-off restarting failed container c in pod crash_default({uid})")),
        "events: {events:?}"
    );
}

/// A failing liveness probe restarts the container, with the kubelet's events.
#[test]
fn liveness_probe_failure_restarts_the_container() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 3600']
    livenessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
",
    );
    s.wait_row("live", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    let (row, _) = s.wait_row("live", "a restart", Duration::from_secs(30), |r| {
        r.restarts >= 1
    });
    assert!(row.restarts >= 1);
    assert_eq!(
        s.jsonpath(
            "live",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "137",
        "the probe kills it (sleep ignores SIGTERM as PID 1)"
    );
    let events = s.events("live");
    assert!(
        events.iter().any(|(ty, r, _, m)| ty == "Warning"
            && r == "Unhealthy"
            && m.starts_with("Liveness probe failed")),
        "events: {events:?}"
    );
    assert!(
        events.iter().any(|(ty, r, _, m)| ty == "Normal"
            && r == "Killing"
            && m == "Container c failed liveness probe, will be restarted"),
        "events: {events:?}"
    );
    // The new attempt is healthy again.
    s.wait_row("live", "running again", Duration::from_secs(20), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
}

/// A readiness probe flipping: READY and the Ready condition follow it, and
/// the container is never restarted.
#[test]
fn readiness_probe_flips_ready() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'while true; do touch /tmp/ready; sleep 4; rm -f /tmp/ready; sleep 4; done']
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
",
    );
    let ready = |s: &Server| {
        s.jsonpath(
            "ready",
            r#"{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="ContainersReady")].status}/{.status.containerStatuses[0].ready}"#,
        )
    };
    let mut transitions = Vec::new();
    for want in ["1/1", "0/1", "1/1", "0/1"] {
        s.wait_row("ready", want, Duration::from_secs(20), |r| {
            r.ready == want && r.status == "Running"
        });
        transitions.push(ready(&s));
    }
    // The conditions follow READY (read just after; a flip every 4 s leaves time).
    assert_eq!(
        transitions,
        [
            "True/True/true",
            "False/False/false",
            "True/True/true",
            "False/False/false"
        ]
    );
    assert_eq!(s.row("ready").unwrap().restarts, 0);
    let events = s.events("ready");
    assert!(
        events
            .iter()
            .any(|(_, r, _, m)| r == "Unhealthy" && m.starts_with("Readiness probe failed")),
        "events: {events:?}"
    );
}

/// A startup probe holds off liveness until it succeeds; then `started` is true.
#[test]
fn startup_probe_gates_liveness() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'sleep 5; touch /tmp/started; sleep 3600']
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
",
    );
    wait_for("the container to run", Duration::from_secs(30), || {
        let started = s.jsonpath(
            "slow",
            "{.status.containerStatuses[0].state.running.startedAt}",
        );
        (!started.is_empty()).then_some(())
    });
    let before = s.jsonpath(
        "slow",
        "{.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}",
    );
    assert_eq!(before, "false/false");
    assert_eq!(s.row("slow").unwrap().ready, "0/1");
    let (row, _) = s.wait_row("slow", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1"
    });
    assert_eq!(
        row.restarts, 0,
        "liveness did not run before startup passed"
    );
    assert_eq!(
        s.jsonpath("slow", "{.status.containerStatuses[0].started}"),
        "true"
    );
    let events = s.events("slow");
    assert!(
        events
            .iter()
            .any(|(_, r, _, m)| r == "Unhealthy" && m.starts_with("Startup probe failed")),
        "events: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, r, _, m)| r == "Killing" || m.starts_with("Liveness probe failed")),
        "events: {events:?}"
    );
    // Still fine a few liveness periods later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.row("slow").unwrap().restarts, 0);
}

/// A process over its memory limit is OOM-killed, and the status says so.
#[test]
fn memory_limit_oom_kills() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]
    resources: {limits: {memory: 16Mi}}
",
    );
    let (row, _) = s.wait_row("oom", "OOMKilled", Duration::from_secs(30), |r| {
        r.status == "OOMKilled"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 0));
    assert_eq!(
        s.jsonpath(
            "oom",
            "{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "OOMKilled/137"
    );
    assert_eq!(s.jsonpath("oom", "{.status.phase}"), "Failed");
}

/// Environment from a ConfigMap key, a Secret key and the downward API, and a
/// ConfigMap volume.
#[test]
fn env_and_config_map_volume() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, file.txt: from-the-volume}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: czNjcmV0}
---
apiVersion: v1
kind: Pod
metadata: {name: envpod, labels: {app: demo}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo GREETING=$GREETING; echo PASSWORD=$PASSWORD; echo POD=$POD_NAME/$POD_NS; echo NODE=$NODE; echo LITERAL=$LITERAL; echo FILE=$(cat /cfg/file.txt)']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: LITERAL, value: plain}
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - {name: cfg, configMap: {name: settings}}
",
    );
    s.wait_row("envpod", "Completed", Duration::from_secs(30), |r| {
        r.status == "Completed"
    });
    let node = s.jsonpath("envpod", "{.spec.nodeName}");
    assert!(!node.is_empty());
    let log = s.log_file("envpod", "c", 0);
    // CRI log lines: "<time> stdout F <text>".
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "GREETING=hello".to_string(),
            "PASSWORD=s3cret".to_string(),
            "POD=envpod/default".to_string(),
            format!("NODE={node}"),
            "LITERAL=plain".to_string(),
            "FILE=from-the-volume".to_string(),
        ],
        "log: {log}"
    );
    assert!(log.lines().all(|l| l.split(' ').nth(1) == Some("stdout")));
}

/// `kubectl delete pod` stops a container that ignores SIGTERM after the pod's grace
/// period (not the default 30 s), and runs preStop hooks first.
#[test]
fn graceful_delete_honours_grace_period_and_pre_stop() {
    let Some(s) = Server::start(&[]) else { return };
    let host = s.data().join("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: c, image: busybox, command: [sleep, '3600']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, 'echo pre-stop ran > /host/prestop']}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes:
  - {{name: host, hostPath: {{path: {}, type: Directory}}}}
",
        host.display()
    ));
    for p in ["stubborn", "hooked"] {
        s.wait_row(p, "1/1 Running", Duration::from_secs(30), |r| {
            r.ready == "1/1" && r.status == "Running"
        });
    }
    let t = Instant::now();
    s.ok(&["delete", "pod", "stubborn", "--wait=true"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(12),
        "deleting a SIGTERM-ignoring pod with a 3 s grace took {took:?}"
    );
    assert!(s.row("stubborn").is_none());

    assert!(!host.join("prestop").exists());
    let t = Instant::now();
    s.ok(&["delete", "pod", "hooked", "--wait=true"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(host.join("prestop")).unwrap(),
        "pre-stop ran\n"
    );
}

/// The server is SIGKILLed and restarted: the agent re-adopts the running
/// container instead of restarting it.
#[test]
fn agent_restart_readopts_running_containers() {
    let Some(mut s) = Server::start(&[]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, '3600']}
",
    );
    s.wait_row("survivor", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    let state = "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}";
    let before = s.jsonpath("survivor", state);
    s.kill9();
    std::thread::sleep(Duration::from_secs(1));
    s.spawn();
    // Give the agent several relist/sync rounds.
    std::thread::sleep(Duration::from_secs(6));
    let (row, seen) = s.wait_row("survivor", "1/1 Running", Duration::from_secs(10), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    assert_eq!(row.restarts, 0, "statuses: {seen:?}");
    assert_eq!(s.jsonpath("survivor", state), before);
    let ids: BTreeSet<String> = std::fs::read_dir(s.data().join("agent/containers/containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one container, not a second attempt: {ids:?}");
    let events = s.events("survivor");
    assert_eq!(
        events.iter().filter(|(_, r, _, _)| r == "Started").count(),
        1,
        "events: {events:?}"
    );
}

/// kubectl logs (-c, --tail, --previous), exec (exit codes, stdin) and attach against a running pod.
#[test]
fn logs_exec_and_attach() {
    let Some(s) = Server::start(&["--crashloop-backoff-max", "20s"]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, 'echo from-init']
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done']
",
    );
    s.wait_row("talk", "Running", Duration::from_secs(30), |r| {
        r.status == "Running"
    });
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(s.ok(&["logs", "talk", "-c", "init"]), "from-init\n");
    let logs = s.ok(&["logs", "talk"]);
    assert!(logs.starts_with("line 0\nline 1\n"), "{logs}");
    let tail = s.ok(&["logs", "talk", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let prev = s.kubectl(&["logs", "talk", "--previous"]);
    assert!(!prev.status.success());
    assert!(
        String::from_utf8_lossy(&prev.stderr)
            .contains("previous terminated container \"c\" in pod \"talk\" not found")
    );

    let out = s.kubectl(&[
        "exec",
        "talk",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"));
    let mut child = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
        .args([
            "exec",
            "-i",
            "talk",
            "--",
            "sh",
            "-c",
            "read x; echo got:$x",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got:hello\n");

    // attach streams what the container prints from now on.
    let out = std::process::Command::new("timeout")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
        .args(["3", "kubectl", "attach", "talk"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().filter(|l| l.starts_with("line ")).count() >= 3,
        "{text}"
    );
    assert!(
        !text.contains("line 0\n"),
        "attach shows new output only: {text}"
    );
}

/// The scheduler: a pod whose nodeSelector no node matches stays Pending
/// with Kubernetes' FailedScheduling message; labelling the node schedules it.
#[test]
fn scheduler_reports_failed_scheduling_then_places_the_pod() {
    let Some(s) = Server::start(&[]) else { return };
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {disk: ssd}
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
",
    );
    let reason = wait_for("FailedScheduling", Duration::from_secs(20), || {
        s.events("picky")
            .into_iter()
            .find(|(_, r, _, _)| r == "FailedScheduling")
            .map(|(_, _, _, m)| m)
    });
    assert_eq!(
        reason,
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        s.jsonpath(
            "picky",
            "{.status.conditions[?(@.type==\"PodScheduled\")].reason}"
        ),
        "Unschedulable"
    );
    assert_eq!(s.row("picky").unwrap().status, "Pending");
    s.ok(&["label", "node", &node, "disk=ssd"]);
    s.wait_row("picky", "Running", Duration::from_secs(30), |r| {
        r.status == "Running"
    });
    assert_eq!(s.jsonpath("picky", "{.spec.nodeName}"), node);
}

/// `kubectl run -i --rm`: the container's stdin is kubectl's (stdinOnce: it
/// reads EOF when kubectl's input ends), its output comes back, and the pod
/// is deleted afterwards.
#[test]
fn kubectl_run_interactive_feeds_stdin_and_removes_the_pod() {
    let Some(s) = Server::start(&[]) else {
        return;
    };
    wait_for("node Ready", Duration::from_secs(30), || {
        let out = s.kubectl(&["get", "nodes", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(" Ready ")
            .then_some(())
    });
    let out = s.kubectl_input(
        &[
            "run",
            "talk",
            "--image=busybox",
            "--rm",
            "-i",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "while read line; do echo \"got: $line\"; done; echo eof",
        ],
        b"hello\nworld\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl run -i failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("got: hello\ngot: world\neof\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pod \"talk\" deleted"), "{stdout}");
}
