//! The CodeGym-style REST API (`--codegym-addr`), the contract the verl tool class of
//! `codegym export --format verl` is written against. Every endpoint is a `POST` with a JSON body:
//!
//! | endpoint | body | answer |
//! |---|---|---|
//! | `/get_instance` | `{"lease_s"?}` | `{"instance_id", "lease_s"?}` |
//! | `/start` | `{"instance_id", "env_str", "seed"?}` | `{"task", "instructions", "instructions_version", "available_tools", "observation"}` |
//! | `/step` | `{"instance_id", "action": "<JSON text of {\"name\", \"parameters\"}>"}` | `{"observation", "reward", "done"}` |
//! | `/is_done` | `{"instance_id"}` | `{"done"}` |
//! | `/reward` | `{"instance_id"}` | `{"reward"}` |
//! | `/reset` | `{"instance_id"}` | as `/start` (the same configuration and seed again) |
//! | `/stop` | `{"instance_id"}` | `{}` (ends the episode) |
//! | `/release_instance` | `{"instance_id"}` | `{}` (closes the instance) |
//! | `/renew` | `{"instance_ids": [...]}` | `{"unknown": [...]}` (renews their leases; the ids it no longer has) |
//!
//! An instance is closed after the server's idle timeout without a call (3 h by default). A client
//! that asks for a lease (`lease_s`, at least 1 s and at most the idle timeout) keeps it by calling
//! or renewing within every lease, and loses it soon after it stops: the verl tool renews the
//! instances of its running rollouts, so those of a crashed trainer are freed within a lease.
//!
//! `/start` and `/reset` open with the briefing ([`super::briefing`]: the task text, the
//! instructions, the tools); `observation` is the environment's own first text, as the release
//! answers it. An instance is a session of the pool. Errors are `{"error": "..."}` with a 4xx status (400 bad
//! input, 404 unknown instance or configuration, 409 a call that does not fit the episode, 413 too
//! large, 422 an environment that fails to start, 429 at capacity), or 5xx when the server fails.
//! Unknown fields of a body are ignored.

use super::briefing::Briefing;
use super::catalog::{ConfigRef, ResolveError};
use super::pool::{Access, Action, CallError, Protocol, Reply, Session};
use super::{App, MAX_BODY_BYTES};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ENDPOINTS: &str = "/get_instance, /start, /step, /is_done, /reward, /reset, /stop, /release_instance, /renew";

pub(super) fn router(app: App) -> Router {
    Router::new()
        .route("/get_instance", post(get_instance))
        .route("/start", post(start))
        .route("/step", post(step))
        .route("/is_done", post(is_done))
        .route("/reward", post(reward))
        .route("/reset", post(reset))
        .route("/stop", post(stop))
        .route("/release_instance", post(release_instance))
        .route("/renew", post(renew))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(unknown_endpoint)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// An error answer: status and message.
pub(super) struct RestError(StatusCode, String);

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<CallError> for RestError {
    fn from(error: CallError) -> RestError {
        let status = match &error {
            CallError::Capacity { .. } => StatusCode::TOO_MANY_REQUESTS,
            CallError::Resolve(ResolveError::Malformed(_) | ResolveError::NotJson(..)) | CallError::MalformedAction(_) => {
                StatusCode::BAD_REQUEST
            }
            CallError::Resolve(_) | CallError::Closed => StatusCode::NOT_FOUND,
            CallError::NoConfig | CallError::NoEpisode | CallError::EpisodeDone(_) | CallError::Busy => StatusCode::CONFLICT,
            CallError::ActionTooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            CallError::StartFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CallError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            CallError::RestoreFailed(_) | CallError::Sandbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        RestError(status, error.to_string())
    }
}

async fn unknown_endpoint(method: Method, uri: Uri) -> RestError {
    RestError(StatusCode::NOT_FOUND, format!("no endpoint {method} {}: the endpoints are POST {ENDPOINTS}", uri.path()))
}

/// A JSON body; an empty body is `{}`. Malformed or oversized bodies get an error answer.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> Result<Self, RestError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            RestError(
                status,
                format!("the body could not be read ({}): bodies are at most {MAX_BODY_BYTES} bytes", rejection.body_text()),
            )
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| RestError(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))
    }
}

#[derive(Deserialize)]
struct GetInstance {
    lease_s: Option<u64>,
}

#[derive(Deserialize)]
struct Renew {
    instance_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Instance {
    instance_id: String,
}

#[derive(Deserialize)]
struct Start {
    instance_id: String,
    env_str: String,
    seed: Option<u64>,
}

#[derive(Deserialize)]
struct Step {
    instance_id: String,
    action: String,
}

fn instance(app: &App, id: &str) -> Result<Arc<Session>, RestError> {
    app.pool.by_id(id, Protocol::CodeGym).ok_or_else(|| {
        RestError(
            StatusCode::NOT_FOUND,
            format!("unknown instance_id `{id}` (released, closed after being idle, or never handed out)"),
        )
    })
}

async fn get_instance(State(app): State<App>, Body(body): Body<GetInstance>) -> Result<Json<Value>, RestError> {
    let session = app.pool.open(Protocol::CodeGym, Access::Id)?;
    Ok(Json(match body.lease_s {
        Some(lease) => {
            let granted = app.pool.lease(&session, Duration::from_secs(lease));
            json!({ "instance_id": session.id, "lease_s": granted.as_secs() })
        }
        None => json!({ "instance_id": session.id }),
    }))
}

async fn start(State(app): State<App>, Body(body): Body<Start>) -> Result<Response, RestError> {
    let session = instance(&app, &body.instance_id)?;
    let reply = app.pool.start(&session, Some(ConfigRef::EnvStr(body.env_str)), body.seed, None).await?;
    first_observation(&app, &session, &reply)
}

/// The answer to `/start` and `/reset`: the briefing first, then the environment's text.
fn first_observation(app: &App, session: &Session, reply: &Reply) -> Result<Response, RestError> {
    #[derive(serde::Serialize)]
    struct Started<'a> {
        #[serde(flatten)]
        briefing: Briefing<'a>,
        observation: &'a str,
    }
    let env = app.episode_env(session)?;
    Ok(Json(Started { briefing: Briefing::of(&env), observation: &reply.observation }).into_response())
}

async fn step(State(app): State<App>, Body(body): Body<Step>) -> Result<Json<Value>, RestError> {
    let action = Action::from_text(body.action, app.pool.settings().max_action_bytes)?;
    let session = instance(&app, &body.instance_id)?;
    let reply = app.pool.step(&session, action).await?;
    Ok(Json(json!({ "observation": reply.observation, "reward": reply.reward, "done": reply.done })))
}

/// The summary of an instance's episode, refused when it has none.
fn episode_summary(app: &App, id: &str) -> Result<super::pool::Summary, RestError> {
    let summary = instance(app, id)?.summary();
    summary.episode_id.is_some().then_some(summary).ok_or_else(|| CallError::NoEpisode.into())
}

async fn is_done(State(app): State<App>, Body(body): Body<Instance>) -> Result<Json<Value>, RestError> {
    Ok(Json(json!({ "done": episode_summary(&app, &body.instance_id)?.done })))
}

async fn reward(State(app): State<App>, Body(body): Body<Instance>) -> Result<Json<Value>, RestError> {
    Ok(Json(json!({ "reward": episode_summary(&app, &body.instance_id)?.reward })))
}

async fn reset(State(app): State<App>, Body(body): Body<Instance>) -> Result<Response, RestError> {
    let session = instance(&app, &body.instance_id)?;
    let reply = app.pool.start(&session, None, None, None).await?;
    first_observation(&app, &session, &reply)
}

async fn stop(State(app): State<App>, Body(body): Body<Instance>) -> Result<Json<Value>, RestError> {
    app.pool.stop(&instance(&app, &body.instance_id)?).await?;
    Ok(Json(json!({})))
}

async fn release_instance(State(app): State<App>, Body(body): Body<Instance>) -> Result<Json<Value>, RestError> {
    app.pool.close(&instance(&app, &body.instance_id)?);
    Ok(Json(json!({})))
}

/// Renews the leases of the instances named; answers those it does not have (released, expired
/// or never handed out), so the client learns which episodes it lost.
async fn renew(State(app): State<App>, Body(body): Body<Renew>) -> Json<Value> {
    let unknown: Vec<&String> = body
        .instance_ids
        .iter()
        .filter(|id| match app.pool.by_id(id, Protocol::CodeGym) {
            Some(session) => {
                app.pool.renew(&session);
                false
            }
            None => true,
        })
        .collect();
    Json(json!({ "unknown": unknown }))
}
