//! The api tests' vocabulary: the shared harness (`tests/common`), plus the problem-details check.

pub use crate::common::*;

/// Asserts a problem-details response with `status`, and that its detail contains `detail_has`.
pub async fn assert_problem(r: reqwest::Response, status: u16, detail_has: &str) -> serde_json::Value {
    assert_eq!(r.status(), status, "status of {}", r.url());
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: serde_json::Value = r.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:queuegate:problem:")), "type: {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(detail_has), "detail {detail:?} should mention {detail_has:?}");
    body
}
