//! The web inbox's routes and page handlers: each handler checks the session (or the link) and
//! the form, asks the service, and hands what it got to a template in [`crate::pages`].
//!
//! Sign-in is by the action link of an email (`/tasks/{token}`): `GET` shows the task without
//! using the token; the page's form `POST`s use it (once), start a session and then do what the
//! form asked, as the link's recipient. Signed in, a person sees their due tasks (`/`), a
//! renewal's swimlane and timeline (`/renewals/{id}`) and the approve/confirm/window forms.
//! Sessions, cookies and the CSRF and same-origin checks are [`session`]'s.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::html;
use rekey_engine::{Event, Renewal};
use rekey_model::Email;
use rekey_notifier::links;
use rekey_service::TaskView;
use rekey_store::User;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{may_see, parse_id};
use crate::pages::{self, CSS, layout, task::FormTarget};
use crate::{ApiError, AppState, detached, now};

pub mod session;

use session::{
    CLEAR_COOKIE, check_csrf, end_session, link_csrf, same, same_origin, session_of, start_session,
};
pub use session::{SESSION_TTL, Session};

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

/// An error as a page.
fn error_page(e: &ApiError, who: Option<&str>) -> Response {
    (
        e.status,
        Html(layout("Not possible", who, pages::error(&e.message))),
    )
        .into_response()
}

fn not_signed_in() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Html(layout("Sign in", None, pages::sign_in())),
    )
        .into_response()
}

async fn user_of(st: &AppState, email: &str) -> Result<User, ApiError> {
    let e = Email::parse(email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(st.service().store().user_by_email(&e).await?)
}

/// How many renewals the inbox lists, newest first; the rest are paged through the API.
const INBOX_RENEWALS: u64 = 50;

async fn inbox(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = session_of(&st, &headers).await else {
        return not_signed_in();
    };
    let result = async {
        let tasks = st.service().tasks(Some(&s.email), None).await?;
        let user = user_of(&st, &s.email).await?;
        let mut mine: Vec<Renewal> = st
            .service()
            .renewals_for(&user.grants, None, None, INBOX_RENEWALS + 1)
            .await?
            .into_iter()
            .filter(|r| may_see(&user, r))
            .collect();
        let more = mine.len() as u64 > INBOX_RENEWALS;
        mine.truncate(INBOX_RENEWALS as usize);
        Ok::<_, ApiError>(pages::inbox::inbox(&tasks, &mine, more, &s.csrf))
    }
    .await;
    match result {
        Ok(body) => Html(layout("My tasks", Some(&s.email), body)).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
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

/// The task page for `email`, with `message` (a refusal) above the forms. `who` is the
/// signed-in person; without one (a link page, before sign-in) the page says whom the link is for.
async fn render_task(
    st: &AppState,
    email: &str,
    who: Option<&str>,
    r: &Renewal,
    step: &str,
    target: &FormTarget,
    message: Option<&ApiError>,
) -> Result<String, ApiError> {
    let task = task_for(st, email, r.id, step).await?;
    let title = step_title(st, r, step);
    let body = pages::task::task(
        r,
        &title,
        task.as_ref(),
        target,
        message.map(|e| e.message.as_str()),
    );
    let body = match who {
        Some(_) => body,
        None => html! {
            p { "For " b id="recipient" { (email) } ". Submitting a form below signs you in; this link then stops working." }
            (body)
        },
    };
    Ok(layout(&title, who, body))
}

/// `GET /tasks/{token}`: the task a link opens, without using the link.
async fn link_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let result = async {
        let info = links::lookup(st.service().store().db(), &token, now()).await?;
        let r = st.service().renewal(info.renewal).await?;
        let target = FormTarget {
            action: format!("/tasks/{token}"),
            csrf: link_csrf(&st, &token).await?,
        };
        render_task(&st, &info.recipient, None, &r, &info.step, &target, None).await
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
                detached(async move { svc.act(renewal, &email, ev, now()).await })
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
                let email = session.email.as_str();
                render_task(st, email, Some(email), &r, step, &target, Some(&e)).await
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
    let expected = match link_csrf(&st, &token).await {
        Ok(c) => c,
        Err(e) => return error_page(&e, None),
    };
    if !same(&form.csrf, &expected) {
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
    let (session, cookie) = match start_session(&st, &info.recipient).await {
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
    let Some(s) = session_of(&st, &headers).await else {
        return not_signed_in();
    };
    let result = async {
        let user = user_of(&st, &s.email).await?;
        let r = crate::api::visible(&st, &user, parse_id(&id)?).await?;
        let target = FormTarget {
            action: format!("/renewals/{}/steps/{step}", r.id),
            csrf: s.csrf.clone(),
        };
        render_task(&st, &s.email, Some(&s.email), &r, &step, &target, None).await
    }
    .await;
    match result {
        Ok(p) => Html(p).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

/// `POST /renewals/{id}/steps/{step}` (signed in, CSRF).
async fn step_post(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Some(s) = session_of(&st, &headers).await else {
        return not_signed_in();
    };
    if let Err(e) = same_origin(&st, &headers).and_then(|()| check_csrf(&s, &form.csrf)) {
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
    let Some(s) = session_of(&st, &headers).await else {
        return not_signed_in();
    };
    let result = async {
        same_origin(&st, &headers)?;
        check_csrf(&s, &form.csrf)?;
        let id = parse_id(&id)?;
        if !matches!(form.action.as_str(), "propose" | "accept") {
            return Err(ApiError::bad_request("unknown action"));
        }
        if let Some(ev) = event_of(&form, "window")? {
            let (svc, email) = (st.service().clone(), s.email.clone());
            detached(async move { svc.act(id, &email, ev, now()).await }).await??;
        }
        Ok(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/renewals/{id}")).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}

/// `POST /signout`: ends the session (when the form is the session's own) and clears the cookie.
async fn signout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    end_session(&st, &headers, &form.csrf).await;
    let mut res = Redirect::to("/").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    res
}

/// `GET /renewals/{id}` (signed in): swimlane, timeline, window and the person's forms.
async fn renewal_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(s) = session_of(&st, &headers).await else {
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
        let def = st.service().catalog().get(r.procedure);
        let body = pages::renewal::renewal(def, &r, &tasks, csr.as_deref(), &s.csrf);
        Ok::<_, ApiError>(layout(&pages::renewal::title(&r), Some(&s.email), body))
    }
    .await;
    match result {
        Ok(page) => Html(page).into_response(),
        Err(e) => error_page(&e, Some(&s.email)),
    }
}
