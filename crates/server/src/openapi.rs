//! The OpenAPI 3 document, built from [`crate::api::routes`] — the same table the router is
//! built from, so a route cannot be served without being documented.

use axum::Json;
use serde_json::{Map, Value, json};

use crate::api::routes;

/// The document as JSON.
pub fn build() -> Value {
    let mut paths = Map::new();
    for r in routes() {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                r.method.to_ascii_lowercase(),
                r.path
                    .replace(['/', '{', '}'], "_")
                    .split('_')
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("_{s}"))
                    .collect::<String>()
            )),
        );
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(schema) = r.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema()}}}),
            );
        }
        if r.auth {
            op.insert("security".into(), json!([{"bearer": []}]));
        }
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": {r.produces: {}}}),
        );
        if r.auth {
            for (code, why) in [
                ("400", "bad input"),
                ("401", "no or unknown bearer token"),
                ("403", "the user does not hold the step's role"),
                ("404", "unknown renewal, step, tenant or receiver"),
                (
                    "409",
                    "refused in the renewal's current state, or a concurrent change",
                ),
            ] {
                responses.insert(code.into(), json!({"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.to_ascii_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rekey",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Renews the private keys that sign outbound CMS messages. Every change goes through the engine, which checks the acting user's role."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}
        }
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(build())
}
