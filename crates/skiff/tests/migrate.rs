//! `skiff migrate` copies a SQLite cluster into a real etcd (Debian
//! etcd-server): the objects come back on etcd with their uids, and the
//! controllers carry on; a second migrate into the same etcd, or one while
//! the server runs, is refused. And `skiff server` reaches an etcd that
//! demands client certificates with `--datastore-cafile/certfile/keyfile`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod etcd_support;
use etcd_support::{Kill, etcd, etcdctl, free_port, kubectl, prerequisites, wait};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

fn skiff(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
    c.args(args);
    c
}

/// `skiff server --disable-agent` on `data`, with more flags.
fn server(data: &Path, port: u16, flags: &[&str]) -> Command {
    let mut c = skiff(&["server", "--disable-agent"]);
    c.args(["--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs `skiff migrate` from `data` into `endpoint`, with more flags.
fn migrate(data: &Path, endpoint: &str, flags: &[&str]) -> Output {
    skiff(&["migrate", "--datastore-endpoint", endpoint])
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .output()
        .unwrap()
}

/// `uid creationTimestamp` of an object.
fn identity(kubeconfig: &Path, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "-o",
        "jsonpath={.metadata.uid} {.metadata.creationTimestamp}",
    ]);
    let out = kubectl(kubeconfig, &all).unwrap_or_else(|| panic!("kubectl {all:?}"));
    assert!(out.len() > 30, "{args:?}: {out:?}");
    out
}

fn pods(kubeconfig: &Path) -> Option<usize> {
    let out = kubectl(
        kubeconfig,
        &["get", "pods", "-n", "m", "-l", "app=d", "-o", "name"],
    )?;
    Some(out.lines().count())
}

#[test]
fn a_sqlite_cluster_migrates_into_etcd_with_its_objects_and_controllers() {
    if !prerequisites("migrate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let kubeconfig = data.join("kubeconfig.yaml");
    let port = free_port();

    // A cluster on SQLite, with objects of our own and a controller at work.
    let sqlite = Kill(server(&data, port, &[]).spawn().unwrap());
    wait("the server on SQLite", || {
        kubectl(&kubeconfig, &["get", "ns"])
    });
    kubectl(&kubeconfig, &["create", "namespace", "m"]).expect("namespace");
    kubectl(
        &kubeconfig,
        &["create", "configmap", "c", "-n", "m", "--from-literal=a=b"],
    )
    .expect("configmap");
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "d",
            "-n",
            "m",
            "--image=busybox",
            "--replicas=2",
        ],
    )
    .expect("deployment");
    wait("ReplicaSet and pods", || {
        (pods(&kubeconfig)? == 2).then_some(())
    });
    let rs = kubectl(&kubeconfig, &["get", "rs", "-n", "m", "-o", "name"]).unwrap();
    let rs = rs.trim();
    let objects: &[&[&str]] = &[
        &["namespace", "m"],
        &["configmap", "c", "-n", "m"],
        &["deployment", "d", "-n", "m"],
        &[rs, "-n", "m"],
    ];
    let before: Vec<String> = objects.iter().map(|o| identity(&kubeconfig, o)).collect();

    let url = format!("http://127.0.0.1:{}", free_port());
    let _etcd = etcd(&dir.path().join("etcd"), &url, &[]);
    wait("etcd to serve", || etcdctl(&url, &["endpoint", "health"]));

    // Refused while the server has the database open.
    let out = migrate(&data, &url, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use, by a running skiff server: stop the server"),
        "{err}"
    );
    assert_eq!(
        etcdctl(&url, &["get", "--prefix", "/", "--keys-only"])
            .unwrap()
            .trim(),
        ""
    );

    sqlite.stop();
    let started = Instant::now();
    let out = migrate(&data, &url, &[]);
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("skiff migrate took {took:?}: {said}");
    assert!(said.starts_with("migrated "), "{said}");
    let keys = etcdctl(&url, &["get", "--prefix", "/registry/", "--keys-only"]).unwrap();
    let copied: usize = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        keys.lines().filter(|l| !l.is_empty()).count(),
        copied - keys_outside_registry(&url)
    );
    assert!(keys.contains("/registry/configmaps/m/c"), "{keys}");

    // The same data dir on etcd: the same objects, and the controllers go on.
    let etcd_server = Kill(
        server(&data, port, &["--datastore-endpoint", &url])
            .spawn()
            .unwrap(),
    );
    wait("the server on etcd", || {
        kubectl(&kubeconfig, &["get", "cm", "c", "-n", "m"])
    });
    let after: Vec<String> = objects.iter().map(|o| identity(&kubeconfig, o)).collect();
    assert_eq!(after, before, "uids and creation times");
    // resourceVersion is now etcd's revision of the key.
    let rv = kubectl(
        &kubeconfig,
        &[
            "get",
            "cm",
            "c",
            "-n",
            "m",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
    .unwrap();
    let kv = etcdctl(&url, &["get", "/registry/configmaps/m/c", "-w", "json"]).unwrap();
    let kv: serde_json::Value = serde_json::from_str(&kv).unwrap();
    assert_eq!(rv, kv["kvs"][0]["mod_revision"].to_string());
    kubectl(
        &kubeconfig,
        &["scale", "deployment", "d", "-n", "m", "--replicas=3"],
    )
    .expect("scale");
    wait("a third pod", || (pods(&kubeconfig)? == 3).then_some(()));
    let sets = kubectl(&kubeconfig, &["get", "rs", "-n", "m", "-o", "name"]).unwrap();
    assert_eq!(sets.trim(), rs, "the same ReplicaSet scaled");
    assert_eq!(
        kubectl(
            &kubeconfig,
            &["get", "cm", "c", "-n", "m", "-o", "jsonpath={.data.a}"]
        )
        .unwrap(),
        "b"
    );

    // A second migrate into the same etcd is refused and writes nothing.
    drop(etcd_server);
    let revision = |url: &str| {
        let status = etcdctl(url, &["endpoint", "status", "-w", "json"]).unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status[0]["Status"]["header"]["revision"].as_i64().unwrap()
    };
    let at = revision(&url);
    let out = migrate(&data, &url, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the target datastore already holds")
            && err.contains("keys under /registry/")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(revision(&url), at);
}

/// How many keys the copy put outside `/registry/` (e.g. `/bootstrap/…`).
fn keys_outside_registry(url: &str) -> usize {
    let all = etcdctl(url, &["get", "--prefix", "/", "--keys-only"]).unwrap();
    all.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("/registry/"))
        .count()
}

/// PEM files for a CA, etcd's serving certificate and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(vec!["skiff".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.crt", &ca_cert.pem()),
        server_cert: write("server.crt", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

#[test]
fn a_server_and_migrate_reach_an_etcd_that_demands_client_certificates() {
    if !prerequisites("migrate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let url = format!("https://127.0.0.1:{}", free_port());
    let _etcd = etcd(
        &dir.path().join("etcd"),
        &url,
        &[
            "--cert-file".into(),
            path(&pki.server_cert),
            "--key-file".into(),
            path(&pki.server_key),
            "--trusted-ca-file".into(),
            path(&pki.ca),
            "--client-cert-auth".into(),
        ],
    );
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let client_tls = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    wait("etcd to serve over TLS", || {
        let mut args = client_tls.to_vec();
        args.extend(["endpoint", "health"]);
        etcdctl(&url, &args)
    });
    let tls_flags = [
        "--datastore-cafile",
        &ca,
        "--datastore-certfile",
        &cert,
        "--datastore-keyfile",
        &key,
    ];

    // A cluster on SQLite, migrated over TLS.
    let data = dir.path().join("server");
    let kubeconfig = data.join("kubeconfig.yaml");
    let port = free_port();
    let sqlite = Kill(server(&data, port, &[]).spawn().unwrap());
    wait("the server on SQLite", || {
        kubectl(&kubeconfig, &["get", "ns"])
    });
    kubectl(
        &kubeconfig,
        &["create", "configmap", "c", "--from-literal=a=b"],
    )
    .expect("configmap");
    let uid = identity(&kubeconfig, &["configmap", "c"]);
    sqlite.stop();
    let out = migrate(&data, &url, &tls_flags);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the client certificate etcd turns the server away, fast and plainly.
    let started = Instant::now();
    let out = server(
        &data,
        port,
        &["--datastore-endpoint", &url, "--datastore-cafile", &ca],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("without a client certificate: {err}");
    assert!(err.contains(&url) && err.contains("unreachable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("give --datastore-certfile and --datastore-keyfile"),
        "{err}"
    );

    // A CA that did not sign etcd's certificate.
    let mut flags = vec!["--datastore-endpoint", url.as_str()];
    flags.extend(tls_flags);
    flags[3] = &cert;
    let out = server(&data, port, &flags).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("with the wrong CA: {err}");
    assert!(
        err.contains(&url) && err.contains("--datastore-cafile signed"),
        "{err}"
    );

    // TLS files need an etcd endpoint; a certificate needs its key.
    let out = server(&data, port, &["--datastore-cafile", &ca])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("are for an etcd datastore"), "{err}");
    let out = server(
        &data,
        port,
        &["--datastore-endpoint", &url, "--datastore-certfile", &cert],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--datastore-keyfile"), "{err}");

    // With it, the server serves kubectl from the TLS etcd.
    let mut flags = vec!["--datastore-endpoint", url.as_str()];
    flags.extend(tls_flags);
    let _server = Kill(server(&data, port, &flags).spawn().unwrap());
    wait("the server on the TLS etcd", || {
        kubectl(&kubeconfig, &["get", "cm", "c"])
    });
    assert_eq!(identity(&kubeconfig, &["configmap", "c"]), uid);
    kubectl(
        &kubeconfig,
        &["create", "configmap", "after", "--from-literal=x=y"],
    )
    .expect("write");
    let mut args = client_tls.to_vec();
    args.extend([
        "get",
        "--prefix",
        "/registry/configmaps/default/",
        "--keys-only",
    ]);
    let keys = etcdctl(&url, &args).unwrap();
    assert!(
        keys.contains("/registry/configmaps/default/after"),
        "{keys}"
    );
}
