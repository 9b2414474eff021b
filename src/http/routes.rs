//! The routes. Each handler maps a request onto the store or the log and
//! every failure onto a 4xx (client) or a 503 (store or log unavailable:
//! retryable) with the error JSON.

use super::query::{percent_decode, BadParam, Query};
use super::{error, json, AppState, Body, Listener};
use crate::store::{StatsQuery, StoreError, StoredEvent};
use crate::wire::Interaction;
use chrono::{Duration, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json as j, Value};

/// Longest day range of a stats query.
const MAX_RANGE_DAYS: i64 = 366;

/// Whether the request is a probe: health, readiness or metrics (what a
/// spare connection answers when the cap is full).
pub fn is_probe(req: &Request<Incoming>) -> bool {
    let path = req.uri().path().trim_end_matches('/');
    req.method() == Method::GET
        && matches!(path, "/tracking/health" | "/tracking/ready" | "/metrics")
}

pub async fn route(
    state: &AppState,
    role: Listener,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    let operational = matches!(
        segments.as_slice(),
        ["tracking", "health"] | ["tracking", "ready"] | ["metrics"]
    );
    let public_metrics = !state.access.internal_listener;
    if role == Listener::Internal && !operational
        || role == Listener::Public && segments == ["metrics"] && !public_metrics
    {
        let which = if role == Listener::Internal {
            "the public"
        } else {
            "the internal"
        };
        let message = format!("{path} is served on {which} listener");
        return (
            "not_found",
            error(StatusCode::NOT_FOUND, "not_found", message),
        );
    }
    let is_read = method == Method::GET && !operational && known_path(&segments);
    if is_read && !state.access.authorized(req.headers()) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>` (--api-token)",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return ("unauthorized", r);
    }
    let query = match Query::parse(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return ("bad_query", bad_request(e)),
    };
    match (segments.as_slice(), &method) {
        (["tracking", "health"], &Method::GET) => ("health", health(state)),
        (["tracking", "ready"], &Method::GET) => ("ready", ready(state)),
        (["metrics"], &Method::GET) => ("metrics", metrics(state)),
        (["tracking", "interactions"], &Method::POST) => (
            "post_interaction",
            super::ingest::post_interaction(state, req).await,
        ),
        (["tracking", "interactions"], &Method::GET) => {
            ("list_interactions", respond(recent(state, &query).await))
        }
        (["tracking", "interactions", id], &Method::GET) => {
            ("get_interaction", respond(get_interaction(state, id).await))
        }
        (["tracking", "users", user, "interactions"], &Method::GET) => (
            "user_interactions",
            respond(user_interactions(state, user, &query).await),
        ),
        (["tracking", "users", user, "stats"], &Method::GET) => {
            ("user_stats", respond(user_stats(state, user).await))
        }
        (["tracking", "stats", "daily"], &Method::GET) => {
            ("stats_daily", respond(daily(state, &query).await))
        }
        (["tracking", "stats", "status"], &Method::GET) => {
            ("stats_status", respond(status(state, &query).await))
        }
        (
            ["tracking", "health" | "ready" | "interactions" | "stats", ..]
            | ["tracking", "users", ..]
            | ["metrics"],
            _,
        ) if known_path(&segments) => (
            "method_not_allowed",
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            ),
        ),
        _ => (
            "not_found",
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {path}"),
            ),
        ),
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["tracking", "health"]
            | ["tracking", "ready"]
            | ["metrics"]
            | ["tracking", "interactions"]
            | ["tracking", "interactions", _]
            | ["tracking", "users", _, "interactions" | "stats"]
            | ["tracking", "stats", "daily" | "status"]
    )
}

/// A handler's failure.
enum Fail {
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
}

impl From<BadParam> for Fail {
    fn from(e: BadParam) -> Self {
        Fail::BadRequest(e.0)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        crate::internal_events::store_error("read", &e);
        Fail::Unavailable(e.to_string())
    }
}

fn respond(result: Result<Value, Fail>) -> Response<Body> {
    match result {
        Ok(v) => json(StatusCode::OK, &v),
        Err(Fail::BadRequest(m)) => error(StatusCode::BAD_REQUEST, "bad_request", m),
        Err(Fail::NotFound(m)) => error(StatusCode::NOT_FOUND, "not_found", m),
        Err(Fail::Unavailable(m)) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

fn bad_request(e: BadParam) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "bad_request", e.0)
}

/// Liveness: 200 unless the process cannot recover without a restart (its
/// store refuses every write), so that an orchestrator restarts it.
pub fn health(state: &AppState) -> Response<Body> {
    match state.store.needs_restart() {
        None => json(StatusCode::OK, &j!({"status": "ok"})),
        Some(why) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &j!({"status": "restart needed", "reason": why}),
        ),
    }
}

fn ready(state: &AppState) -> Response<Body> {
    if let Some(why) = state.store.needs_restart() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &j!({"status": "restart needed", "reason": why}),
        );
    }
    if state.health.is_ready() {
        json(StatusCode::OK, &j!({"status": "ready"}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &j!({"status": state.health.reason()}),
        )
    }
}

fn metrics(state: &AppState) -> Response<Body> {
    let mut text = state.metrics.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&crate::internal_events::process_exposition());
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The public view of one stored event (`wire::Interaction`).
fn item(e: &StoredEvent) -> Interaction<'_> {
    Interaction::from(&*e.event)
}

fn segment(raw: &str) -> Result<String, Fail> {
    let s = percent_decode(raw, false)?;
    if s.is_empty() {
        return Err(Fail::BadRequest("empty path segment".into()));
    }
    Ok(s)
}

async fn get_interaction(state: &AppState, id: &str) -> Result<Value, Fail> {
    let id = segment(id)?;
    match state.store.interaction(&id).await? {
        Some(e) => Ok(j!(item(&e))),
        None => Err(Fail::NotFound(format!("no interaction {id}"))),
    }
}

/// The newest interactions first (the original's list endpoint), paged by
/// position.
async fn recent(state: &AppState, q: &Query) -> Result<Value, Fail> {
    let limit = q.limit(100, 1000)?;
    let mut events = state.store.recent(q.cursor()?, limit + 1).await?;
    let next = (events.len() > limit).then(|| events[limit - 1].pos.to_string());
    events.truncate(limit);
    Ok(j!({"items": events.iter().map(item).collect::<Vec<_>>(), "next_cursor": next}))
}

async fn user_interactions(state: &AppState, user: &str, q: &Query) -> Result<Value, Fail> {
    let user = segment(user)?;
    let limit = q.limit(100, 1000)?;
    let after = q.cursor()?.unwrap_or(0);
    let mut events = state.store.user_events(&user, after, limit + 1).await?;
    let next = (events.len() > limit).then(|| events[limit - 1].event.seq.to_string());
    events.truncate(limit);
    Ok(j!({"items": events.iter().map(item).collect::<Vec<_>>(), "next_cursor": next}))
}

async fn user_stats(state: &AppState, user: &str) -> Result<Value, Fail> {
    let user = segment(user)?;
    match state.store.user_stats(&user).await? {
        Some(s) => Ok(serde_json::to_value(s).unwrap_or(Value::Null)),
        None => Err(Fail::NotFound(format!("no interactions of user {user}"))),
    }
}

/// `from`/`to` (inclusive UTC days); defaults: the last 30 days.
fn day_range(q: &Query) -> Result<(chrono::NaiveDate, chrono::NaiveDate), Fail> {
    let to = q.day("to")?.unwrap_or_else(|| Utc::now().date_naive());
    let from = q.day("from")?.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(Fail::BadRequest("from must not be after to".into()));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(Fail::BadRequest(format!(
            "the range may span at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((from, to))
}

async fn daily(state: &AppState, q: &Query) -> Result<Value, Fail> {
    let (from, to) = day_range(q)?;
    let query = StatsQuery {
        from,
        to,
        campaign_id: q.str("campaign_id").map(str::to_owned),
        interaction_type: q.interaction_type()?,
    };
    let items = state.store.daily_stats(&query).await?;
    Ok(j!({"items": items}))
}

async fn status(state: &AppState, q: &Query) -> Result<Value, Fail> {
    let (from, to) = day_range(q)?;
    let items = state.store.status_stats(from, to).await?;
    Ok(j!({"items": items}))
}
