//! The OpenAPI document of both listeners (`src/gateway/openapi.json`), and the one a gateway
//! serves for its fan identity mode.

/// The OpenAPI 3 description of both listeners, as written (every identity mode at once).
pub const OPENAPI: &str = include_str!("gateway/openapi.json");

/// The document this gateway serves: [`OPENAPI`] with the join body as its identity mode takes
/// it — `userId` required in body mode, refused in anonymous mode, optional in jwt and
/// trusted-header mode — so a generated client (or a fuzzer) sends what this gateway accepts.
/// The body itself is required in every mode (`{}` at least): a join must say it is JSON.
pub fn openapi_for(mode: crate::config::FanIdentityMode) -> String {
    use crate::config::FanIdentityMode as M;
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    let join = &mut doc["components"]["schemas"]["JoinRequest"];
    match mode {
        M::Body => join["required"] = serde_json::json!(["userId"]),
        M::Anonymous => {
            join["properties"].as_object_mut().expect("JoinRequest has properties").remove("userId");
            join["not"] = serde_json::json!({"required": ["userId"]});
        }
        M::Jwt | M::TrustedHeader => {}
    }
    let note = format!(" This gateway runs fan identity mode `{}`.", mode.as_str());
    if let Some(d) = doc["info"]["description"].as_str().map(|d| d.to_owned() + &note) {
        doc["info"]["description"] = d.into();
    }
    doc.to_string()
}
