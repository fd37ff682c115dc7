//! A task's page: the step, the person's role and due date, and the form its verb needs
//! (approve, confirm with a fingerprint, propose or accept the downtime window), plus the
//! downtime window's forms, which the renewal page shows too.

use maud::{Markup, html};
use rekey_engine::Renewal;
use rekey_service::TaskView;

use super::{csrf_field, role_name, when};

/// Where a task page's forms go and with which CSRF token.
pub struct FormTarget {
    /// The forms' `action`: the link (`/tasks/{token}`) before sign-in, the step's page after.
    pub action: String,
    /// The CSRF token the forms carry.
    pub csrf: String,
}

/// The task as the person sees it; `task` is `None` when the step is not due for them, and
/// `message` is a refusal to show above the forms.
pub fn task(
    r: &Renewal,
    step_title: &str,
    task: Option<&TaskView>,
    target: &FormTarget,
    message: Option<&str>,
) -> Markup {
    // Before sign-in (a link page) the renewal page is not reachable yet: the "Open the
    // renewal" button signs in first.
    let linked = !target.action.starts_with("/tasks/");
    html! {
        h1 id="task-title" { (step_title) }
        @if let Some(m) = message {
            p class="error" id="error" { (m) }
        }
        p {
            "Renewal of alias " b { (r.alias.as_str()) } " (" (r.procedure.as_str()) ")"
            @if linked {
                ", " a href={ "/renewals/" (r.id) } { "see the whole renewal" }
            }
            "."
        }
        @match task {
            None => {
                p id="not-due" { "This step is not due for you now (the renewal is " (r.status.as_str()) ")." }
            }
            Some(t) => {
                p { "Your role: " (role_name(t.role)) ". Due: " (t.due_at.map(when).unwrap_or_else(|| "-".into())) "." }
                @match t.verb {
                    "approve" => {
                        form method="post" action=(target.action) {
                            (csrf_field(&target.csrf))
                            input type="hidden" name="action" value="approve";
                            p { "rekey carries this step out once you approve it." }
                            button id="approve" { "Approve" }
                        }
                    }
                    "complete" => {
                        @if let Some(fp) = &t.new_certificate {
                            p { "The new certificate's SHA-256 fingerprint:" }
                            p class="fp" id="fingerprint" { (fp) }
                        }
                        form method="post" action=(target.action) {
                            (csrf_field(&target.csrf))
                            input type="hidden" name="action" value="complete";
                            label {
                                "SHA-256 fingerprint of the certificate you installed"
                                br;
                                input type="text" id="fingerprint-input" name="fingerprint" autocomplete="off" required;
                            }
                            p { button id="confirm" { "Confirm" } }
                        }
                    }
                    "agree" => { (window_forms(r, &target.action, &target.csrf)) }
                    _ => { p { "rekey does this step itself." } }
                }
            }
        }
        form method="post" action=(target.action) {
            (csrf_field(&target.csrf))
            input type="hidden" name="action" value="signin";
            button id="open" { "Open the renewal" }
        }
    }
}

/// The window as proposed so far, a form to propose (or counter-propose) one, and a form to
/// accept a proposal not yet agreed.
pub fn window_forms(r: &Renewal, action: &str, csrf: &str) -> Markup {
    html! {
        @if let Some(w) = &r.window {
            p id="window" {
                "Window proposed by " (w.proposer) ": " (when(w.start)) " to " (when(w.end))
                @if w.agreed { " (agreed)" }
                "."
            }
        }
        form method="post" action=(action) {
            (csrf_field(csrf))
            input type="hidden" name="action" value="propose";
            label { "Opens (UTC) " input type="datetime-local" name="start" required; }
            " "
            label { "Closes (UTC) " input type="datetime-local" name="end" required; }
            " "
            button id="propose" { "Propose window" }
        }
        @if r.window.as_ref().is_some_and(|w| !w.agreed) {
            form method="post" action=(action) {
                (csrf_field(csrf))
                input type="hidden" name="action" value="accept";
                button id="accept" { "Accept the proposed window" }
            }
        }
    }
}
