//! The OpenAPI 3.1 document, derived by utoipa from the handlers' `#[utoipa::path]`
//! annotations and the request and response types ([`crate::api::schema`]). The router is built
//! from the same annotations ([`crate::api::routes`]); the server's tests check that the two
//! list the same operations, that real responses carry documented status codes and match the
//! documented schemas, and that an independent validator accepts the document.

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{ops, renewals, schema, tasks, users};

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
    ),
    components(schemas(
        schema::Error,
        schema::Renewal,
        schema::Outcome,
        schema::Task,
        schema::ApiToken,
        schema::UserRoles
    )),
    modifiers(&Bearer),
    tags(
        (name = "tasks", description = "Due steps and acting on them"),
        (name = "renewals", description = "Starting, following, cancelling and rolling back renewals"),
        (name = "users", description = "API tokens, and taking roles from or removing users"),
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
        // Response schemas are closed: a field added to a response must be documented.
        assert_eq!(
            doc["components"]["schemas"]["Renewal"]["additionalProperties"],
            false
        );
    }
}
