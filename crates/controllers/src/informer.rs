//! One pod watch shared by every controller in the process, as client-go's
//! shared informers share one: each pod is decoded once and held once (as an
//! `Arc`), however many controllers look at it. At 300,000 pods that is the
//! difference between one copy of every pod and one per controller.

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Pod watch events with shared pods.
pub type PodStream = BoxStream<'static, Result<watcher::Event<Arc<Pod>>, watcher::Error>>;

/// Shares an event's object.
pub fn share<K>(ev: watcher::Event<K>) -> watcher::Event<Arc<K>> {
    match ev {
        watcher::Event::Apply(o) => watcher::Event::Apply(Arc::new(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(Arc::new(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(Arc::new(o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A pod watch of a controller's own (for a controller run on its own, as in tests).
pub fn own_pods(client: kube::Client) -> PodStream {
    watcher(Api::<Pod>::all(client), watcher::Config::default())
        .map(|r| r.map(share))
        .boxed()
}

/// The shared pod watch: controllers subscribe, then [`PodInformer::run`] feeds them all.
pub struct PodInformer {
    client: kube::Client,
    subscribers: Vec<mpsc::UnboundedSender<watcher::Event<Arc<Pod>>>>,
}

impl PodInformer {
    /// An informer reading pods through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            subscribers: Vec::new(),
        }
    }

    /// A stream of every pod event, from the initial list on.
    pub fn subscribe(&mut self) -> PodStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (Ok(ev), rx))
        })
        .boxed()
    }

    /// Watches pods and hands every event to every subscriber until `shutdown`
    /// turns true or no subscriber is left.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut stream = watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .boxed();
        loop {
            let ev = tokio::select! {
                _ = shutdown.changed() => return,
                ev = stream.next() => ev,
            };
            match ev {
                Some(Ok(ev)) => {
                    let ev = share(ev);
                    self.subscribers.retain(|tx| tx.send(ev.clone()).is_ok());
                    if self.subscribers.is_empty() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("pod informer: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            }
        }
    }
}
