//! End to end: the pod network, Services and cluster DNS, with the real
//! kubectl, runc and CNI plugins. The server and an agent run as two hosts on
//! a simulated LAN (each its own network namespace), so pod traffic crosses
//! nodes through the routes the agents install.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::{Server, wait_for};

/// A busybox web server answering with its pod's name, on `node`.
fn web_pod(name: &str, node: &str, ready_file: bool) -> String {
    let probe = if ready_file {
        "\n    readinessProbe:\n      exec: {command: [cat, /tmp/ready]}\n      periodSeconds: 1\n      failureThreshold: 1"
    } else {
        ""
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www']
    ports: [{{name: http, containerPort: 8080}}]{probe}
"#
    )
}

/// A pod on n1 to run requests from.
const CLIENT: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: n1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
"#;

fn wait_ready(s: &Server, pod: &str) {
    wait_for(&format!("{pod} Ready"), Duration::from_secs(60), || {
        (s.jsonpath(pod, "{.status.conditions[?(@.type==\"Ready\")].status}") == "True")
            .then_some(())
    });
}

/// `wget` from inside pod `from`; the body, or None on failure.
fn fetch(s: &Server, from: &str, url: &str) -> Option<String> {
    // busybox's `wget -T` crashes on a refused connection; `timeout` bounds it instead.
    let out = s.kubectl(&["exec", from, "--", "timeout", "5", "wget", "-qO-", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The names answering `url` from `from` over `n` requests.
fn answers(s: &Server, from: &str, url: &str, n: usize) -> BTreeSet<String> {
    (0..n).filter_map(|_| fetch(s, from, url)).collect()
}

fn endpoint_ips(s: &Server, svc: &str) -> BTreeSet<String> {
    let out = s.kubectl(&[
        "get",
        "endpoints",
        svc,
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn pods_services_and_dns_across_two_nodes() {
    let Some(mut s) = Server::start_networked(&["--node-name", "n1"]) else {
        return;
    };
    s.join_agent("n2", &[]);
    // Every node has its own pod CIDR.
    let cidr1 = s.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.podCIDR}"]);
    let cidr2 = s.ok(&["get", "node", "n2", "-o", "jsonpath={.spec.podCIDR}"]);
    assert!(
        cidr1.starts_with("10.42.") && cidr1.ends_with(".0/24"),
        "{cidr1}"
    );
    assert!(cidr2.starts_with("10.42.") && cidr2 != cidr1, "{cidr2}");

    s.apply(&web_pod("web-1", "n1", false));
    s.apply(&web_pod("web-2", "n2", true));
    s.apply(CLIENT);
    for p in ["web-1", "web-2", "client"] {
        wait_ready(&s, p);
    }
    // Pod IPs from their node's CIDR, as `kubectl get pods -o wide` shows them.
    let ip1 = s.jsonpath("web-1", "{.status.podIP}");
    let ip2 = s.jsonpath("web-2", "{.status.podIP}");
    let prefix = |c: &str| c.rsplit_once('.').unwrap().0.to_string();
    assert!(ip1.starts_with(&prefix(&cidr1)), "{ip1} in {cidr1}");
    assert!(ip2.starts_with(&prefix(&cidr2)), "{ip2} in {cidr2}");
    assert_eq!(s.jsonpath("web-2", "{.status.hostIP}"), "10.99.0.2");
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&ip1) && wide.contains(&ip2), "{wide}");

    // Pod to pod, across nodes, unmasqueraded.
    assert_eq!(
        fetch(&s, "client", &format!("http://{ip2}:8080/")).as_deref(),
        Some("web-2")
    );

    // A Service: endpoints, ClusterIP, DNS name, and the kubelet's env vars.
    s.ok(&[
        "expose",
        "pod",
        "web-1",
        "--name",
        "web",
        "--port",
        "80",
        "--target-port",
        "http",
        "--selector",
        "app=web",
    ]);
    wait_for("endpoints of web", Duration::from_secs(20), || {
        (endpoint_ips(&s, "web") == BTreeSet::from([ip1.clone(), ip2.clone()])).then_some(())
    });
    let cluster_ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip}");
    let both = BTreeSet::from(["web-1".to_string(), "web-2".to_string()]);
    let seen = wait_for("ClusterIP balancing", Duration::from_secs(20), || {
        let a = answers(&s, "client", &format!("http://{cluster_ip}/"), 16);
        (a == both).then_some(a)
    });
    assert_eq!(seen, both);
    assert_eq!(
        answers(&s, "client", "http://web.default.svc.cluster.local/", 16),
        both,
        "the DNS name reaches both pods"
    );
    assert!(fetch(&s, "client", "http://web/").is_some(), "search path");
    // The issue's one-liner: a throw-away pod fetching through the DNS name.
    let out = s.kubectl(&[
        "run",
        "c",
        "--image=busybox",
        "--rm",
        "-i",
        "--restart=Never",
        "--",
        "wget",
        "-qO-",
        "http://web.default.svc.cluster.local",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && (text.contains("web-1") || text.contains("web-2")),
        "kubectl run --rm -i: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolv = s.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
    );

    // The API server through the kubernetes Service, by name.
    let out = s.kubectl(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        "echo | timeout 5 nc kubernetes.default.svc.cluster.local 443",
    ]);
    assert!(
        out.status.success(),
        "kubernetes Service: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An ExternalName Service is a CNAME, here to the web Service.
    s.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name",
        "web.default.svc.cluster.local",
    ]);
    let text = wait_for("ExternalName resolves", Duration::from_secs(20), || {
        let out = s.kubectl(&[
            "exec",
            "client",
            "--",
            "nslookup",
            "ext.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains(&cluster_ip).then_some(text)
    });
    assert!(text.contains("web.default.svc.cluster.local"), "{text}");

    // Readiness: web-2 failing its probe leaves the endpoints and the traffic.
    s.ok(&["exec", "web-2", "--", "rm", "/tmp/ready"]);
    wait_for("web-2 out of endpoints", Duration::from_secs(10), || {
        (endpoint_ips(&s, "web") == BTreeSet::from([ip1.clone()])).then_some(())
    });
    let not_ready = s.ok(&[
        "get",
        "endpoints",
        "web",
        "-o",
        "jsonpath={.subsets[*].notReadyAddresses[*].ip}",
    ]);
    assert_eq!(not_ready, ip2);
    assert_eq!(
        wait_for("traffic only to web-1", Duration::from_secs(10), || {
            let a = answers(&s, "client", &format!("http://{cluster_ip}/"), 10);
            (a == BTreeSet::from(["web-1".to_string()])).then_some(a)
        }),
        BTreeSet::from(["web-1".to_string()])
    );
    s.ok(&["exec", "web-2", "--", "touch", "/tmp/ready"]);
    wait_for("web-2 back", Duration::from_secs(20), || {
        (answers(&s, "client", &format!("http://{cluster_ip}/"), 12) == both).then_some(())
    });

    // A headless Service resolves to every ready pod.
    s.apply(
        r#"apiVersion: v1
kind: Service
metadata: {name: web-h}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"#,
    );
    wait_for("headless DNS", Duration::from_secs(20), || {
        let out = s.kubectl(&[
            "exec",
            "client",
            "--",
            "nslookup",
            "web-h.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (text.contains(&ip1) && text.contains(&ip2)).then_some(())
    });

    // NodePort, on the other node's address, from the server's host.
    s.ok(&[
        "expose",
        "pod",
        "web-1",
        "--name",
        "web-np",
        "--type",
        "NodePort",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--selector",
        "app=web",
    ]);
    let node_port = s.ok(&[
        "get",
        "svc",
        "web-np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let url = format!("http://10.99.0.2:{node_port}/");
    let got = wait_for("NodePort answers", Duration::from_secs(20), || {
        let out = s.on_host(
            1,
            &[
                "/bin/busybox",
                "timeout",
                "5",
                "/bin/busybox",
                "wget",
                "-qO-",
                &url,
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    assert!(both.contains(&got), "{got}");
}

#[test]
fn host_ports_affinity_hosts_env_port_forward_and_address_release() {
    let Some(mut s) = Server::start_networked(&["--node-name", "n1"]) else {
        return;
    };
    s.join_agent("n2", &[]);
    // A Service created before the client, so the client's containers get its variables.
    s.apply(
        r#"apiVersion: v1
kind: Service
metadata: {name: aff}
spec:
  selector: {app: aff}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: http}]
"#,
    );
    let mut a = web_pod("web-a", "n2", false).replace("app: web", "app: aff");
    a = a.replace(
        "[{name: http, containerPort: 8080}]",
        "[{name: http, containerPort: 8080, hostPort: 8081}]",
    );
    s.apply(&a);
    s.apply(&web_pod("web-b", "n1", false).replace("app: web", "app: aff"));
    s.apply(CLIENT);
    for p in ["web-a", "web-b", "client"] {
        wait_ready(&s, p);
    }
    let ip_a = s.jsonpath("web-a", "{.status.podIP}");

    // The kubelet's /etc/hosts names the pod.
    let hosts = s.ok(&["exec", "web-a", "--", "cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n"),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("\n{ip_a}\tweb-a\n")), "{hosts}");

    // Service variables, the kubernetes Service's included.
    let cluster_ip = s.ok(&["get", "svc", "aff", "-o", "jsonpath={.spec.clusterIP}"]);
    let env = s.ok(&["exec", "client", "--", "env"]);
    assert!(
        env.contains(&format!("AFF_SERVICE_HOST={cluster_ip}\n")),
        "{env}"
    );
    assert!(env.contains("AFF_SERVICE_PORT=80\n"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.43.0.1\n"), "{env}");

    // hostPort: the node's address forwards into the pod.
    let got = wait_for("hostPort answers", Duration::from_secs(20), || {
        let out = s.on_host(
            1,
            &[
                "/bin/busybox",
                "timeout",
                "5",
                "/bin/busybox",
                "wget",
                "-qO-",
                "http://10.99.0.2:8081/",
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    assert_eq!(got, "web-a");

    // ClientIP affinity: one client, one backend (named targetPort resolved per pod).
    wait_for("endpoints of aff", Duration::from_secs(20), || {
        (endpoint_ips(&s, "aff").len() == 2).then_some(())
    });
    let seen = wait_for("affinity", Duration::from_secs(20), || {
        let a = answers(&s, "client", &format!("http://{cluster_ip}/"), 12);
        (a.len() == 1).then_some(a)
    });
    assert_eq!(seen.len(), 1, "{seen:?}");

    // kubectl port-forward svc/aff: kubectl picks a pod of the Service.
    let out = s.data().join("pf.out");
    let mut pf = s.kubectl_spawn(&["port-forward", "svc/aff", "18080:80"], &out);
    let body = wait_for(
        "port-forward to the Service",
        Duration::from_secs(20),
        || {
            let o = s.on_host(
                1,
                &[
                    "/bin/busybox",
                    "timeout",
                    "5",
                    "/bin/busybox",
                    "wget",
                    "-qO-",
                    "http://127.0.0.1:18080/",
                ],
            );
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        },
    );
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body == "web-a" || body == "web-b", "{body}");

    // Deleting a pod releases its address on its node.
    let held = s.data().join("n2/agent/cni/networks/skiff").join(&ip_a);
    assert!(held.exists(), "{} is allocated", held.display());
    s.ok(&["delete", "pod", "web-a", "--wait=true"]);
    wait_for("web-a's address released", Duration::from_secs(20), || {
        (!held.exists()).then_some(())
    });
}
