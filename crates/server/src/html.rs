//! HTML as Rust string rendering: [`esc`] for every interpolated value, one page [`layout`],
//! and the renewal's [`swimlane`] as inline SVG (presentation by classes in `/static/app.css`;
//! the CSP allows no inline style).

use std::fmt::Write as _;

use rekey_engine::{Procedure, Renewal, Role, StepStatus};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` is escaped, `body` is trusted (already built with [`esc`]).
pub fn layout(title: &str, who: Option<&str>, body: &str) -> String {
    let who = match who {
        Some(email) => format!(
            "<span class=\"who\">signed in as <b id=\"who\">{}</b></span> <a href=\"/\">My tasks</a>",
            esc(email)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · rekey</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
<body><header><a class=\"brand\" href=\"/\">rekey</a> {who}</header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// The style sheet.
pub const CSS: &str = r#"body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{background:#1d2330;color:#fff;padding:.6em 1.2em}header a{color:#fff}.brand{font-weight:bold;margin-right:1em}
main{padding:1em 1.5em;max-width:72em}
.error{background:#fde8e8;border:1px solid #d33;padding:.6em;border-radius:4px}
.ok{background:#e6f6ea;border:1px solid #3a3;padding:.6em;border-radius:4px}
.fp{font-family:monospace;word-break:break-all;background:#fff;border:1px solid #ccd;padding:.3em}
table{border-collapse:collapse}td,th{border-bottom:1px solid #dde;padding:.3em .6em;text-align:left}
form{margin:.6em 0;padding:.6em;background:#fff;border:1px solid #dde;border-radius:4px}
input[type=text]{width:40em;max-width:100%;font-family:monospace}
svg .lane{fill:#fff;stroke:#ccd}svg .lanelabel{font-size:13px;fill:#1d2330}
svg .step rect{stroke:#556;stroke-width:1}svg .step text{font-size:11px;fill:#1d2330}
svg .done rect{fill:#bfe5c6}svg .current rect{fill:#ffd27a;stroke:#b26b00;stroke-width:3}
svg .next rect{fill:#dbe7ff;stroke-dasharray:4 2}svg .waiting rect{fill:#eee}svg .skipped rect{fill:#f7f7f7;stroke:#bbb}
svg .arrow{stroke:#889;stroke-width:1.5;fill:none}
.legend span{display:inline-block;padding:0 .5em;margin-right:.4em;border:1px solid #556}
.legend .done{background:#bfe5c6}.legend .current{background:#ffd27a}.legend .next{background:#dbe7ff}.legend .waiting{background:#eee}
"#;

/// How a step shows in the swimlane.
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
            if first_waiting == Some(idx) && r.status == rekey_engine::RenewalStatus::Running {
                "next"
            } else {
                "waiting"
            }
        }
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::TenantAdmin => "Tenant administrator",
        Role::IntegrationDeveloper => "Integration developer",
        Role::ReceiverAdmin => "Receiver administrator",
    }
}

/// Human name of a role.
pub fn role_name(role: Role) -> &'static str {
    role_label(role)
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

/// The three roles as lanes, one box per step in order, marked done/current/next.
pub fn swimlane(def: &Procedure, r: &Renewal) -> String {
    const LABEL_W: usize = 170;
    const COL_W: usize = 118;
    const LANE_H: usize = 74;
    const BOX_W: usize = 104;
    const BOX_H: usize = 50;
    let width = LABEL_W + COL_W * def.steps.len().max(1) + 10;
    let height = LANE_H * 3 + 4;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"swimlane\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Steps of the renewal by role\">"
    );
    let lane_of = |role: Role| Role::ALL.iter().position(|x| *x == role).unwrap_or(0);
    for (i, role) in Role::ALL.iter().enumerate() {
        let y = i * LANE_H + 2;
        let _ = write!(
            s,
            "<rect class=\"lane\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{LANE_H}\"/>\
<text class=\"lanelabel\" x=\"8\" y=\"{}\">{}</text>",
            y + LANE_H / 2 + 4,
            esc(role_label(*role))
        );
    }
    let mut prev: Option<(usize, usize)> = None;
    for (idx, step) in def.steps.iter().enumerate() {
        let x = LABEL_W + idx * COL_W;
        let y = lane_of(step.role) * LANE_H + 2 + (LANE_H - BOX_H) / 2;
        if let Some((px, py)) = prev {
            let _ = write!(
                s,
                "<path class=\"arrow\" d=\"M{} {} L{} {}\"/>",
                px + BOX_W,
                py + BOX_H / 2,
                x,
                y + BOX_H / 2
            );
        }
        prev = Some((x, y));
        let class = step_class(
            r,
            r.steps
                .iter()
                .position(|st| st.id == step.id)
                .unwrap_or(usize::MAX),
        );
        let _ = write!(
            s,
            "<g class=\"step {class}\" data-step=\"{}\" data-status=\"{class}\"><title>{} {} ({class})</title>\
<rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
<text x=\"{}\" y=\"{}\">{} · {class}</text><text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(&step.id),
            esc(&step.seed),
            esc(&step.title),
            x + 6,
            y + 18,
            esc(&step.seed),
            x + 6,
            y + 36,
            esc(&short(&step.title, 17)),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::{esc, layout};

    #[test]
    fn esc_escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("plain café"), "plain café");
    }

    #[test]
    fn layout_escapes_title_and_who_and_has_no_inline_script_or_style() {
        let page = layout("<b>", Some("\"><script>"), "");
        assert!(page.contains("<title>&lt;b&gt; · rekey</title>"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;"));
        assert!(!page.contains("<script") && !page.contains("<style") && !page.contains("style="));
    }
}
