//! Every attempt of every request to the member cluster's API server passes through
//! [`ObserveLayer`]: it records the attempt's outcome in the [`ClusterHealth`] that `/readyz`
//! reads, and abandons an attempt that gets no answer within the request timeout (a watch
//! excepted, which lasts by design).
//!
//! The client's stack, outermost first: retries ([`RetryPolicy::server_retry`], which waits
//! out a `429` or `503` for as long as its `Retry-After` asks) → this layer → the `kube`
//! client's own (base URL, credentials, HTTP). Observing inside the retries is what lets
//! `/readyz` say "answers 429" while the client is still waiting out the `Retry-After`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fedjob_proto::duration;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use kube::client::{Body, DynBody};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use crate::rules::request::Operation;
use crate::state::cluster_health::{ClusterHealth, Outcome, is_trouble};

/// The longest error body read for its message; a longer one is cut.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Observes every request into a [`ClusterHealth`], abandoning those that take too long.
#[derive(Clone)]
pub struct ObserveLayer {
    health: Arc<ClusterHealth>,
    timeout: Duration,
}

impl ObserveLayer {
    /// Records into `health`; gives up on a request (a watch excepted) after `timeout`.
    pub fn new(health: Arc<ClusterHealth>, timeout: Duration) -> Self {
        Self { health, timeout }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            health: self.health.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    health: Arc<ClusterHealth>,
    timeout: Duration,
}

type Answer = Response<Box<DynBody>>;

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Answer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let operation = Operation::of(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
            request.extensions().get::<&'static str>().copied(),
        );
        let limit = (!operation.is_watch()).then_some(self.timeout);
        let health = self.health.clone();
        let id = health.begin(operation.clone(), Instant::now());
        let attempt = self.inner.call(request);
        Box::pin(async move {
            let result = match limit {
                None => attempt.await,
                Some(limit) => match tokio::time::timeout(limit, attempt).await {
                    Ok(result) => result,
                    Err(_) => {
                        health.end(id, Outcome::TimedOut(limit), Instant::now());
                        return Err(timed_out(&operation, limit));
                    }
                },
            };
            match result {
                Ok(answer) => {
                    let (answer, outcome) = read(answer).await;
                    health.end(id, outcome, Instant::now());
                    Ok(answer)
                }
                Err(e) => {
                    health.end(id, Outcome::Failed(chain(e.as_ref())), Instant::now());
                    Err(e)
                }
            }
        })
    }
}

fn timed_out(operation: &Operation, limit: Duration) -> BoxError {
    let message = format!(
        "no answer to {operation} within {}",
        duration::format(limit)
    );
    BoxError::from(message)
}

/// The outcome of an answer; an answer that means trouble is read for its message and given
/// back with the same body.
async fn read(answer: Answer) -> (Answer, Outcome) {
    let status = answer.status();
    if !is_trouble(status.as_u16()) {
        return (answer, Outcome::answered(status.as_u16()));
    }
    let retry_after = answer
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (parts, mut body) = answer.into_parts();
    let mut read = Vec::new();
    while read.len() < MAX_ERROR_BODY {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                read = format!("(the answer could not be read: {e})").into_bytes();
                break;
            }
        }
    }
    let bytes = Bytes::from(read);
    let outcome = Outcome::Answered {
        code: status.as_u16(),
        phrase: status.canonical_reason().unwrap_or_default().to_owned(),
        message: message(&bytes),
        retry_after,
    };
    let body: Box<DynBody> =
        Box::new(http_body_util::Full::new(bytes).map_err(|never| match never {}));
    (Response::from_parts(parts, body), outcome)
}

/// The `message` of a `Status` body, or the body's text (priority and fairness answers `429`
/// in plain text).
fn message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        message: String,
    }
    match serde_json::from_slice::<Status>(body) {
        Ok(status) => status.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// An error and its causes, as one line (`client error (Connect): tcp connect error:
/// Connection refused (os error 111)`).
fn chain(error: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let mut out = error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_status_bodies_and_plain_text() {
        assert_eq!(
            message(br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: etcdserver: request timed out","reason":"InternalError","code":500}"#),
            "Internal error occurred: etcdserver: request timed out"
        );
        assert_eq!(
            message(b"Too many requests, please try again later.\n"),
            "Too many requests, please try again later."
        );
    }

    #[test]
    fn causes_are_chained_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        assert_eq!(chain(&Connect(io)), "tcp connect error: Connection refused");
    }
}
