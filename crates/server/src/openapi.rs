//! The OpenAPI 3.1 document, derived by utoipa from the handlers' `#[utoipa::path]`
//! annotations and the request and response types ([`crate::api::schema`]). The router is built
//! from the same annotations ([`crate::api::routes`]); the server's tests check that the two
//! list the same operations, that real responses carry documented status codes and match the
//! documented schemas, and that an independent validator accepts the document.

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{ops, renewals, schema, sign, tasks, users};

/// The document's operations, schemas and security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rekey",
        description = "Renews the private keys that sign outbound CMS messages. Every change goes through the engine, which checks the acting user's role."
    ),
    paths(
        ops::healthz,
        ops::metrics,
        ops::document,
        tasks::list,
        tasks::approve,
        tasks::complete,
        renewals::list_renewals,
        renewals::start,
        renewals::show_renewal,
        renewals::certificate_request,
        renewals::upload_certificate,
        renewals::propose_window,
        renewals::accept_window,
        renewals::cancel,
        renewals::rollback,
        users::list_tokens,
        users::revoke_token,
        users::revoke_role,
        users::remove_user,
        sign::sign,
    ),
    components(schemas(
        schema::Error,
        schema::Renewal,
        schema::Outcome,
        schema::Task,
        schema::ApiToken,
        schema::UserRoles
    )),
    modifiers(&Bearer, &LimitAnswers),
    tags(
        (name = "tasks", description = "Due steps and acting on them"),
        (name = "renewals", description = "Starting, following, cancelling and rolling back renewals"),
        (name = "users", description = "API tokens, and taking roles from or removing users"),
        (name = "signing", description = "Signing payloads as a flow's signer step signs them now"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the API's operations name: an API token from
/// `rekey user token --email EMAIL`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `rekey user token --email EMAIL`"))
                    .build(),
            ),
        );
    }
}

/// Adds the answers [`crate::limits`] gives before any handler runs, so that a client reading
/// the document knows them: 408 (the request took longer than `[server]
/// request_timeout_secs`) on every operation, 413 (body over `max_body_bytes`) on those that
/// take a body, and 429 with `Retry-After` (over `api_requests_per_minute`) on `/api/...`.
struct LimitAnswers;

impl Modify for LimitAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            let ops = [
                (&mut item.get, false),
                (&mut item.delete, false),
                (&mut item.post, true),
                (&mut item.put, true),
            ];
            for (op, has_body) in ops {
                let Some(op) = op.as_mut() else { continue };
                let r = &mut op.responses.responses;
                r.entry("408".into()).or_insert_with(|| {
                    answer("The request took longer than the server allows").into()
                });
                if has_body {
                    r.entry("413".into()).or_insert_with(|| {
                        answer("The body is larger than the server allows").into()
                    });
                }
                if api {
                    r.entry("429".into()).or_insert_with(|| {
                        answer("Too many requests from this address or token; `Retry-After` says when to try again").into()
                    });
                }
            }
        }
    }
}

/// The document as JSON.
pub fn build() -> Value {
    // Serialising a document of strings, maps and numbers cannot fail.
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::build;

    #[test]
    fn document_is_3_1_with_bearer_and_the_real_creating_status() {
        let doc = build();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let start = &doc["paths"]["/api/renewals"]["post"]["responses"];
        assert!(
            start["201"].is_object() && start["200"].is_null(),
            "{start}"
        );
        // The limits' answers are documented where they can happen.
        let get = &doc["paths"]["/api/renewals"]["get"]["responses"];
        assert!(
            get["408"].is_object() && get["429"].is_object() && get["413"].is_null(),
            "{get}"
        );
        assert!(start["413"].is_object(), "{start}");
        assert!(doc["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
        // Response schemas are closed: a field added to a response must be documented.
        assert_eq!(
            doc["components"]["schemas"]["Renewal"]["additionalProperties"],
            false
        );
    }
}
