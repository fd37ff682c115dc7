//! `GET /metrics`: Prometheus text exposition format, written by hand. Behind a bearer token
//! when one is configured; certificates are labelled with tenant names and aliases only when
//! configured (`[server] metrics_names`), otherwise counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use crate::{ApiError, AppState, now};

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text.
pub async fn render(st: &AppState) -> Result<String, ApiError> {
    let now = now();
    let svc = st.service();
    let mut out = String::new();

    // Counted by the database; the task gauges below read running renewals only.
    let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (status, procedure, n) in rekey_store::renewals::count_by_status(svc.store().db()).await? {
        by.insert((status, procedure), n);
    }
    out.push_str(
        "# HELP rekey_renewals Renewals by state and procedure.\n# TYPE rekey_renewals gauge\n",
    );
    for ((state, procedure), n) in &by {
        let _ = writeln!(
            out,
            "rekey_renewals{{state=\"{}\",procedure=\"{}\"}} {n}",
            label(state),
            label(procedure)
        );
    }

    let tasks = svc.tasks(None, None).await?;
    let mut due: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for role in rekey_engine::Role::PEOPLE {
        due.insert(role.as_str(), (0, 0));
    }
    for t in &tasks {
        let e = due.entry(t.role.as_str()).or_default();
        e.0 += 1;
        if t.due_at.is_some_and(|d| d < now) {
            e.1 += 1;
        }
    }
    out.push_str("# HELP rekey_tasks_due Due steps of running renewals, by owning role.\n# TYPE rekey_tasks_due gauge\n");
    for (role, (n, _)) in &due {
        let _ = writeln!(out, "rekey_tasks_due{{role=\"{role}\"}} {n}");
    }
    out.push_str("# HELP rekey_tasks_overdue Due steps past their due date, by owning role.\n# TYPE rekey_tasks_overdue gauge\n");
    for (role, (_, n)) in &due {
        let _ = writeln!(out, "rekey_tasks_overdue{{role=\"{role}\"}} {n}");
    }

    let depth = rekey_store::outbox::count_by_status(svc.store().db()).await?;
    out.push_str(
        "# HELP rekey_outbox_messages Outbox rows by status.\n# TYPE rekey_outbox_messages gauge\n",
    );
    for (status, n) in &depth {
        let _ = writeln!(
            out,
            "rekey_outbox_messages{{status=\"{}\"}} {n}",
            label(status)
        );
    }

    if !st.metrics_names() {
        // Without names: how many certificates expire within each horizon, and the soonest,
        // counted by the database.
        let horizons = [7u32, 30, 90];
        let (counts, soonest) =
            rekey_store::keystore::expiry_summary(svc.store().db(), now, &horizons).await?;
        out.push_str("# HELP rekey_certificates_expiring Current certificates expiring within the given days (expired ones count in every horizon).\n# TYPE rekey_certificates_expiring gauge\n");
        for (within, n) in horizons.iter().zip(&counts) {
            let _ = writeln!(
                out,
                "rekey_certificates_expiring{{within_days=\"{within}\"}} {n}"
            );
        }
        if let Some(min) = soonest {
            let min = (min - now).num_seconds() as f64 / 86_400.0;
            out.push_str("# HELP rekey_certificate_days_to_expiry_min Days until the soonest current certificate expires.\n# TYPE rekey_certificate_days_to_expiry_min gauge\n");
            let _ = writeln!(out, "rekey_certificate_days_to_expiry_min {min:.3}");
        }
        return Ok(out);
    }
    let entries = rekey_store::keystore::current_expiries(svc.store().db()).await?;
    let names: BTreeMap<_, _> = svc
        .store()
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name.to_string()))
        .collect();
    out.push_str("# HELP rekey_certificate_days_to_expiry Days until the current certificate under each alias expires.\n# TYPE rekey_certificate_days_to_expiry gauge\n");
    for (tenant, alias, not_after) in &entries {
        let days = (*not_after - now).num_seconds() as f64 / 86_400.0;
        let tenant = names.get(tenant).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "rekey_certificate_days_to_expiry{{tenant=\"{}\",alias=\"{}\"}} {days:.3}",
            label(&tenant),
            label(alias.as_str())
        );
    }
    Ok(out)
}

/// `GET /metrics`; with a metrics token configured, only for `Authorization: Bearer <token>`.
pub async fn metrics(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(expected) = st.metrics_token() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !given.is_some_and(|g| crate::web::session::same(g, expected)) {
            return Err(ApiError::unauthorized(
                "give Authorization: Bearer <metrics token> ([server] metrics_token)",
            ));
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&st).await?,
    ))
}
