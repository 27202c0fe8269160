//! A map of objects kept current from a `kube::runtime::watcher` stream.
//! Objects are held as `Arc`s, so a cache fed by the shared pod informer
//! ([`crate::informer`]) holds no copy of its own.

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Objects by `namespace/name`, fed by watch events.
pub(crate) struct Cache<K> {
    pub(crate) items: HashMap<String, Arc<K>>,
    /// Objects of a re-list in progress, swapped in at its end.
    relist: Option<HashMap<String, Arc<K>>>,
    /// Whether the first list has completed.
    pub(crate) synced: bool,
}

/// Whether `a` is a later version than `b` (resourceVersions are revisions of
/// one store, so they compare as numbers; anything else counts as not newer).
fn newer(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    let rv = |m: &ObjectMeta| m.resource_version.as_deref()?.parse::<u64>().ok();
    matches!((rv(a), rv(b)), (Some(x), Some(y)) if x > y)
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

    /// Puts an object in (e.g. as a write returned it), unless the cache
    /// already holds a newer version.
    pub(crate) fn put(&mut self, o: K) {
        let k = crate::key_of(o.metadata());
        if self
            .items
            .get(&k)
            .is_some_and(|cur| newer(cur.metadata(), o.metadata()))
        {
            return;
        }
        self.items.insert(k, Arc::new(o));
    }

    /// Applies one watch event and marks what needs a sync in `dirty`: the
    /// object an event names, or every object after a (re)list.
    pub(crate) fn apply_marking(&mut self, ev: watcher::Event<K>, dirty: &mut HashSet<String>) {
        if let watcher::Event::Apply(o) | watcher::Event::Delete(o) = &ev {
            dirty.insert(crate::key_of(o.metadata()));
        }
        let relisted = matches!(ev, watcher::Event::InitDone);
        self.apply(ev);
        if relisted {
            dirty.extend(self.items.keys().cloned());
        }
    }

    /// Applies one watch event (objects owned or shared); true when the cache changed.
    pub(crate) fn apply<T: Into<Arc<K>>>(&mut self, ev: watcher::Event<T>) -> bool {
        match ev {
            watcher::Event::Apply(o) => {
                let o = o.into();
                let k = crate::key_of(o.metadata());
                // A controller puts the objects its writes return; a watch that
                // lags may deliver older versions of them afterwards, which must
                // not take the cache back in time.
                if self
                    .items
                    .get(&k)
                    .is_some_and(|cur| newer(cur.metadata(), o.metadata()))
                {
                    return false;
                }
                self.items.insert(k, o);
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(rv: &str, v: &str) -> ConfigMap {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "c", "namespace": "n",
            "resourceVersion": rv}, "data": {"v": v}}),
        )
        .unwrap()
    }

    #[test]
    fn a_lagging_watch_never_takes_the_cache_back_in_time() {
        let mut c: Cache<ConfigMap> = Cache::new();
        c.apply(watcher::Event::Apply(cm("5", "five")));
        c.put(cm("9", "nine")); // a write's response
        assert!(
            !c.apply(watcher::Event::Apply(cm("7", "seven"))),
            "older event ignored"
        );
        assert_eq!(c.get("n/c").unwrap().data.as_ref().unwrap()["v"], "nine");
        c.put(cm("8", "eight"));
        assert_eq!(c.get("n/c").unwrap().data.as_ref().unwrap()["v"], "nine");
        assert!(c.apply(watcher::Event::Apply(cm("10", "ten"))));
        assert_eq!(c.get("n/c").unwrap().data.as_ref().unwrap()["v"], "ten");
        assert!(c.apply(watcher::Event::Delete(cm("11", "ten"))));
        assert!(c.get("n/c").is_none());
    }
}
