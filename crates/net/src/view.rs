//! The node's view of Services and EndpointSlices.
//!
//! One watch on each resource feeds a [`ClusterView`]; every change publishes a
//! new immutable snapshot on a [`tokio::sync::watch`] channel, which the proxy
//! and the DNS server read. Objects are shared through `Arc`, so a snapshot
//! costs a map clone, not an object copy.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// A key from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// Services and their EndpointSlices, as the node last saw them.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Services by namespace/name.
    pub services: BTreeMap<Key, Arc<Service>>,
    /// EndpointSlices by the namespace/name of their Service, then by slice name.
    pub slices: BTreeMap<Key, BTreeMap<String, Arc<EndpointSlice>>>,
}

impl ClusterView {
    /// A view of the given objects (for tests and tools).
    pub fn from_objects(
        services: impl IntoIterator<Item = Service>,
        slices: impl IntoIterator<Item = EndpointSlice>,
    ) -> Self {
        let mut view = Self::default();
        for s in services {
            view.apply_service(Arc::new(s));
        }
        for s in slices {
            view.apply_slice(Arc::new(s));
        }
        view
    }

    /// The Service namespace/name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(&Key::new(namespace, name))
    }

    /// The EndpointSlices of the Service namespace/name.
    pub fn slices_of(&self, namespace: &str, name: &str) -> impl Iterator<Item = &EndpointSlice> {
        self.slices
            .get(&Key::new(namespace, name))
            .into_iter()
            .flat_map(|m| m.values().map(|s| s.as_ref()))
    }

    fn apply_service(&mut self, s: Arc<Service>) {
        self.services.insert(Key::of(&s.metadata), s);
    }

    fn delete_service(&mut self, s: &Service) {
        self.services.remove(&Key::of(&s.metadata));
    }

    fn slice_owner(s: &EndpointSlice) -> Option<Key> {
        let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(Key::new(
            s.metadata.namespace.clone().unwrap_or_default(),
            svc.clone(),
        ))
    }

    fn apply_slice(&mut self, s: Arc<EndpointSlice>) {
        // A slice relabelled to another Service leaves its old one.
        self.delete_slice(&s);
        if let Some(owner) = Self::slice_owner(&s) {
            let name = s.metadata.name.clone().unwrap_or_default();
            self.slices.entry(owner).or_default().insert(name, s);
        }
    }

    fn delete_slice(&mut self, s: &EndpointSlice) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        self.slices.retain(|k, m| {
            if k.namespace == ns {
                m.remove(&name);
            }
            !m.is_empty()
        });
    }
}

enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
}

/// The watch loop's state: the live view, and the lists being gathered during a (re)list.
#[derive(Default)]
struct Follower {
    view: ClusterView,
    init_services: Option<BTreeMap<Key, Arc<Service>>>,
    init_slices: Option<ClusterView>,
    synced: (bool, bool),
}

impl Follower {
    /// Applies one event; true when the view changed.
    fn handle(&mut self, change: Change) -> bool {
        match change {
            Change::Service(e) => match *e {
                watcher::Event::Init => {
                    self.init_services = Some(BTreeMap::new());
                    false
                }
                watcher::Event::InitApply(s) => {
                    if let Some(m) = self.init_services.as_mut() {
                        m.insert(Key::of(&s.metadata), Arc::new(s));
                    }
                    false
                }
                watcher::Event::InitDone => {
                    self.view.services = self.init_services.take().unwrap_or_default();
                    self.synced.0 = true;
                    true
                }
                watcher::Event::Apply(s) => {
                    self.view.apply_service(Arc::new(s));
                    true
                }
                watcher::Event::Delete(s) => {
                    self.view.delete_service(&s);
                    true
                }
            },
            Change::Slice(e) => match *e {
                watcher::Event::Init => {
                    self.init_slices = Some(ClusterView::default());
                    false
                }
                watcher::Event::InitApply(s) => {
                    if let Some(v) = self.init_slices.as_mut() {
                        v.apply_slice(Arc::new(s));
                    }
                    false
                }
                watcher::Event::InitDone => {
                    self.view.slices = self.init_slices.take().unwrap_or_default().slices;
                    self.synced.1 = true;
                    true
                }
                watcher::Event::Apply(s) => {
                    self.view.apply_slice(Arc::new(s));
                    true
                }
                watcher::Event::Delete(s) => {
                    self.view.delete_slice(&s);
                    true
                }
            },
        }
    }
}

/// Watches Services and EndpointSlices until `shutdown` fires, publishing a
/// snapshot after each burst of changes. The first snapshot is published once
/// both initial lists are in; until then receivers hold an empty view.
pub fn spawn(
    client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Arc<ClusterView>> {
    let (tx, rx) = watch::channel(Arc::new(ClusterView::default()));
    tokio::spawn(async move {
        let services = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .map(|e| e.map(|e| Change::Service(Box::new(e))))
        .boxed();
        let slices = watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .map(|e| e.map(|e| Change::Slice(Box::new(e))))
        .boxed();
        let mut events = futures::stream::select(services, slices);
        let mut state = Follower::default();
        loop {
            let next = tokio::select! {
                e = events.next() => e,
                _ = shutdown.changed() => return,
            };
            let mut changed = match next {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!("service view watch: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    false
                }
                Some(Ok(change)) => state.handle(change),
            };
            // Fold whatever else is already waiting into the same snapshot.
            while let Some(Some(Ok(more))) = futures::FutureExt::now_or_never(events.next()) {
                changed |= state.handle(more);
            }
            if changed && state.synced == (true, true) {
                tx.send_replace(Arc::new(state.view.clone()));
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, svc: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn slices_follow_their_service_label() {
        let mut v =
            ClusterView::from_objects([], [slice("web-abc", "web"), slice("web-def", "web")]);
        assert_eq!(v.slices_of("default", "web").count(), 2);
        v.apply_slice(Arc::new(slice("web-abc", "api")));
        assert_eq!(v.slices_of("default", "web").count(), 1);
        assert_eq!(v.slices_of("default", "api").count(), 1);
        v.delete_slice(&slice("web-def", "web"));
        assert_eq!(v.slices_of("default", "web").count(), 0);
        assert!(!v.slices.contains_key(&Key::new("default", "web")));
    }
}
