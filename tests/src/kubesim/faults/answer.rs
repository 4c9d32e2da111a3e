//! The answers of a failing API server, byte for byte where clients look: status code,
//! headers (`Retry-After`), and the body (`Status` objects with kube-apiserver's `reason` and
//! message, or the plain text its request filters write).
//!
//! The `Status` objects here are built from the request as the API server's filters build
//! them (any resource, any verb, or a path that is no resource at all), which the stored
//! resources' [`ApiError`] cannot describe; the one `ApiError` they share is `410 Expired`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use fedjob_scheduler::kube_api::pages;
use fedjob_scheduler::kube_api::respond;
use serde::Serialize;

use super::rule::{Fault, RequestInfo, ThrottleBody};

/// What priority and fairness writes with a `429` (`filters/maxinflight.go`).
pub const THROTTLED_TEXT: &str = "Too many requests, please try again later.";

/// The message of the watch cache's own `429` (`errors.NewTooManyRequests`).
pub const CACHE_INITIALIZING: &str = "storage is (re)initializing";

/// The answer of `fault` to `request`; `None` for faults that are not an answer (an outage,
/// latency, an expired watch).
pub fn respond(fault: &Fault, request: &RequestInfo) -> Option<Response> {
    let response = match fault {
        Fault::Unreachable | Fault::Slow { .. } => return None,
        Fault::Expire if request.verb == "watch" => return None,
        Fault::Expire => respond::error(&pages::expired()),
        Fault::TooManyRequests {
            retry_after,
            body: ThrottleBody::PriorityAndFairness,
        } => {
            let mut response = Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .body(Body::from(format!("{THROTTLED_TEXT}\n")))
                .expect("a valid response");
            retry_after_header(&mut response, *retry_after);
            response
        }
        Fault::TooManyRequests {
            retry_after,
            body: ThrottleBody::Status,
        } => {
            let details = Details {
                retry_after_seconds: Some(*retry_after),
                ..Details::default()
            };
            let body = status(429, "TooManyRequests", CACHE_INITIALIZING, details);
            let mut response = respond::json(StatusCode::TOO_MANY_REQUESTS, body);
            retry_after_header(&mut response, *retry_after);
            response
        }
        Fault::InternalError { message } => respond::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            status(
                500,
                "InternalError",
                &format!("Internal error occurred: {message}"),
                Details {
                    causes: vec![Cause { message }],
                    ..Details::default()
                },
            ),
        ),
        Fault::ServiceUnavailable { message } => respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            status(503, "ServiceUnavailable", message, Details::default()),
        ),
        Fault::Forbidden { user } => {
            let (message, details) = forbidden(user, request);
            respond::json(
                StatusCode::FORBIDDEN,
                status(403, "Forbidden", &message, details),
            )
        }
    };
    Some(response)
}

fn retry_after_header(response: &mut Response, seconds: u32) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

/// A failure `Status`, fields in the API server's order, empty details left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Details::is_empty")]
    details: Details<'a>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

/// `StatusDetails`.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

impl Details<'_> {
    fn is_empty(&self) -> bool {
        *self == Details::default()
    }
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct Cause<'a> {
    message: &'a str,
}

fn status(code: u16, reason: &str, message: &str, details: Details<'_>) -> String {
    let body = Status {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Failure",
        message,
        reason,
        details,
        code,
    };
    serde_json::to_string(&body).expect("a Status serializes")
}

/// The message and details RBAC's denial gets (`responsewriters.Forbidden` and
/// `errors.NewForbidden`): `jobs.batch "x" is forbidden: User "…" cannot create resource
/// "jobs" in API group "batch" in the namespace "default"`; no name for a collection, `at the
/// cluster scope` without a namespace, `cannot get path "/version"` for a path that is no
/// resource.
pub fn forbidden<'a>(user: &str, request: &'a RequestInfo) -> (String, Details<'a>) {
    let Some(resource) = request.resource_path() else {
        return (
            format!(
                "forbidden: User \"{user}\" cannot {} path \"{}\"",
                request.verb, request.path
            ),
            Details::default(),
        );
    };
    let plural = request.resource.as_deref().unwrap_or_default();
    let qualified = if request.group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{}", request.group)
    };
    let scope = match &request.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let reason = format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        request.verb, request.group
    );
    let message = match &request.name {
        Some(name) => format!("{qualified} \"{name}\" is forbidden: {reason}"),
        None => format!("{qualified} is forbidden: {reason}"),
    };
    let details = Details {
        name: request.name.as_deref().unwrap_or_default(),
        group: &request.group,
        kind: plural,
        ..Details::default()
    };
    (message, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::faults::DEFAULT_USER;
    use axum::http::Method;
    use http_body_util::BodyExt;

    fn request(method: Method, uri: &str) -> RequestInfo {
        RequestInfo::of(&method, &uri.parse().unwrap())
    }

    async fn body(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn forbidden_as_rbac_words_it() {
        let create = request(Method::POST, "/apis/batch/v1/namespaces/default/jobs");
        let (message, details) = forbidden(DEFAULT_USER, &create);
        let patch = request(Method::PATCH, "/apis/batch/v1/namespaces/default/jobs/x");
        let (_, named) = forbidden("u", &patch);
        assert_eq!(
            serde_json::to_string(&named).unwrap(),
            r#"{"name":"x","group":"batch","kind":"jobs"}"#
        );
        assert_eq!(
            message,
            "jobs.batch is forbidden: User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"default\""
        );
        assert_eq!(
            serde_json::to_string(&details).unwrap(),
            r#"{"group":"batch","kind":"jobs"}"#
        );
        assert!(forbidden("u", &patch).0.starts_with(
            "jobs.batch \"x\" is forbidden: User \"u\" cannot patch resource \"jobs\""
        ));
        let watch = request(Method::GET, "/apis/batch/v1/jobs?watch=1");
        assert!(forbidden("u", &watch).0.ends_with(
            "cannot watch resource \"jobs\" in API group \"batch\" at the cluster scope"
        ));
        let namespace = request(Method::POST, "/api/v1/namespaces");
        let (message, details) = forbidden("u", &namespace);
        assert_eq!(
            message,
            "namespaces is forbidden: User \"u\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            serde_json::to_string(&details).unwrap(),
            r#"{"kind":"namespaces"}"#
        );
        let status = request(Method::PUT, "/apis/batch/v1/namespaces/d/jobs/x/status");
        assert!(
            forbidden("u", &status)
                .0
                .contains("resource \"jobs/status\"")
        );
        assert_eq!(
            forbidden("u", &request(Method::GET, "/version")).0,
            "forbidden: User \"u\" cannot get path \"/version\""
        );
    }

    #[tokio::test]
    async fn throttled_as_priority_and_fairness_or_the_watch_cache() {
        let any = request(Method::GET, "/apis/batch/v1/jobs");
        let text = respond(&Fault::throttle(), &any).unwrap();
        assert_eq!(text.status(), 429);
        assert_eq!(text.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            text.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            body(text).await,
            "Too many requests, please try again later.\n"
        );
        let cache = Fault::TooManyRequests {
            retry_after: 3,
            body: ThrottleBody::Status,
        };
        let status = respond(&cache, &any).unwrap();
        assert_eq!(status.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            body(status).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"storage is (re)initializing","reason":"TooManyRequests","details":{"retryAfterSeconds":3},"code":429}"#
        );
    }

    #[tokio::test]
    async fn server_errors_and_expired_pages() {
        let any = request(Method::POST, "/apis/batch/v1/namespaces/d/jobs");
        let internal = respond(&Fault::internal_error(), &any).unwrap();
        assert_eq!(internal.status(), 500);
        assert_eq!(
            body(internal).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: etcdserver: request timed out","reason":"InternalError","details":{"causes":[{"message":"etcdserver: request timed out"}]},"code":500}"#
        );
        let unavailable = respond(&Fault::service_unavailable(), &any).unwrap();
        assert_eq!(unavailable.status(), 503);
        assert_eq!(
            body(unavailable).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}"#
        );
        let page = request(Method::GET, "/apis/batch/v1/jobs?limit=2&continue=x");
        let expired = respond(&Fault::Expire, &page).unwrap();
        assert_eq!(expired.status(), 410);
        assert!(body(expired).await.contains(r#""reason":"Expired""#));
        let watch = request(Method::GET, "/apis/batch/v1/jobs?watch=1");
        assert!(
            respond(&Fault::Expire, &watch).is_none(),
            "the watch itself ends"
        );
    }
}
