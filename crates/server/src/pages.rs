//! The web inbox's HTML, as maud templates: the page [`layout`], the error and sign-in bodies,
//! and by page the task ([`task`]), the inbox ([`inbox`]) and the renewal with its swimlane
//! ([`renewal`], [`swimlane`]). Style comes from `/static/app.css` ([`CSS`]) by class.
//!
//! Owns markup only: handlers in `crate::web` fetch what a page shows and pass it in; nothing
//! here reads the store or knows about sessions. maud escapes every interpolated value, and the
//! templates hold no `<script>`, no `<style>` and no `style=` (the CSP is `default-src 'self'`).

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};
use rekey_engine::Role;

pub mod inbox;
pub mod renewal;
pub mod swimlane;
pub mod task;

/// The style sheet served at `/static/app.css`.
pub const CSS: &str = include_str!("pages/app.css");

/// A whole page: `title` and `who` (the signed-in person's address) are escaped, `body` is
/// markup already built by a template.
pub fn layout(title: &str, who: Option<&str>, body: Markup) -> String {
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rekey" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header {
                    a class="brand" href="/" { "rekey" }
                    " "
                    @if let Some(email) = who {
                        span class="who" { "signed in as " b id="who" { (email) } }
                        " "
                        a href="/" { "My tasks" }
                    }
                }
                main { (body) }
            }
        }
        "\n"
    }
    .into_string()
}

/// The body of an error page: what went wrong, and the way back.
pub fn error(message: &str) -> Markup {
    html! {
        h1 { "Not possible" }
        p class="error" id="error" { (message) }
        p { a href="/" { "Back to my tasks" } }
    }
}

/// The body shown to someone not signed in.
pub fn sign_in() -> Markup {
    html! {
        h1 { "Sign in" }
        p { "Open the link in the email rekey sent you: it signs you in and shows your task." }
    }
}

/// A time as pages show it.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Human name of a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::TenantAdmin => "Tenant administrator",
        Role::IntegrationDeveloper => "Integration developer",
        Role::ReceiverAdmin => "Receiver administrator",
        Role::Signer => "Signer",
    }
}

/// The hidden field carrying a form's CSRF token.
fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

#[cfg(test)]
mod tests {
    use maud::html;

    use super::layout;

    #[test]
    fn layout_escapes_title_and_who_and_has_no_inline_script_or_style() {
        let page = layout("<b>", Some("\"><script>"), html! { p { "<i>" } });
        assert!(page.starts_with("<!doctype html>\n<html lang=\"en\"><head>"));
        assert!(page.contains("<title>&lt;b&gt; · rekey</title>"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;"));
        assert!(page.contains("<main><p>&lt;i&gt;</p></main>"));
        assert!(!page.contains("<script") && !page.contains("<style") && !page.contains("style="));
    }
}
