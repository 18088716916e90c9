//! Both listeners' route tables against the OpenAPI document and the route labels: a test above
//! both listeners, as start-up is.

use crate::routes::Endpoint;

/// (path, lower-case method) of every endpoint of a table.
fn pairs(table: &[Endpoint]) -> Vec<(String, String)> {
    let mut v: Vec<_> = table.iter().map(|e| (e.path.to_owned(), e.method.as_str().to_lowercase())).collect();
    v.sort();
    v
}

#[test]
fn the_openapi_document_describes_exactly_the_routes_served_each_under_its_own_listener() {
    let doc: serde_json::Value = serde_json::from_str(crate::openapi::OPENAPI).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    let mut public = Vec::new();
    let mut admin = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let on_admin = item["servers"][0]["description"].as_str().is_some_and(|d| d.starts_with("admin listener"));
        for method in item.as_object().unwrap().keys().filter(|k| *k != "servers" && *k != "parameters") {
            let pair = (path.clone(), method.clone());
            if on_admin {
                admin.push(pair)
            } else {
                public.push(pair)
            }
        }
    }
    public.sort();
    admin.sort();
    assert_eq!(public, pairs(crate::gateway::ROUTES), "public listener");
    assert_eq!(admin, pairs(crate::admin::ROUTES), "admin listener");
}

#[test]
fn route_labels_come_from_the_tables_and_nothing_else_leaks_into_them() {
    use crate::routes::label;
    let (public, admin) = (crate::gateway::ROUTES, crate::admin::ROUTES);
    assert_eq!(label(public, "/v1/concerts/tour-1/queue"), "/v1/concerts/{concertId}/queue");
    assert_eq!(label(public, "/v1/concerts/c/queue/u/events"), "/v1/concerts/{concertId}/queue/{userId}/events");
    assert_eq!(label(admin, "/admin/v1/concerts/c/queue/u"), "/admin/v1/concerts/{concertId}/queue/{userId}");
    assert_eq!(label(public, "/"), "/");
    assert_eq!(label(admin, "/readyz"), "/readyz");
    assert_eq!(label(public, "/readyz"), "unmatched", "each listener labels only its own routes");
    assert_eq!(label(public, "/wp-login.php"), "unmatched");
    assert_eq!(label(public, "/v1/concerts/x/queue/y/z"), "unmatched");
}
