//! A map of objects kept current from a `kube::runtime::watcher` stream.

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use std::collections::HashMap;

/// Objects by `namespace/name`, fed by watch events.
pub(crate) struct Cache<K> {
    pub(crate) items: HashMap<String, K>,
    /// Objects of a re-list in progress, swapped in at its end.
    relist: Option<HashMap<String, K>>,
    /// Whether the first list has completed.
    pub(crate) synced: bool,
}

impl<K: Metadata<Ty = ObjectMeta> + Clone> Cache<K> {
    pub(crate) fn new() -> Self {
        Self {
            items: HashMap::new(),
            relist: None,
            synced: false,
        }
    }

    /// Applies one watch event; true when the cache changed.
    pub(crate) fn apply(&mut self, ev: watcher::Event<K>) -> bool {
        match ev {
            watcher::Event::Apply(o) => {
                self.items.insert(crate::key_of(o.metadata()), o);
                true
            }
            watcher::Event::Delete(o) => {
                self.items.remove(&crate::key_of(o.metadata()));
                true
            }
            watcher::Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
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
