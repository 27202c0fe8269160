//! A map of objects kept current from a `kube::runtime::watcher` stream.
//! Objects are held as `Arc`s, so a cache fed by the shared pod informer
//! ([`crate::informer`]) holds no copy of its own.

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::Arc;

/// Objects by `namespace/name`, fed by watch events.
pub(crate) struct Cache<K> {
    pub(crate) items: HashMap<String, Arc<K>>,
    /// Objects of a re-list in progress, swapped in at its end.
    relist: Option<HashMap<String, Arc<K>>>,
    /// Whether the first list has completed.
    pub(crate) synced: bool,
}

impl<K: Metadata<Ty = ObjectMeta>> Cache<K> {
    pub(crate) fn new() -> Self {
        Self {
            items: HashMap::new(),
            relist: None,
            synced: false,
        }
    }

    /// Every object.
    pub(crate) fn values(&self) -> impl Iterator<Item = &K> {
        self.items.values().map(|o| &**o)
    }

    /// The object with this `namespace/name` key.
    pub(crate) fn get(&self, key: &str) -> Option<&K> {
        self.items.get(key).map(|o| &**o)
    }

    /// Puts an object in (e.g. as a write returned it).
    pub(crate) fn put(&mut self, o: K) {
        self.items.insert(crate::key_of(o.metadata()), Arc::new(o));
    }

    /// Applies one watch event (objects owned or shared); true when the cache changed.
    pub(crate) fn apply<T: Into<Arc<K>>>(&mut self, ev: watcher::Event<T>) -> bool {
        match ev {
            watcher::Event::Apply(o) => {
                let o = o.into();
                self.items.insert(crate::key_of(o.metadata()), o);
                true
            }
            watcher::Event::Delete(o) => {
                let o = o.into();
                self.items.remove(&crate::key_of(o.metadata()));
                true
            }
            watcher::Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                let o = o.into();
                let k = crate::key_of(o.metadata());
                match &mut self.relist {
                    Some(m) => {
                        m.insert(k, o);
                    }
                    None => {
                        self.items.insert(k, o);
                    }
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(m) = self.relist.take() {
                    self.items = m;
                }
                self.synced = true;
                true
            }
        }
    }
}
