//! The ingest endpoint, `POST /tracking/interactions`: decode a command in
//! any accepted format, validate it, refuse an id already decided
//! otherwise (409), and append it to the command log; 202 once the append
//! is durable.

use super::{error, json, AppState, Body, BODY_TIMEOUT};
use crate::domain::codec::{
    decode_command, decode_command_known_fields, is_json_media_type, media_type, Command,
    MessageMeta, MAX_PAYLOAD_BYTES,
};
use crate::domain::reuse::{check_reuse, IdReuse};
use crate::domain::{validate, InteractionTracked};
use crate::log::NewRecord;
use crate::store::StoreError;
use chrono::Utc;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;

/// Accepts a command in any JSON format, validates it, and appends it to the
/// log; 202 once the append is durable.
pub async fn post_interaction(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    if state.health.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the worker is shutting down",
        );
    }
    // This process cannot persist events any more: send the client to a
    // worker that can, rather than queue commands behind a restart.
    if let Some(why) = state.store.needs_restart() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
    }
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid"));
    if let Some(ct) = content_type {
        let mime = media_type(ct);
        if !is_json_media_type(mime) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content type must be application/json, got {mime:?}"),
            );
        }
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_PAYLOAD_BYTES) {
        return too_large();
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_PAYLOAD_BYTES).collect(),
    )
    .await
    {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "request body not received in time",
            )
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large()
        }
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("could not read the body: {e}"),
            )
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    // The id is decided here so the client gets it and travels as
    // `commandId`; the payload keeps its format (which decides its rules)
    // but only the fields a format reads: unknown ones never reach the log.
    let generated = uuid::Uuid::new_v4().to_string();
    let mut properties = HashMap::new();
    properties.insert("commandId".to_string(), generated.clone());
    properties.insert("content-type".to_string(), "application/json".to_string());
    let arrived = Utc::now();
    let meta = MessageMeta {
        key: None,
        properties: Some(&properties),
        identity: &generated,
        published_at: arrived,
    };
    // A log only this service reads takes the command as decoded
    // (`NewRecord::decided`); another's topic the JSON, without the
    // fields no format reads.
    let decided = state.log.holds_decided_commands();
    let decoded = if decided {
        decode_command(&body, &meta).map(|c| (c, None))
    } else {
        decode_command_known_fields(&body, &meta)
    };
    let (cmd, known) = match decoded {
        Ok((Command::Track(cmd), known)) => (cmd, known),
        Ok((Command::BuildInteractionsInfo(_), _)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_command",
                "only interaction commands are accepted here",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.reason.as_str(), e.message),
    };
    let would_be = match validate(&cmd, arrived) {
        Ok(e) => e,
        Err(v) => return error(StatusCode::BAD_REQUEST, v.reason.as_str(), v.message),
    };
    // A client's own id may already be decided: say so now (409) rather
    // than accept a command the pipeline rejects or ignores. The decoder
    // stamps a command without a time with its arrival.
    if cmd.interaction_id != generated {
        let occurred_at_given = cmd.occurred_at != arrived;
        if let Some(refusal) = reused_id(state, &would_be, occurred_at_given).await {
            return refusal;
        }
    }
    let encoded = decided.then(|| NewRecord::decided(&cmd));
    let record = match encoded {
        Some(Ok(record)) => record,
        Some(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the command could not be encoded: {e}"),
            )
        }
        None => NewRecord {
            key: cmd.user_id.clone(),
            payload: known.unwrap_or_else(|| body.to_vec()),
            properties,
        },
    };
    match state.log.append(vec![record]).await {
        Ok(_) => {
            state.requests.appended();
            accepted(&cmd.interaction_id)
        }
        Err(e) => {
            tracing::warn!(error = %e, "append to the command log failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    }
}

/// How long the id lookup before an append may take; past it (or if the
/// store fails) the command is appended unchecked and the pipeline decides
/// it as before the check existed.
const ID_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The 409 for a command whose id is already recorded with another user or
/// another content; `None` if the command may be appended.
async fn reused_id(
    state: &AppState,
    would_be: &InteractionTracked,
    occurred_at_given: bool,
) -> Option<Response<Body>> {
    let id = &would_be.interaction_id;
    let lookup = async {
        // The owner first: inline on the embedded store, and nothing more
        // to read for a fresh id (almost every command).
        let owners = state
            .store
            .interaction_owners(std::slice::from_ref(id))
            .await?;
        if owners.into_iter().flatten().next().is_none() {
            return Ok::<_, StoreError>(None);
        }
        state.store.interaction(id).await
    };
    let recorded = match tokio::time::timeout(ID_CHECK_TIMEOUT, lookup).await {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "id lookup failed; appending unchecked");
            return None;
        }
        Err(_) => {
            tracing::debug!("id lookup timed out; appending unchecked");
            return None;
        }
    };
    match check_reuse(
        would_be,
        recorded.as_ref().map(|r| &*r.event),
        occurred_at_given,
    ) {
        IdReuse::Fresh | IdReuse::Retry => None,
        IdReuse::OtherUser => Some(error(
            StatusCode::CONFLICT,
            "conflicting_interaction_id",
            format!("interaction id {id:?} already belongs to another user's interaction"),
        )),
        IdReuse::ChangedContent(fields) => Some(error(
            StatusCode::CONFLICT,
            "interaction_id_reused",
            format!(
                "interaction {id:?} is already recorded with a different {}; a retry must send \
                 the same content, a new interaction needs a new id",
                fields.join(", ")
            ),
        )),
    }
}

/// The 202's body, `{"interaction_id": ..}`, written without building a
/// JSON value first.
fn accepted(interaction_id: &str) -> Response<Body> {
    #[derive(serde::Serialize)]
    struct Accepted<'a> {
        interaction_id: &'a str,
    }
    json(StatusCode::ACCEPTED, &Accepted { interaction_id })
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than {MAX_PAYLOAD_BYTES} bytes"),
    )
}
