//! The apiserver as a tower `Service`, so components in the same process
//! use an ordinary `kube::Client` without TCP or TLS.

use crate::Server;
use axum::body::Body;
use futures::future::BoxFuture;
use http::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A tower service that answers requests with the in-process apiserver.
#[derive(Clone)]
pub struct InProcess(pub Arc<Server>);

impl<B> tower::Service<Request<B>> for InProcess
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move { Ok(crate::serve_request(server, req.map(Body::new)).await) })
    }
}
