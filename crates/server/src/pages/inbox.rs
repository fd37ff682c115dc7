//! `/`: the signed-in person's due tasks, the renewals they hold a role in, and sign-out.

use maud::{Markup, html};
use rekey_engine::Renewal;
use rekey_service::TaskView;

use super::{csrf_field, when};

/// The inbox body: `tasks` due for the person, `mine` the newest renewals they may see (`more`
/// when there are older ones), `csrf` their session's token for the sign-out form.
pub fn inbox(tasks: &[TaskView], mine: &[Renewal], more: bool, csrf: &str) -> Markup {
    html! {
        h1 { "My tasks" }
        @if tasks.is_empty() {
            p id="no-tasks" { "Nothing is due for you." }
        } @else {
            table id="tasks" {
                tr { th { "Due" } th { "Renewal" } th { "Step" } th { "To do" } }
                @for t in tasks {
                    tr {
                        td { (t.due_at.map(when).unwrap_or_default()) }
                        td { a href={ "/renewals/" (t.renewal) } { (t.alias) " (" (t.procedure.as_str()) ")" } }
                        td { a href={ "/renewals/" (t.renewal) "/steps/" (t.step) } { (t.seed) " " (t.title) } }
                        td { (t.verb) }
                    }
                }
            }
        }
        @if !mine.is_empty() {
            h2 { "Renewals" }
            ul {
                @for r in mine {
                    li { a href={ "/renewals/" (r.id) } { (r.alias.as_str()) " — " (r.procedure.as_str()) " — " (r.status.as_str()) } }
                }
            }
            @if more {
                p id="older-renewals" { "Only the " (mine.len()) " newest are listed; " code { "GET /api/renewals" } " pages through all of them." }
            }
        }
        form method="post" action="/signout" { (csrf_field(csrf)) button { "Sign out" } }
    }
}
