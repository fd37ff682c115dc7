//! `/renewals/{id}`: a renewal's status, new certificate, certificate request (CA-signed,
//! while it waits for the chain), swimlane, timeline, the person's due steps and the downtime
//! window's forms.

use maud::{Markup, html};
use rekey_engine::{Procedure, ProcedureId, Renewal, RenewalStatus, StepStatus};
use rekey_service::TaskView;

use super::swimlane::{step_class, swimlane};
use super::task::window_forms;
use super::{role_name, when};

/// The page's title.
pub fn title(r: &Renewal) -> String {
    format!("Renewal of {}", r.alias.as_str())
}

/// The page's body: `def` is the renewal's procedure, `tasks` the person's due tasks (of any
/// renewal), `csr` the PEM request while one waits, `csrf` the session's token.
pub fn renewal(
    def: &Procedure,
    r: &Renewal,
    tasks: &[TaskView],
    csr: Option<&str>,
    csrf: &str,
) -> Markup {
    let mine: Vec<&TaskView> = tasks.iter().filter(|t| t.renewal == r.id).collect();
    html! {
        h1 { (title(r)) }
        p { (def.title) " — " span id="status" { (r.status.as_str()) } ". Started " (when(r.started_at)) "." }
        @if let Some(fp) = &r.new_cert {
            p { "New certificate: " span class="fp" { (fp) } }
        }
        @if let Some(pem) = csr {
            h2 { "Certificate request" }
            p {
                "Have your certificate authority sign this request, then upload the certificate \
                 followed by its issuers ("
                code { "rekey renewal upload-cert " (r.id) " --cert chain.pem" }
                ", or "
                code { "POST /api/renewals/" (r.id) "/certificate" }
                ")."
            }
            pre id="csr" { (pem) }
        }
        p class="legend" {
            span class="done" { "done" }
            span class="current" { "current" }
            span class="next" { "next" }
            span class="waiting" { "later" }
        }
        (swimlane(def, r))
        h2 { "Timeline" }
        table id="timeline" {
            tr { th { "#" } th { "Step" } th { "Role" } th { "Status" } th { "By" } th { "When" } }
            @for (i, step) in r.steps.iter().enumerate() {
                @let sd = def.step(&step.id);
                @let (by, at) = match &step.status {
                    StepStatus::Done { by, at, .. } => (by.clone(), when(*at)),
                    StepStatus::Due { due_at, .. } => (String::new(), format!("due {}", when(*due_at))),
                    _ => (String::new(), String::new()),
                };
                tr data-step=(step.id) data-status=(step_class(r, i)) {
                    td { (sd.map(|d| d.seed.as_str()).unwrap_or("")) }
                    td { (sd.map(|d| d.title.as_str()).unwrap_or(&step.id)) }
                    td { (sd.map(|d| role_name(d.role)).unwrap_or("")) }
                    td { (step_class(r, i)) }
                    td { (by) }
                    td { (at) }
                }
            }
        }
        @if !mine.is_empty() {
            h2 { "Your part now" }
            ul {
                @for t in mine {
                    li { a href={ "/renewals/" (r.id) "/steps/" (t.step) } { (t.seed) " " (t.title) } " (" (t.verb) ")" }
                }
            }
        }
        @if r.procedure == ProcedureId::DowntimeWindow && r.status == RenewalStatus::Running {
            h2 { "Downtime window" }
            (window_forms(r, &format!("/renewals/{}/window", r.id), csrf))
        }
    }
}
