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

#[cfg(test)]
mod tests {
    use super::openapi_for;
    use crate::config::FanIdentityMode as M;

    fn join_schema(mode: M) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&openapi_for(mode)).unwrap();
        assert!(doc["info"]["description"].as_str().unwrap().contains(mode.as_str()));
        doc["components"]["schemas"]["JoinRequest"].clone()
    }

    #[test]
    fn the_served_join_body_is_what_the_gateway_s_identity_mode_accepts() {
        let body = join_schema(M::Body);
        assert_eq!(body["required"], serde_json::json!(["userId"]), "{{}} is refused in body mode");
        let doc: serde_json::Value = serde_json::from_str(&openapi_for(M::Body)).unwrap();
        assert_eq!(doc["paths"]["/v1/concerts/{concertId}/queue"]["post"]["requestBody"]["required"], true);
        let anonymous = join_schema(M::Anonymous);
        assert!(anonymous["properties"].get("userId").is_none(), "{anonymous}");
        assert_eq!(anonymous["not"]["required"], serde_json::json!(["userId"]));
        for mode in [M::Jwt, M::TrustedHeader] {
            let s = join_schema(mode);
            assert!(s["properties"].get("userId").is_some() && s.get("required").is_none(), "{s}");
        }
        assert_eq!(
            body["properties"]["pow"]["properties"]["solution"]["maxLength"],
            crate::gateway::challenge::MAX_SOLUTION_LEN
        );
        assert_eq!(
            body["properties"]["pow"]["properties"]["challenge"]["maxLength"],
            crate::gateway::challenge::MAX_CHALLENGE_LEN
        );
    }
}
