//! The web inbox: server-rendered pages for the three roles.
//!
//! Sign-in is by the action link of an email (`/tasks/{token}`): `GET` shows the task without
//! using the token; the page's form `POST`s use it (once), start a session (cookie `HttpOnly`,
//! `SameSite=Strict`, `Secure` under an https base URL) and then do what the form asked, as the
//! link's recipient. Signed in, a person sees their due tasks (`/`), a renewal's swimlane and
//! timeline (`/renewals/{id}`) and the approve/confirm/window forms. Every form carries a CSRF
//! token: derived from the link token before sign-in, the session's own after.
//!
//! Sessions live in memory: a restart signs everyone out (they sign in again from a link).

use std::fmt::Write as _;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use rekey_engine::{Event, ProcedureId, Renewal, StepStatus};
use rekey_notifier::links;
use rekey_service::TaskView;
use rekey_store::{Email, User};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::{may_see, parse_id};
use crate::html::{CSS, esc, layout, role_name, step_class, swimlane};
use crate::{ApiError, AppState, now, offload};

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::hours(8);
const COOKIE: &str = "rekey_session";

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    /// Their email address.
    pub email: String,
    /// The CSRF token of their forms.
    pub csrf: String,
    /// When it ends.
    pub expires: DateTime<Utc>,
}

/// The web inbox's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox))
        .route("/static/app.css", get(css))
        .route("/tasks/{token}", get(link_page).post(link_post))
        .route("/renewals/{id}", get(renewal_page))
        .route(
            "/renewals/{id}/steps/{step}",
            get(step_page).post(step_post),
        )
        .route("/renewals/{id}/window", post(window_post))
        .route("/signout", post(signout))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

fn random_hex() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(&e))?;
    Ok(hex::encode(b))
}

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The CSRF token of a link page's forms: bound to the link and this server's secret.
fn link_csrf(st: &AppState, token: &str) -> String {
    sha(&[st.secret(), b"link-csrf", token.as_bytes()])
}

/// Equal without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn session_of(st: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = cookie_value(headers)?;
    let key = sha(&[id.as_bytes()]);
    let mut map = st.sessions().lock().ok()?;
    match map.get(&key) {
        Some(s) if s.expires > now() => Some(s.clone()),
        Some(_) => {
            map.remove(&key);
            None
        }
        None => None,
    }
}

/// Starts a session for `email`; returns it and its `Set-Cookie` value.
fn start_session(st: &AppState, email: &str) -> Result<(Session, HeaderValue), ApiError> {
    let id = random_hex()?;
    let s = Session {
        email: email.to_string(),
        csrf: random_hex()?,
        expires: now() + SESSION_TTL,
    };
    {
        let mut map = st
            .sessions()
            .lock()
            .map_err(|_| ApiError::internal(&"session table poisoned"))?;
        let t = now();
        map.retain(|_, v| v.expires > t);
        map.insert(sha(&[id.as_bytes()]), s.clone());
    }
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if st.secure_cookies() { "; Secure" } else { "" }
    );
    let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(&e))?;
    Ok((s, value))
}

/// An error as a page.
fn error_page(e: &ApiError, who: Option<&str>) -> Response {
    let body = format!(
        "<h1>Not possible</h1><p class=\"error\" id=\"error\">{}</p><p><a href=\"/\">Back to my tasks</a></p>",
        esc(&e.message)
    );
    (e.status, Html(layout("Not possible", who, &body))).into_response()
}

fn not_signed_in() -> Response {
    let body = "<h1>Sign in</h1><p>Open the link in the email rekey sent you: it signs you in \
and shows your task.</p>";
    (
        StatusCode::UNAUTHORIZED,
        Html(layout("Sign in", None, body)),
    )
        .into_response()
}

async fn user_of(st: &AppState, email: &str) -> Result<User, ApiError> {
    let e = Email::parse(email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(st.service().store().user_by_email(&e).await?)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

async fn inbox(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = session_of(&st, &headers) else {
        return not_signed_in();
    };
    match inbox_body(&st, &s).await {
        Ok(body) => Html(layout("My tasks", Some(&s.email), &body)).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

async fn inbox_body(st: &AppState, s: &Session) -> Result<String, ApiError> {
    let tasks = st.service().tasks(Some(&s.email), None).await?;
    let mut b = String::from("<h1>My tasks</h1>");
    if tasks.is_empty() {
        b.push_str("<p id=\"no-tasks\">Nothing is due for you.</p>");
    } else {
        b.push_str(
            "<table id=\"tasks\"><tr><th>Due</th><th>Renewal</th><th>Step</th><th>To do</th></tr>",
        );
        for t in &tasks {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/renewals/{}\">{} ({})</a></td><td><a href=\"/renewals/{}/steps/{}\">{} {}</a></td><td>{}</td></tr>",
                t.due_at.map(when).unwrap_or_default(),
                t.renewal,
                esc(t.alias.as_str()),
                esc(t.procedure.as_str()),
                t.renewal,
                esc(&t.step),
                esc(&t.seed),
                esc(&t.title),
                esc(t.verb)
            );
        }
        b.push_str("</table>");
    }
    let user = user_of(st, &s.email).await?;
    let mine: Vec<Renewal> = st
        .service()
        .renewals(None)
        .await?
        .into_iter()
        .filter(|r| may_see(&user, r))
        .collect();
    if !mine.is_empty() {
        b.push_str("<h2>Renewals</h2><ul>");
        for r in &mine {
            let _ = write!(
                b,
                "<li><a href=\"/renewals/{}\">{} — {} — {}</a></li>",
                r.id,
                esc(r.alias.as_str()),
                esc(r.procedure.as_str()),
                esc(r.status.as_str())
            );
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
        esc(&s.csrf)
    );
    Ok(b)
}

/// Where a task page's forms go and with which CSRF token.
struct FormTarget {
    action: String,
    csrf: String,
}

/// The task, as the person sees it, with the forms its verb needs.
fn task_body(
    r: &Renewal,
    step_title: &str,
    task: Option<&TaskView>,
    target: &FormTarget,
    message: Option<&ApiError>,
) -> String {
    let mut b = String::new();
    let _ = write!(b, "<h1 id=\"task-title\">{}</h1>", esc(step_title));
    if let Some(e) = message {
        let _ = write!(b, "<p class=\"error\" id=\"error\">{}</p>", esc(&e.message));
    }
    // Before sign-in (a link page) the renewal page is not reachable yet: the "Open the
    // renewal" button signs in first.
    let whole = if target.action.starts_with("/tasks/") {
        String::new()
    } else {
        format!(", <a href=\"/renewals/{}\">see the whole renewal</a>", r.id)
    };
    let _ = write!(
        b,
        "<p>Renewal of alias <b>{}</b> ({}){whole}.</p>",
        esc(r.alias.as_str()),
        esc(r.procedure.as_str()),
    );
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&target.csrf)
    );
    let Some(t) = task else {
        let _ = write!(
            b,
            "<p id=\"not-due\">This step is not due for you now (the renewal is {}).</p>\
<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"signin\"><button id=\"open\">Open the renewal</button></form>",
            esc(r.status.as_str()),
            esc(&target.action)
        );
        return b;
    };
    let _ = write!(
        b,
        "<p>Your role: {}. Due: {}.</p>",
        esc(role_name(t.role)),
        t.due_at.map(when).unwrap_or_else(|| "-".into())
    );
    match t.verb {
        "approve" => {
            let _ = write!(
                b,
                "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"approve\">\
<p>rekey carries this step out once you approve it.</p><button id=\"approve\">Approve</button></form>",
                esc(&target.action)
            );
        }
        "complete" => {
            if let Some(fp) = &t.new_certificate {
                let _ = write!(
                    b,
                    "<p>The new certificate's SHA-256 fingerprint:</p><p class=\"fp\" id=\"fingerprint\">{}</p>",
                    esc(fp)
                );
            }
            let _ = write!(
                b,
                "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"complete\">\
<label>SHA-256 fingerprint of the certificate you installed<br>\
<input type=\"text\" id=\"fingerprint-input\" name=\"fingerprint\" autocomplete=\"off\" required></label>\
<p><button id=\"confirm\">Confirm</button></p></form>",
                esc(&target.action)
            );
        }
        "agree" => b.push_str(&window_forms(r, &target.action, &target.csrf)),
        _ => b.push_str("<p>rekey does this step itself.</p>"),
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"signin\"><button id=\"open\">Open the renewal</button></form>",
        esc(&target.action)
    );
    b
}

fn window_forms(r: &Renewal, action: &str, csrf: &str) -> String {
    let mut b = String::new();
    if let Some(w) = &r.window {
        let _ = write!(
            b,
            "<p id=\"window\">Window proposed by {}: {} to {}{}.</p>",
            esc(&w.proposer),
            when(w.start),
            when(w.end),
            if w.agreed { " (agreed)" } else { "" }
        );
    }
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    );
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{a}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"propose\">\
<label>Opens (UTC) <input type=\"datetime-local\" name=\"start\" required></label> \
<label>Closes (UTC) <input type=\"datetime-local\" name=\"end\" required></label> \
<button id=\"propose\">Propose window</button></form>",
        a = esc(action)
    );
    if r.window.as_ref().is_some_and(|w| !w.agreed) {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"accept\">\
<button id=\"accept\">Accept the proposed window</button></form>",
            esc(action)
        );
    }
    b
}

/// A posted task or window form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    action: String,
    fingerprint: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn parse_time(field: &str, v: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let v = v
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("give the window's {field}")))?;
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::bad_request(format!(
        "{field} {v:?} is not a time (YYYY-MM-DDTHH:MM, UTC)"
    )))
}

/// What a form asks, as an engine event (`None`: only sign in).
fn event_of(form: &ActionForm, step: &str) -> Result<Option<Event>, ApiError> {
    Ok(Some(match form.action.as_str() {
        "signin" => return Ok(None),
        "approve" => Event::Approve { step: step.into() },
        "complete" => rekey_service::complete_event(step.into(), form.fingerprint.as_deref())?,
        "propose" => Event::ProposeWindow {
            start: parse_time("start", form.start.as_deref())?,
            end: parse_time("end", form.end.as_deref())?,
        },
        "accept" => Event::AcceptWindow,
        other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
    }))
}

async fn task_for(
    st: &AppState,
    email: &str,
    renewal: Uuid,
    step: &str,
) -> Result<Option<TaskView>, ApiError> {
    let tasks = match st.service().tasks(Some(email), None).await {
        Ok(t) => t,
        // Someone with a link but no account can see the task but do nothing.
        Err(rekey_service::ServiceError::UnknownUser(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(tasks
        .into_iter()
        .find(|t| t.renewal == renewal && t.step == step))
}

fn step_title(st: &AppState, r: &Renewal, step: &str) -> String {
    st.service()
        .catalog()
        .get(r.procedure)
        .step(step)
        .map(|s| format!("{} {}", s.seed, s.title))
        .unwrap_or_else(|| step.to_string())
}

async fn render_task(
    st: &AppState,
    email: &str,
    r: &Renewal,
    step: &str,
    target: &FormTarget,
    message: Option<&ApiError>,
) -> Result<String, ApiError> {
    let task = task_for(st, email, r.id, step).await?;
    Ok(task_body(
        r,
        &step_title(st, r, step),
        task.as_ref(),
        target,
        message,
    ))
}

/// `GET /tasks/{token}`: the task a link opens, without using the link.
async fn link_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let result = async {
        let info = links::lookup(st.service().store().db(), &token, now()).await?;
        let r = st.service().renewal(info.renewal).await?;
        let target = FormTarget {
            action: format!("/tasks/{token}"),
            csrf: link_csrf(&st, &token),
        };
        let body = render_task(&st, &info.recipient, &r, &info.step, &target, None).await?;
        Ok::<_, ApiError>(layout(&step_title(&st, &r, &info.step), None, &format!(
            "<p>For <b id=\"recipient\">{}</b>. Submitting a form below signs you in; this link then stops working.</p>{body}",
            esc(&info.recipient)
        )))
    }
    .await;
    match result {
        Ok(page) => Html(page).into_response(),
        Err(e) => error_page(&e, None),
    }
}

/// Does what a form asked as `email`; on success redirects to the renewal, else shows the
/// task again with the refusal. `cookie` is set on either answer.
async fn perform(
    st: &AppState,
    session: &Session,
    renewal: Uuid,
    step: &str,
    form: &ActionForm,
    cookie: Option<HeaderValue>,
) -> Response {
    let result = async {
        match event_of(form, step)? {
            None => Ok(()),
            Some(ev) => {
                let (svc, email) = (st.service().clone(), session.email.clone());
                offload(async move { svc.act(renewal, &email, ev, now()).await })
                    .await?
                    .map(|_| ())
                    .map_err(ApiError::from)
            }
        }
    }
    .await;
    let mut res = match result {
        Ok(()) => Redirect::to(&format!("/renewals/{renewal}")).into_response(),
        Err(e) => {
            let page = async {
                let r = st.service().renewal(renewal).await?;
                let target = FormTarget {
                    action: format!("/renewals/{renewal}/steps/{step}"),
                    csrf: session.csrf.clone(),
                };
                let body = render_task(st, &session.email, &r, step, &target, Some(&e)).await?;
                Ok::<_, ApiError>(layout(
                    &step_title(st, &r, step),
                    Some(&session.email),
                    &body,
                ))
            }
            .await;
            match page {
                Ok(p) => (e.status, Html(p)).into_response(),
                Err(e2) => error_page(&e2, Some(&session.email)),
            }
        }
    };
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// `POST /tasks/{token}`: uses the link (once), signs its recipient in, does what the form
/// asked.
async fn link_post(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(e) = same_origin(&st, &headers) {
        return error_page(&e, None);
    }
    if !same(&form.csrf, &link_csrf(&st, &token)) {
        return error_page(
            &ApiError::new(
                StatusCode::FORBIDDEN,
                "the form is stale; open the link again",
            ),
            None,
        );
    }
    let info = match links::consume(st.service().store().db(), &token, now()).await {
        Ok(i) => i,
        Err(e) => return error_page(&e.into(), None),
    };
    let (session, cookie) = match start_session(&st, &info.recipient) {
        Ok(x) => x,
        Err(e) => return error_page(&e, None),
    };
    perform(&st, &session, info.renewal, &info.step, &form, Some(cookie)).await
}

/// `GET /renewals/{id}/steps/{step}` (signed in).
async fn step_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let Some(s) = session_of(&st, &headers) else {
        return not_signed_in();
    };
    let result = async {
        let user = user_of(&st, &s.email).await?;
        let r = crate::api::visible(&st, &user, parse_id(&id)?).await?;
        let target = FormTarget {
            action: format!("/renewals/{}/steps/{step}", r.id),
            csrf: s.csrf.clone(),
        };
        let body = render_task(&st, &s.email, &r, &step, &target, None).await?;
        Ok::<_, ApiError>(layout(&step_title(&st, &r, &step), Some(&s.email), &body))
    }
    .await;
    match result {
        Ok(p) => Html(p).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

/// Refuses a form posted from another site (login CSRF with the attacker's own link, or a
/// forged form): browsers say so in `Sec-Fetch-Site` and `Origin`.
fn same_origin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this form was sent from another site; open rekey's page and submit it there",
        )
    };
    // Modern browsers: Sec-Fetch-Site says where the form came from. (Under
    // `Referrer-Policy: no-referrer` they send `Origin: null`, so Origin alone cannot tell.)
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            _ => Err(refused()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refused())?;
        if origin == "null" {
            return Ok(());
        }
        let base = st.base_url();
        // The base URL's scheme://host[:port], without any path.
        let base_origin = match base.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
            None => base.to_string(),
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same_host = origin
            .split_once("://")
            .is_some_and(|(_, h)| !host.is_empty() && h == host);
        if origin != base_origin && !same_host {
            return Err(refused());
        }
    }
    Ok(())
}

fn check_csrf(s: &Session, form: &ActionForm) -> Result<(), ApiError> {
    if same(&s.csrf, &form.csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the form is stale; reload the page and try again",
        ))
    }
}

/// `POST /renewals/{id}/steps/{step}` (signed in, CSRF).
async fn step_post(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Some(s) = session_of(&st, &headers) else {
        return not_signed_in();
    };
    if let Err(e) = same_origin(&st, &headers).and_then(|()| check_csrf(&s, &form)) {
        return error_page(&e, Some(&s.email));
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&e, Some(&s.email)),
    };
    perform(&st, &s, id, &step, &form, None).await
}

/// `POST /renewals/{id}/window` (signed in, CSRF): propose or accept the window.
async fn window_post(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Some(s) = session_of(&st, &headers) else {
        return not_signed_in();
    };
    let result = async {
        same_origin(&st, &headers)?;
        check_csrf(&s, &form)?;
        let id = parse_id(&id)?;
        if !matches!(form.action.as_str(), "propose" | "accept") {
            return Err(ApiError::bad_request("unknown action"));
        }
        if let Some(ev) = event_of(&form, "window")? {
            let (svc, email) = (st.service().clone(), s.email.clone());
            offload(async move { svc.act(id, &email, ev, now()).await }).await??;
        }
        Ok(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/renewals/{id}")).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

async fn signout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let (Some(s), Some(id)) = (session_of(&st, &headers), cookie_value(&headers))
        && same(&s.csrf, &form.csrf)
        && same_origin(&st, &headers).is_ok()
        && let Ok(mut map) = st.sessions().lock()
    {
        map.remove(&sha(&[id.as_bytes()]));
    }
    let mut res = Redirect::to("/").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("rekey_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

/// `GET /renewals/{id}` (signed in): swimlane, timeline, window and the person's forms.
async fn renewal_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(s) = session_of(&st, &headers) else {
        return not_signed_in();
    };
    let result = async {
        let user = user_of(&st, &s.email).await?;
        let r = crate::api::visible(&st, &user, parse_id(&id)?).await?;
        let tasks = st.service().tasks(Some(&s.email), None).await?;
        let csr = if r.ca_signed {
            st.service().certificate_request(r.id).await.ok()
        } else {
            None
        };
        Ok::<_, ApiError>(renewal_body(&st, &s, &r, &tasks, csr.as_deref()))
    }
    .await;
    match result {
        Ok((title, body)) => Html(layout(&title, Some(&s.email), &body)).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

fn renewal_body(
    st: &AppState,
    s: &Session,
    r: &Renewal,
    tasks: &[TaskView],
    csr: Option<&str>,
) -> (String, String) {
    let def = st.service().catalog().get(r.procedure);
    let title = format!("Renewal of {}", r.alias.as_str());
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1><p>{} — <span id=\"status\">{}</span>. Started {}.</p>",
        esc(&title),
        esc(&def.title),
        esc(r.status.as_str()),
        when(r.started_at)
    );
    if let Some(fp) = &r.new_cert {
        let _ = write!(
            b,
            "<p>New certificate: <span class=\"fp\">{}</span></p>",
            esc(&fp.to_string())
        );
    }
    if let Some(pem) = csr {
        let _ = write!(
            b,
            "<h2>Certificate request</h2><p>Have your certificate authority sign this request, \
             then upload the certificate followed by its issuers (<code>rekey renewal upload-cert \
             {id} --cert chain.pem</code>, or <code>POST /api/renewals/{id}/certificate</code>).</p>\
             <pre id=\"csr\">{}</pre>",
            esc(pem),
            id = r.id
        );
    }
    b.push_str("<p class=\"legend\"><span class=\"done\">done</span><span class=\"current\">current</span><span class=\"next\">next</span><span class=\"waiting\">later</span></p>");
    b.push_str(&swimlane(def, r));
    b.push_str("<h2>Timeline</h2><table id=\"timeline\"><tr><th>#</th><th>Step</th><th>Role</th><th>Status</th><th>By</th><th>When</th></tr>");
    for (i, step) in r.steps.iter().enumerate() {
        let sd = def.step(&step.id);
        let (by, at) = match &step.status {
            StepStatus::Done { by, at, .. } => (by.clone(), when(*at)),
            StepStatus::Due { due_at, .. } => (String::new(), format!("due {}", when(*due_at))),
            _ => (String::new(), String::new()),
        };
        let _ = write!(
            b,
            "<tr data-step=\"{}\" data-status=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&step.id),
            step_class(r, i),
            esc(sd.map(|d| d.seed.as_str()).unwrap_or("")),
            esc(sd.map(|d| d.title.as_str()).unwrap_or(&step.id)),
            esc(sd.map(|d| role_name(d.role)).unwrap_or("")),
            step_class(r, i),
            esc(&by),
            esc(&at)
        );
    }
    b.push_str("</table>");
    let mine: Vec<&TaskView> = tasks.iter().filter(|t| t.renewal == r.id).collect();
    if !mine.is_empty() {
        b.push_str("<h2>Your part now</h2><ul>");
        for t in mine {
            let _ = write!(
                b,
                "<li><a href=\"/renewals/{}/steps/{}\">{} {}</a> ({})</li>",
                r.id,
                esc(&t.step),
                esc(&t.seed),
                esc(&t.title),
                esc(t.verb)
            );
        }
        b.push_str("</ul>");
    }
    if r.procedure == ProcedureId::DowntimeWindow
        && r.status == rekey_engine::RenewalStatus::Running
    {
        b.push_str("<h2>Downtime window</h2>");
        b.push_str(&window_forms(
            r,
            &format!("/renewals/{}/window", r.id),
            &s.csrf,
        ));
    }
    (title, b)
}
