//! The routes. One table, [`ROUTES`], resolves every request (and is what
//! `docs/openapi.json` describes: tests/http/contract checks both ways).
//! Each handler maps a request onto the store or the log and every failure
//! onto a 4xx (client) or a 503 (store or log unavailable: retryable) with
//! the error JSON.

use super::query::{percent_decode, BadParam, Query};
use super::{error, json, AppState, Body, Listener};
use crate::store::{StatsQuery, StoreError, StoredEvent};
use crate::wire::Interaction;
use chrono::{Duration, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json as j, Value};

/// Longest day range of a stats query.
const MAX_RANGE_DAYS: i64 = 366;

/// What a route does. Its [`name`](Operation::name) is the route's
/// `operationId` in `docs/openapi.json` and its `route` label in the
/// request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Health,
    Ready,
    Metrics,
    PostInteraction,
    ListInteractions,
    GetInteraction,
    UserInteractions,
    UserStats,
    StatsDaily,
    StatsStatus,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Ready => "ready",
            Self::Metrics => "metrics",
            Self::PostInteraction => "post_interaction",
            Self::ListInteractions => "list_interactions",
            Self::GetInteraction => "get_interaction",
            Self::UserInteractions => "user_interactions",
            Self::UserStats => "user_stats",
            Self::StatsDaily => "stats_daily",
            Self::StatsStatus => "stats_status",
        }
    }

    /// Health, readiness and metrics: served on the internal listener too,
    /// never behind the token, and answered on a spare connection.
    pub fn operational(self) -> bool {
        matches!(self, Self::Health | Self::Ready | Self::Metrics)
    }

    /// The reads, which need the token when one is configured.
    pub fn guarded(self) -> bool {
        !self.operational() && self != Self::PostInteraction
    }

    /// Whether the operation is served on `role`, given whether an internal
    /// listener exists: metrics leave the public listener for it.
    pub fn served_on(self, role: Listener, internal_listener: bool) -> bool {
        match (role, self) {
            (Listener::Internal, op) => op.operational(),
            (Listener::Public, Self::Metrics) => !internal_listener,
            (Listener::Public, _) => true,
        }
    }
}

/// One route: a method, a path template (a `{name}` segment matches any
/// one segment) and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: Operation,
}

const fn r(method: &'static str, path: &'static str, operation: Operation) -> Route {
    Route {
        method,
        path,
        operation,
    }
}

/// Every route, the one table the dispatch resolves requests with (and
/// that the contract test compares with `docs/openapi.json`).
pub const ROUTES: &[Route] = &[
    r("GET", "/tracking/health", Operation::Health),
    r("GET", "/tracking/ready", Operation::Ready),
    r("GET", "/metrics", Operation::Metrics),
    r("POST", "/tracking/interactions", Operation::PostInteraction),
    r("GET", "/tracking/interactions", Operation::ListInteractions),
    r(
        "GET",
        "/tracking/interactions/{id}",
        Operation::GetInteraction,
    ),
    r(
        "GET",
        "/tracking/users/{user_id}/interactions",
        Operation::UserInteractions,
    ),
    r(
        "GET",
        "/tracking/users/{user_id}/stats",
        Operation::UserStats,
    ),
    r("GET", "/tracking/stats/daily", Operation::StatsDaily),
    r("GET", "/tracking/stats/status", Operation::StatsStatus),
];

/// What a method and path resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'p> {
    /// The route's operation and its path parameters (raw, in template
    /// order); `None` if no route has this method and path.
    pub found: Option<(Operation, Vec<&'p str>)>,
    /// The routes of the path, whatever their method (none: an unknown
    /// path; some but no `found`: a method not allowed).
    pub on_path: Vec<Operation>,
}

/// The methods of `operations` (the routes of one path), comma-separated
/// in table order, for a 405's `Allow`.
pub fn allowed_methods(operations: &[Operation]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for route in ROUTES.iter().filter(|r| operations.contains(&r.operation)) {
        if !methods.contains(&route.method) {
            methods.push(route.method);
        }
    }
    methods.join(", ")
}

/// Resolves `method` and `path` (a trailing `/` is ignored) on [`ROUTES`].
pub fn resolve<'p>(method: &str, path: &'p str) -> Resolved<'p> {
    let path = path.trim_end_matches('/');
    let mut resolved = Resolved {
        found: None,
        on_path: Vec::new(),
    };
    for route in ROUTES {
        let Some(params) = match_template(route.path, path) else {
            continue;
        };
        resolved.on_path.push(route.operation);
        if route.method == method && resolved.found.is_none() {
            resolved.found = Some((route.operation, params));
        }
    }
    resolved
}

/// The path parameters if the segments of `path` (without its trailing
/// `/`) match `template`.
fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut wanted = template.split('/').skip(1);
    for segment in path.split('/').skip(1) {
        let want = wanted.next()?;
        if want.starts_with('{') {
            params.push(segment);
        } else if want != segment {
            return None;
        }
    }
    wanted.next().is_none().then_some(params)
}

/// Whether the request is a probe: health, readiness or metrics (what a
/// spare connection answers when the cap is full).
pub fn is_probe(req: &Request<Incoming>) -> bool {
    resolve(req.method().as_str(), req.uri().path())
        .found
        .is_some_and(|(op, _)| op.operational())
}

pub async fn route(
    state: &AppState,
    role: Listener,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    // The request is handed on below: keep its path (a cheap clone of
    // the parsed URI, no copy) for the error messages.
    let uri = req.uri().clone();
    let path = uri.path();
    let method = req.method().clone();
    let Resolved { found, on_path } = resolve(method.as_str(), path);
    let internal = state.access.internal_listener;
    if role == Listener::Internal && on_path.is_empty() {
        let message = format!("no route for {path}");
        return (
            "not_found",
            error(StatusCode::NOT_FOUND, "not_found", message),
        );
    }
    if !on_path.is_empty() && !on_path.iter().any(|op| op.served_on(role, internal)) {
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
    let is_read = found.as_ref().is_some_and(|(op, _)| op.guarded());
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
    let Some((operation, params)) = found else {
        if on_path.is_empty() {
            let message = format!("no route for {path}");
            return (
                "not_found",
                error(StatusCode::NOT_FOUND, "not_found", message),
            );
        }
        let message = format!("{method} is not allowed on {path}");
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        );
        // RFC 9110 15.5.6: a 405 lists the methods the path has.
        if let Ok(allow) = hyper::header::HeaderValue::from_str(&allowed_methods(&on_path)) {
            r.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        return ("method_not_allowed", r);
    };
    // Every template has at most one parameter.
    let param = params.first().copied().unwrap_or("");
    let response = match operation {
        Operation::Health => health(state),
        Operation::Ready => ready(state),
        Operation::Metrics => metrics(state),
        Operation::PostInteraction => super::ingest::post_interaction(state, req).await,
        Operation::ListInteractions => respond(recent(state, &query).await),
        Operation::GetInteraction => respond(get_interaction(state, param).await),
        Operation::UserInteractions => respond(user_interactions(state, param, &query).await),
        Operation::UserStats => respond(user_stats(state, param).await),
        Operation::StatsDaily => respond(daily(state, &query).await),
        Operation::StatsStatus => respond(status(state, &query).await),
    };
    (operation.name(), response)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A concrete path of a template (`{..}` replaced by `x`).
    fn concrete(template: &str) -> String {
        template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_route_resolves_to_itself_and_the_table_has_no_duplicates() {
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for route in ROUTES {
            assert!(seen.insert((route.method, route.path)), "{route:?} twice");
            assert!(
                names.insert(route.operation.name()),
                "{route:?}: name taken"
            );
            for path in [concrete(route.path), concrete(route.path) + "/"] {
                let got = resolve(route.method, &path);
                let params = route.path.matches('{').count();
                assert_eq!(
                    got.found,
                    Some((route.operation, vec!["x"; params])),
                    "{} {path}",
                    route.method
                );
                assert!(got.on_path.contains(&route.operation));
            }
        }
    }

    #[test]
    fn other_methods_are_not_allowed_and_other_paths_unknown() {
        let got = resolve("DELETE", "/tracking/interactions/x");
        assert_eq!(got.found, None);
        assert_eq!(got.on_path, vec![Operation::GetInteraction]);
        let got = resolve("POST", "/tracking/interactions");
        assert_eq!(got.found.map(|f| f.0), Some(Operation::PostInteraction));
        assert_eq!(
            got.on_path,
            vec![Operation::PostInteraction, Operation::ListInteractions]
        );
        assert_eq!(
            allowed_methods(&resolve("DELETE", "/tracking/interactions").on_path),
            "POST, GET"
        );
        assert_eq!(
            allowed_methods(&resolve("PUT", "/tracking/health").on_path),
            "GET"
        );
        for path in [
            "/",
            "/tracking",
            "/tracking/nothing",
            "/tracking/interactions/x/y",
            "/tracking/users/x",
            "/tracking/users/x/other",
            "/tracking/stats",
            "/metrics/x",
        ] {
            let got = resolve("GET", path);
            assert_eq!((got.found, got.on_path), (None, vec![]), "{path}");
        }
        // An empty segment is a parameter (refused by the handler as 400).
        let got = resolve("GET", "/tracking/users//stats");
        assert_eq!(got.found, Some((Operation::UserStats, vec![""])));
    }

    #[test]
    fn the_internal_listener_serves_operations_only_and_takes_metrics() {
        for route in ROUTES {
            let op = route.operation;
            assert_eq!(op.served_on(Listener::Internal, true), op.operational());
            assert!(op.served_on(Listener::Public, false));
            let public_with_internal = op.served_on(Listener::Public, true);
            assert_eq!(public_with_internal, op != Operation::Metrics, "{op:?}");
            assert_eq!(
                op.guarded(),
                route.method == "GET" && !op.operational(),
                "{op:?}"
            );
        }
    }
}
