//! Jobs with the real kubectl against an in-process API server running the
//! Job controller (with a short back-off) and the garbage collector. A
//! stand-in kubelet runs every pod at once: image `busybox:ok` succeeds,
//! `busybox:fail` fails, anything else keeps running and Ready.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    kubeconfig: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    _running: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut c = skiff_apiserver::Config::new(dir.path());
    c.port = 0;
    let running =
        skiff_apiserver::start_with_store(c, std::sync::Arc::new(skiff_store::MemoryStore::new()))
            .await
            .unwrap();
    let client = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let options = skiff_controllers::job::Options {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    };
    tokio::spawn(skiff_controllers::job::run_with(
        client.clone(),
        options,
        skiff_controllers::informer::own_pods(client.clone()),
        shutdown.clone(),
    ));
    tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown));
    tokio::spawn(kubelet(client.clone()));
    Cluster {
        kubeconfig: running.kubeconfig.clone(),
        _stop: stop,
        _running: running,
        _dir: dir,
    }
}

/// The stand-in kubelet: runs each new pod to its image's outcome.
async fn kubelet(client: kube::Client) {
    let mut s = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
            continue;
        };
        if p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|ph| ph != "Pending")
            || p.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let image = p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string();
        let status = match image.as_str() {
            "busybox:ok" => json!({"phase": "Succeeded", "startTime": now}),
            "busybox:fail" => json!({"phase": "Failed", "startTime": now}),
            _ => json!({"phase": "Running", "startTime": now, "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}),
        };
        let api: Api<Pod> =
            Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
        let _ = api
            .patch_status(
                p.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await;
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(c: &Cluster, args: &[&str]) -> String {
    let (good, text) = kubectl(c, args);
    assert!(good, "kubectl {args:?}: {text}");
    text
}

fn wait(c: &Cluster, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}",
            ok(c, &["get", "jobs,pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn no_kubectl() -> bool {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "kubectl missing in CI");
        eprintln!("\n*** SKIPPING job test: no kubectl ***\n");
        return true;
    }
    false
}

fn row(c: &Cluster, job: &str) -> Vec<String> {
    ok(c, &["get", "job", job, "--no-headers"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_and_expire_as_kubectl_shows() {
    if no_kubectl() {
        return;
    }
    let c = cluster().await;
    tokio::task::spawn_blocking(move || {
        // kubectl create job: one pod, succeeds, Complete.
        ok(&c, &["create", "job", "hello", "--image=busybox:ok"]);
        let out = ok(&c, &["wait", "--for=condition=complete", "job/hello", "--timeout=30s"]);
        assert!(out.contains("condition met"), "{out}");
        let r = row(&c, "hello");
        assert_eq!((r[1].as_str(), r[2].as_str()), ("Complete", "1/1"), "{r:?}");
        let conds = ok(&c, &["get", "job", "hello", "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}"]);
        assert_eq!(conds.trim(), "SuccessCriteriaMet=True/CompletionsReached Complete=True/CompletionsReached");
        let st = ok(&c, &["get", "job", "hello", "-o",
            "jsonpath={.status.succeeded}/{.status.failed}/{.status.uncountedTerminatedPods}/{.status.completionTime}"]);
        assert!(st.starts_with("1//{}/20"), "{st}");
        let pods = ok(&c, &["get", "pods", "-l", "job-name=hello", "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.finalizers}{\"\\n\"}{end}"]);
        assert_eq!(pods.lines().count(), 1, "{pods}");
        assert!(pods.starts_with("hello-") && !pods.contains("job-tracking"), "finalizer removed: {pods}");
        let desc = ok(&c, &["describe", "job", "hello"]);
        assert!(desc.contains("SuccessfulCreate") && desc.contains("Created pod: hello-"), "{desc}");
        assert!(desc.contains("Completed") && desc.contains("Job completed"), "{desc}");
        assert!(desc.contains("1 Succeeded / 0 Failed"), "{desc}");

        // Indexed, 3 completions, 2 at a time.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"idx"},
            "spec":{"completions":3,"parallelism":2,"completionMode":"Indexed",
            "template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox:ok"}]}}}}"#;
        std::fs::write(c._dir.path().join("idx.json"), yaml).unwrap();
        ok(&c, &["apply", "-f", c._dir.path().join("idx.json").to_str().unwrap()]);
        ok(&c, &["wait", "--for=condition=complete", "job/idx", "--timeout=30s"]);
        assert_eq!(row(&c, "idx")[2], "3/3");
        let ix = ok(&c, &["get", "job", "idx", "-o", "jsonpath={.status.completedIndexes}"]);
        assert_eq!(ix, "0-2");
        let names = ok(&c, &["get", "pods", "-l", "job-name=idx", "-o",
            "jsonpath={range .items[*]}{.metadata.name}/{.spec.hostname}{\"\\n\"}{end}"]);
        let mut hosts: Vec<&str> = names.lines().map(|l| l.split('/').nth(1).unwrap()).collect();
        hosts.sort();
        assert_eq!(hosts, ["idx-0", "idx-1", "idx-2"], "{names}");

        // Failing pods: back-off limit 2 → three failures, then Failed.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"bad"},
            "spec":{"backoffLimit":2,"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"c","image":"busybox:fail"}]}}}}"#;
        std::fs::write(c._dir.path().join("bad.json"), yaml).unwrap();
        ok(&c, &["apply", "-f", c._dir.path().join("bad.json").to_str().unwrap()]);
        let out = ok(&c, &["wait", "--for=condition=failed", "job/bad", "--timeout=30s"]);
        assert!(out.contains("condition met"), "{out}");
        assert_eq!(row(&c, "bad")[1], "Failed");
        let st = ok(&c, &["get", "job", "bad", "-o", "jsonpath={.status.failed}"]);
        assert_eq!(st, "3", "backoffLimit 2 allows 2 retries");
        let desc = ok(&c, &["describe", "job", "bad"]);
        assert!(desc.contains("BackoffLimitExceeded") && desc.contains("Job has reached the specified backoff limit"), "{desc}");

        // Suspend: running pods go, resume brings them back.
        ok(&c, &["create", "job", "long", "--image=busybox:run"]);
        wait(&c, "long runs", || row(&c, "long")[1] == "Running"
            && ok(&c, &["get", "job", "long", "-o", "jsonpath={.status.ready}"]) == "1");
        ok(&c, &["patch", "job", "long", "-p", r#"{"spec":{"suspend":true}}"#]);
        wait(&c, "suspended", || row(&c, "long")[1] == "Suspended");
        wait(&c, "pods gone", || ok(&c, &["get", "pods", "-l", "job-name=long", "-o", "name"]).trim().is_empty());
        ok(&c, &["patch", "job", "long", "-p", r#"{"spec":{"suspend":false}}"#]);
        wait(&c, "resumed", || row(&c, "long")[1] == "Running"
            && ok(&c, &["get", "pods", "-l", "job-name=long", "-o", "name"]).lines().count() == 1);
        let desc = ok(&c, &["describe", "job", "long"]);
        assert!(desc.contains("Job suspended") && desc.contains("Job resumed"), "{desc}");
        let failed = ok(&c, &["get", "job", "long", "-o", "jsonpath={.status.failed}"]);
        assert_eq!(failed, "", "suspension is not a failure");

        // Deleting the Job lets its running pod go too (finalizer released).
        ok(&c, &["delete", "job", "long"]);
        wait(&c, "long's pods collected", || {
            ok(&c, &["get", "pods", "-l", "job-name=long", "-o", "name"]).trim().is_empty()
        });

        // ttlSecondsAfterFinished: the finished Job is deleted with its pods.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"brief"},
            "spec":{"ttlSecondsAfterFinished":1,"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"c","image":"busybox:ok"}]}}}}"#;
        std::fs::write(c._dir.path().join("brief.json"), yaml).unwrap();
        ok(&c, &["apply", "-f", c._dir.path().join("brief.json").to_str().unwrap()]);
        ok(&c, &["wait", "--for=condition=complete", "job/brief", "--timeout=30s"]);
        wait(&c, "brief expired", || {
            !kubectl(&c, &["get", "job", "brief"]).0
                && ok(&c, &["get", "pods", "-l", "job-name=brief", "-o", "name"]).trim().is_empty()
        });
    })
    .await
    .unwrap();
}
