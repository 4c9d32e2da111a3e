//! HTTP responses as the API server writes them: JSON bodies with its headers, and failures
//! as `Status` objects with the failure's code.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::status::ApiError;

/// A JSON response.
pub fn json(code: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body.into())
        .expect("a valid response")
}

/// The `Status` response of a failure.
pub fn error(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, err.to_status_json())
}

/// A plain-text `ok`, as `/healthz` answers.
pub fn ok_text() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("ok"))
        .expect("a valid response")
}
