//! VolumeBinding end to end against a real in-process API server: a pod
//! whose WaitForFirstConsumer claim is provisioned on the node the scheduler
//! picks (a stand-in provisioner plays `skiff.io/local-path`), a pod whose
//! claim appears later, a pod whose claim is never provisioned, which PreBind
//! gives up on, and a pod whose claim's class has no provisioner, which gets
//! an available volume pre-bound on that volume's node.

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

mod support;
use support::{api_server, eventually};

const SELECTED: &str = "volume.kubernetes.io/selected-node";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn claim(name: &str, class: &str) -> PersistentVolumeClaim {
    obj(
        json!({"metadata": {"name": name}, "spec": {"storageClassName": class,
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
}

fn pod_using(name: &str, claim: &str) -> Pod {
    obj(json!({"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}))
}

/// What the provisioner and the PV controller do: a volume pinned to `node`,
/// and the claim bound to it.
async fn provision(client: &kube::Client, c: &PersistentVolumeClaim, node: &str) -> String {
    let pv_name = format!("pvc-{}", c.metadata.uid.as_deref().unwrap());
    let name = c.metadata.name.clone().unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(&PostParams::default(), &obj(json!({
        "metadata": {"name": pv_name},
        "spec": {"storageClassName": c.spec.as_ref().unwrap().storage_class_name, "capacity": {"storage": "1Gi"},
                 "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
                 "hostPath": {"path": format!("/var/lib/skiff/storage/{pv_name}_default_{name}"), "type": "DirectoryOrCreate"},
                 "claimRef": {"namespace": "default", "name": name, "uid": c.metadata.uid},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    }))).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": pv_name}})),
        )
        .await
        .unwrap();
    claims
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();
    pv_name
}

/// The node the scheduler asked for claim `name`'s volume on, once it has.
async fn selected_node(claims: &Api<PersistentVolumeClaim>, name: &str) -> Option<String> {
    let c = claims.get(name).await.ok()?;
    c.metadata.annotations?.get(SELECTED).cloned()
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

async fn events_of(client: &kube::Client, pod: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_provisioned_where_the_pod_goes_and_pods_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = api_server(dir.path()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["n1", "n2"] {
        let node: Node = obj(
            json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
        );
        nodes.create(&PostParams::default(), &node).await.unwrap();
        nodes
            .patch_status(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}})),
            )
            .await
            .unwrap();
    }
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "local-path"},
            "provisioner": "skiff.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"})),
        )
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let opts = skiff_scheduler::run::Options {
        volume_bind_timeout: Duration::from_secs(3),
    };
    tokio::spawn(skiff_scheduler::run::run_with(
        client.clone(),
        shutdown,
        opts,
    ));

    // 1. WaitForFirstConsumer: the scheduler picks a node, asks for the volume
    //    there, and binds the pod only once the claim is bound.
    claims
        .create(&PostParams::default(), &claim("data", "local-path"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod_using("db", "data"))
        .await
        .unwrap();
    let (pvc, chosen) = eventually("the selected-node annotation", async || {
        let c = claims.get("data").await.ok()?;
        let n = c.metadata.annotations.as_ref()?.get(SELECTED)?.clone();
        Some((c, n))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node_of(&pods, "db").await,
        None,
        "the pod waits for its claim"
    );
    provision(&client, &pvc, &chosen).await;
    let placed = eventually("db bound", async || node_of(&pods, "db").await).await;
    assert_eq!(
        placed, chosen,
        "the pod goes where its volume was provisioned"
    );

    // 2. A missing claim: unschedulable in Kubernetes' words, retried when the
    //    claim appears, then provisioned where the scheduler picks.
    pods.create(&PostParams::default(), &pod_using("late", "later"))
        .await
        .unwrap();
    let want = "0/2 nodes are available: persistentvolumeclaim \"later\" not found. \
                preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    eventually("FailedScheduling for the missing claim", async || {
        events_of(&client, "late")
            .await
            .contains(&format!("FailedScheduling {want}"))
            .then_some(())
    })
    .await;
    let later = claims
        .create(&PostParams::default(), &claim("later", "local-path"))
        .await
        .unwrap();
    let picked = eventually("late's selected node", async || {
        selected_node(&claims, "later").await
    })
    .await;
    provision(&client, &later, &picked).await;
    assert_eq!(
        eventually("late bound", async || node_of(&pods, "late").await).await,
        picked
    );

    // 3. Nobody provisions: PreBind gives up after its timeout, says so, and
    //    the pod is scheduled again.
    claims
        .create(&PostParams::default(), &claim("never", "local-path"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod_using("stuck", "never"))
        .await
        .unwrap();
    eventually("the PreBind timeout", async || {
        events_of(&client, "stuck")
            .await
            .contains(&"FailedScheduling running PreBind plugin \"VolumeBinding\": binding volumes: context deadline exceeded".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(node_of(&pods, "stuck").await, None);
    // Retried: the claim is then bound to a volume on the node the scheduler
    // did NOT ask for; PreBind refuses that node (or the retry's Filter does)
    // and the pod goes where its volume is.
    let asked = eventually("stuck's selected node", async || {
        selected_node(&claims, "never").await
    })
    .await;
    let other = if asked == "n1" { "n2" } else { "n1" };
    let never = claims.get("never").await.unwrap();
    provision(&client, &never, other).await;
    assert_eq!(
        eventually("stuck bound", async || node_of(&pods, "stuck").await).await,
        other
    );

    // 4. A class without a provisioner: the scheduler picks the node of an
    //    available volume that serves the claim, pre-binds it (claimRef), and
    //    binds the pod once the PV controller has bound the claim.
    classes
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "manual"},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})))
        .await
        .unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(&PostParams::default(), &obj(json!({
        "metadata": {"name": "disk-n2"},
        "spec": {"storageClassName": "manual", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                 "local": {"path": "/mnt/disk"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}
    }))).await.unwrap();
    pvs.patch_status(
        "disk-n2",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Available"}})),
    )
    .await
    .unwrap();
    let fixed = claims
        .create(&PostParams::default(), &claim("fixed", "manual"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod_using("pinned", "fixed"))
        .await
        .unwrap();
    let claim_ref = eventually("the volume pre-bound to the claim", async || {
        pvs.get("disk-n2").await.ok()?.spec?.claim_ref
    })
    .await;
    assert_eq!(
        (claim_ref.name.as_deref(), claim_ref.uid.as_deref()),
        (Some("fixed"), fixed.metadata.uid.as_deref())
    );
    assert_eq!(
        node_of(&pods, "pinned").await,
        None,
        "the pod waits for the binding"
    );
    claims
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"volumeName": "disk-n2"}})),
        )
        .await
        .unwrap();
    claims
        .patch_status(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        eventually("pinned bound", async || node_of(&pods, "pinned").await).await,
        "n2"
    );
}
