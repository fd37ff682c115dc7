//! The renewal's swimlane as inline SVG: the three roles as lanes, one box per step in order,
//! marked done/current/next by class (presentation in `/static/app.css`; the CSP allows no
//! inline style).

use maud::{Markup, html};
use rekey_engine::{Procedure, Renewal, RenewalStatus, Role, StepStatus};

use super::role_name;

/// How a step shows in the swimlane and the timeline.
pub fn step_class(r: &Renewal, idx: usize) -> &'static str {
    let Some(st) = r.steps.get(idx) else {
        return "waiting";
    };
    match st.status {
        StepStatus::Done { .. } => "done",
        StepStatus::Skipped => "skipped",
        StepStatus::Due { .. } => "current",
        StepStatus::Waiting => {
            // "next": the first waiting step after the last due (or done) one.
            let first_waiting = r
                .steps
                .iter()
                .position(|s| matches!(s.status, StepStatus::Waiting));
            if first_waiting == Some(idx) && r.status == RenewalStatus::Running {
                "next"
            } else {
                "waiting"
            }
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The three roles as lanes, one box per step of `def` in order, marked by `r`'s state.
pub fn swimlane(def: &Procedure, r: &Renewal) -> Markup {
    const LABEL_W: usize = 170;
    const COL_W: usize = 118;
    const LANE_H: usize = 74;
    const BOX_W: usize = 104;
    const BOX_H: usize = 50;
    let width = LABEL_W + COL_W * def.steps.len().max(1) + 10;
    let height = LANE_H * 3 + 4;
    let lane_of = |role: Role| Role::PEOPLE.iter().position(|x| *x == role).unwrap_or(0);
    let place = |idx: usize, role: Role| {
        (
            LABEL_W + idx * COL_W,
            lane_of(role) * LANE_H + 2 + (LANE_H - BOX_H) / 2,
        )
    };
    html! {
        svg id="swimlane" xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox={ "0 0 " (width) " " (height) } role="img" aria-label="Steps of the renewal by role" {
            @for (i, role) in Role::PEOPLE.iter().enumerate() {
                @let y = i * LANE_H + 2;
                rect class="lane" x="0" y=(y) width=(width) height=(LANE_H) {}
                text class="lanelabel" x="8" y=(y + LANE_H / 2 + 4) { (role_name(*role)) }
            }
            @for (idx, step) in def.steps.iter().enumerate() {
                @let (x, y) = place(idx, step.role);
                @if let Some(prev) = idx.checked_sub(1).and_then(|p| def.steps.get(p)) {
                    @let (px, py) = place(idx - 1, prev.role);
                    path class="arrow" d={ "M" (px + BOX_W) " " (py + BOX_H / 2) " L" (x) " " (y + BOX_H / 2) } {}
                }
                @let class = step_class(
                    r,
                    r.steps.iter().position(|st| st.id == step.id).unwrap_or(usize::MAX),
                );
                g class={ "step " (class) } data-step=(step.id) data-status=(class) {
                    title { (step.seed) " " (step.title) " (" (class) ")" }
                    rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="6" {}
                    text x=(x + 6) y=(y + 18) { (step.seed) " · " (class) }
                    text x=(x + 6) y=(y + 36) { (short(&step.title, 17)) }
                }
            }
        }
    }
}
