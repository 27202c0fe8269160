//! Jobs with the real kubectl against an in-process API server running the
//! Job controller (with a short back-off) and the garbage collector. A
//! stand-in kubelet runs every pod at once: image `busybox:ok` succeeds,
//! `busybox:fail` fails, anything else keeps running and Ready.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::time::Duration;

mod support;
use support::{Cluster, no_kubectl};

async fn cluster() -> Cluster {
    Cluster::start("jobs,pods", |client, shutdown| {
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
        tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown.clone()));
        tokio::spawn(kubelet(client.clone()));
    })
    .await
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

fn row(c: &Cluster, job: &str) -> Vec<String> {
    c.ok(&["get", "job", job, "--no-headers"])
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
        c.ok(&["create", "job", "hello", "--image=busybox:ok"]);
        let out = c.ok(&["wait", "--for=condition=complete", "job/hello", "--timeout=30s"]);
        assert!(out.contains("condition met"), "{out}");
        let r = row(&c, "hello");
        assert_eq!((r[1].as_str(), r[2].as_str()), ("Complete", "1/1"), "{r:?}");
        let conds = c.ok(&["get", "job", "hello", "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}"]);
        assert_eq!(conds.trim(), "SuccessCriteriaMet=True/CompletionsReached Complete=True/CompletionsReached");
        let st = c.ok(&["get", "job", "hello", "-o",
            "jsonpath={.status.succeeded}/{.status.failed}/{.status.uncountedTerminatedPods}/{.status.completionTime}"]);
        assert!(st.starts_with("1//{}/20"), "{st}");
        let pods = c.ok(&["get", "pods", "-l", "job-name=hello", "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.finalizers}{\"\\n\"}{end}"]);
        assert_eq!(pods.lines().count(), 1, "{pods}");
        assert!(pods.starts_with("hello-") && !pods.contains("job-tracking"), "finalizer removed: {pods}");
        let desc = c.ok(&["describe", "job", "hello"]);
        assert!(desc.contains("SuccessfulCreate") && desc.contains("Created pod: hello-"), "{desc}");
        assert!(desc.contains("Completed") && desc.contains("Job completed"), "{desc}");
        assert!(desc.contains("1 Succeeded / 0 Failed"), "{desc}");

        // Indexed, 3 completions, 2 at a time.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"idx"},
            "spec":{"completions":3,"parallelism":2,"completionMode":"Indexed",
            "template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox:ok"}]}}}}"#;
        std::fs::write(c.dir.path().join("idx.json"), yaml).unwrap();
        c.ok(&["apply", "-f", c.dir.path().join("idx.json").to_str().unwrap()]);
        c.ok(&["wait", "--for=condition=complete", "job/idx", "--timeout=30s"]);
        assert_eq!(row(&c, "idx")[2], "3/3");
        let ix = c.ok(&["get", "job", "idx", "-o", "jsonpath={.status.completedIndexes}"]);
        assert_eq!(ix, "0-2");
        let names = c.ok(&["get", "pods", "-l", "job-name=idx", "-o",
            "jsonpath={range .items[*]}{.metadata.name}/{.spec.hostname}{\"\\n\"}{end}"]);
        let mut hosts: Vec<&str> = names.lines().map(|l| l.split('/').nth(1).unwrap()).collect();
        hosts.sort();
        assert_eq!(hosts, ["idx-0", "idx-1", "idx-2"], "{names}");

        // Failing pods: back-off limit 2 → three failures, then Failed.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"bad"},
            "spec":{"backoffLimit":2,"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"c","image":"busybox:fail"}]}}}}"#;
        std::fs::write(c.dir.path().join("bad.json"), yaml).unwrap();
        c.ok(&["apply", "-f", c.dir.path().join("bad.json").to_str().unwrap()]);
        let out = c.ok(&["wait", "--for=condition=failed", "job/bad", "--timeout=30s"]);
        assert!(out.contains("condition met"), "{out}");
        assert_eq!(row(&c, "bad")[1], "Failed");
        let st = c.ok(&["get", "job", "bad", "-o", "jsonpath={.status.failed}"]);
        assert_eq!(st, "3", "backoffLimit 2 allows 2 retries");
        let desc = c.ok(&["describe", "job", "bad"]);
        assert!(desc.contains("BackoffLimitExceeded") && desc.contains("Job has reached the specified backoff limit"), "{desc}");

        // Suspend: running pods go, resume brings them back.
        c.ok(&["create", "job", "long", "--image=busybox:run"]);
        c.wait("long runs", || row(&c, "long")[1] == "Running"
            && c.ok(&["get", "job", "long", "-o", "jsonpath={.status.ready}"]) == "1");
        c.ok(&["patch", "job", "long", "-p", r#"{"spec":{"suspend":true}}"#]);
        c.wait("suspended", || row(&c, "long")[1] == "Suspended");
        c.wait("pods gone", || c.ok(&["get", "pods", "-l", "job-name=long", "-o", "name"]).trim().is_empty());
        c.ok(&["patch", "job", "long", "-p", r#"{"spec":{"suspend":false}}"#]);
        c.wait("resumed", || row(&c, "long")[1] == "Running"
            && c.ok(&["get", "pods", "-l", "job-name=long", "-o", "name"]).lines().count() == 1);
        let desc = c.ok(&["describe", "job", "long"]);
        assert!(desc.contains("Job suspended") && desc.contains("Job resumed"), "{desc}");
        let failed = c.ok(&["get", "job", "long", "-o", "jsonpath={.status.failed}"]);
        assert_eq!(failed, "", "suspension is not a failure");

        // Deleting the Job lets its running pod go too (finalizer released).
        c.ok(&["delete", "job", "long"]);
        c.wait("long's pods collected", || {
            c.ok(&["get", "pods", "-l", "job-name=long", "-o", "name"]).trim().is_empty()
        });

        // ttlSecondsAfterFinished: the finished Job is deleted with its pods.
        let yaml = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"brief"},
            "spec":{"ttlSecondsAfterFinished":1,"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"c","image":"busybox:ok"}]}}}}"#;
        std::fs::write(c.dir.path().join("brief.json"), yaml).unwrap();
        c.ok(&["apply", "-f", c.dir.path().join("brief.json").to_str().unwrap()]);
        c.ok(&["wait", "--for=condition=complete", "job/brief", "--timeout=30s"]);
        c.wait("brief expired", || {
            !c.kubectl(&["get", "job", "brief"]).0
                && c.ok(&["get", "pods", "-l", "job-name=brief", "-o", "name"]).trim().is_empty()
        });
    })
    .await
    .unwrap();
}
