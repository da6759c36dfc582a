//! The OpenEnv protocol (openenv-core 0.3.0, as verifiers, SkyRL and TRL speak it), in its
//! session form ("production" mode): `WS /ws`, one session per connection, with `reset`, `step`,
//! `state`, `close` and `mcp` messages; `GET /health`, `/metadata`, `/schema`, `/openapi.json`;
//! `POST /mcp` ([`super::mcp`]). The stateless `POST /reset`, `/step` and `GET /state` of
//! OpenEnv's simulation mode are not served.
//!
//! Messages, as implemented:
//! - `{"type": "reset", "data": {"config_id" | "env_str", "seed"?, "episode_id"?}}` -> an
//!   observation; without a configuration it restarts the session's last one;
//! - `{"type": "step", "data": {"name": TOOL, "parameters": {...}}}` -> an observation;
//! - observation: `{"type": "observation", "data": {"observation": {"text", "error",
//!   "truncated"}, "reward", "done"}}` (`error`: the verdict of a step that did not run to
//!   completion, with the session left as it was; no timings);
//! - `{"type": "state"}` -> `{"type": "state", "data": {"episode_id", "step_count", "config_id",
//!   "env_name", "done", "reward"}}`;
//! - `{"type": "close"}` ends the session; `{"type": "mcp", "data": JSON-RPC}` -> `{"type": "mcp",
//!   "data": JSON-RPC response}`;
//! - errors: `{"type": "error", "data": {"message", "code"}}` with OpenEnv's codes
//!   (`INVALID_JSON`, `UNKNOWN_TYPE`, `VALIDATION_ERROR`, `EXECUTION_ERROR`, `CAPACITY_REACHED`);
//!   a connection past `--max-sessions` gets `CAPACITY_REACHED` and is closed.

use super::catalog::ConfigRef;
use super::pool::{Access, Action, CallError, Protocol, Reply, Session, StepError};
use super::{App, MAX_BODY_BYTES, mcp};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The OpenEnv API version this server implements (`openenv-http/1.x`).
const API_VERSION: &str = "1.0.0";

pub(super) fn router(app: App) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/health", get(|| async { Json(json!({ "status": "healthy" })) }))
        .route("/metadata", get(metadata))
        .route("/schema", get(|| async { Json(schemas()) }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/mcp", post(mcp_endpoint))
        .fallback(not_found)
        .with_state(app)
}

async fn not_found() -> Response {
    let detail = "Not Found. This server speaks OpenEnv's session form: WS /ws (reset, step, state, close, mcp), \
                  POST /mcp, GET /health, /metadata, /schema, /openapi.json; the stateless /reset, /step and /state are not served";
    (StatusCode::NOT_FOUND, Json(json!({ "detail": detail }))).into_response()
}

async fn metadata(State(app): State<App>) -> Json<Value> {
    let catalog = app.pool.catalog();
    let description = format!(
        "{} verified CodeGym environments, {} configurations, served from a WebAssembly sandbox. Reset with config_id, \
         or env_str (EnvName@{{json}} or {{code_id}}__{{EnvName}}@{{json}}); step with {{\"name\": TOOL, \"parameters\": {{...}}}}.",
        catalog.envs().len(),
        catalog.configs().len()
    );
    Json(json!({
        "name": "codegym",
        "description": description,
        "readme_content": null,
        "version": env!("CARGO_PKG_VERSION"),
        "author": null,
        "documentation_url": null,
    }))
}

async fn mcp_endpoint(State(app): State<App>, body: Bytes) -> Json<Value> {
    Json(mcp::answer(&app, &body, None).await)
}

async fn upgrade(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.max_message_size(MAX_BODY_BYTES).on_upgrade(move |socket| connection(app, socket))
}

/// One WebSocket connection: one session, messages answered in order.
async fn connection(app: App, mut socket: WebSocket) {
    let session = match app.pool.open(Protocol::OpenEnv, Access::Socket) {
        Ok(session) => session,
        Err(error) => {
            let _ = socket.send(text(error_message(&error))).await;
            let _ = socket.send(Message::Close(Some(CloseFrame { code: 1013, reason: "server at capacity".into() }))).await;
            return;
        }
    };
    let mut stopping = app.stopping.clone();
    let ending = loop {
        let message = tokio::select! {
            message = socket.recv() => message,
            _ = session.closing.notified() => break Some((1000, "the session was closed: idle too long")),
            _ = stopping.changed() => break Some((1001, "the server is shutting down")),
        };
        let raw = match message {
            Some(Ok(Message::Text(raw))) => raw.to_string(),
            Some(Ok(Message::Binary(raw))) => String::from_utf8_lossy(&raw).into_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
        };
        let Some(answer) = handle(&app, &session, &raw).await else { break Some((1000, "closed")) };
        if socket.send(text(answer)).await.is_err() {
            break None;
        }
    };
    app.pool.close(&session);
    if let Some((code, reason)) = ending {
        let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// The answer to one message; `None` for `close`.
async fn handle(app: &App, session: &Arc<Session>, raw: &str) -> Option<Value> {
    let message: Value = match serde_json::from_str(raw) {
        Ok(message) => message,
        Err(e) => return Some(error_data(&format!("Invalid JSON: {e}"), "INVALID_JSON")),
    };
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let answer = match kind.as_str() {
        "reset" => reset(app, session, message).await,
        "step" => step(app, session, raw).await,
        "state" => typed::<Bare>(message).map(|_| state(session)),
        "close" => return typed::<Bare>(message).err(),
        "mcp" => match typed_raw::<WithData<Box<RawValue>>>(raw) {
            Ok(WithData { data, .. }) => {
                Ok(json!({ "type": "mcp", "data": mcp::answer(app, data.get().as_bytes(), Some(session)).await }))
            }
            Err(error) => Err(error),
        },
        other => Err(error_data(&format!("Unknown message type: {other}"), "UNKNOWN_TYPE")),
    };
    Some(answer.unwrap_or_else(|error| error))
}

/// A message without data (`state`, `close`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bare {
    #[serde(rename = "type")]
    _kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithData<T> {
    #[serde(rename = "type")]
    _kind: String,
    data: T,
}

#[derive(Deserialize, Default)]
struct ResetData {
    config_id: Option<String>,
    env_str: Option<String>,
    seed: Option<u64>,
    episode_id: Option<String>,
}

/// An action; its parameters stay raw JSON, so the environment gets the numbers the client sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepData {
    name: String,
    parameters: Option<Box<RawValue>>,
    #[serde(default, rename = "metadata")]
    _metadata: Map<String, Value>,
}

/// The message as `T`, or OpenEnv's validation error.
fn typed<T: serde::de::DeserializeOwned>(message: Value) -> Result<T, Value> {
    serde_json::from_value(message).map_err(invalid)
}

/// The raw message as `T` (for messages that keep raw JSON), or OpenEnv's validation error.
fn typed_raw<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, Value> {
    serde_json::from_str(raw).map_err(invalid)
}

fn invalid(error: serde_json::Error) -> Value {
    error_data(&format!("Invalid message: {error}"), "VALIDATION_ERROR")
}

async fn reset(app: &App, session: &Arc<Session>, mut message: Value) -> Result<Value, Value> {
    if message.get("data").is_none() {
        message["data"] = json!({});
    }
    let WithData { data, .. } = typed::<WithData<ResetData>>(message)?;
    let reference = ConfigRef::from_keys(data.config_id, data.env_str);
    let reply = app.pool.start(session, reference, data.seed, data.episode_id).await;
    reply.map(|r| observation_message(&r)).map_err(|e| error_message(&e))
}

async fn step(app: &App, session: &Arc<Session>, raw: &str) -> Result<Value, Value> {
    let WithData { data, .. } = typed_raw::<WithData<StepData>>(raw)?;
    let max = app.pool.settings().max_action_bytes;
    let action = Action::from_parts(&data.name, data.parameters.as_deref(), max).map_err(|e| error_message(&e))?;
    app.pool.step(session, action).await.map(|r| observation_message(&r)).map_err(|e| error_message(&e))
}

fn state(session: &Session) -> Value {
    let summary = session.summary();
    json!({ "type": "state", "data": {
        "episode_id": summary.reported_id(),
        "step_count": summary.step_count,
        "config_id": summary.config_id,
        "env_name": summary.env_name,
        "done": summary.done,
        "reward": summary.reward,
    }})
}

/// `{"observation": {...}, "reward", "done"}`: what an OpenEnv observation message carries.
pub(super) fn step_data(reply: &Reply) -> Value {
    json!({
        "observation": { "text": reply.observation, "error": reply.error.map(StepError::as_str), "truncated": reply.truncated },
        "reward": reply.reward,
        "done": reply.done,
    })
}

fn observation_message(reply: &Reply) -> Value {
    json!({ "type": "observation", "data": step_data(reply) })
}

fn error_data(message: &str, code: &str) -> Value {
    json!({ "type": "error", "data": { "message": message, "code": code } })
}

fn error_message(error: &CallError) -> Value {
    match error {
        CallError::Capacity { active, max } => json!({ "type": "error", "data": {
            "message": error.to_string(), "code": "CAPACITY_REACHED", "active_sessions": active, "max_sessions": max,
        }}),
        CallError::ActionTooLarge(..) | CallError::MalformedAction(_) => error_data(&error.to_string(), "VALIDATION_ERROR"),
        _ => error_data(&error.to_string(), "EXECUTION_ERROR"),
    }
}

/// The JSON Schemas of the action, the observation and the state.
fn schemas() -> Value {
    let nullable = |kind: &str| json!({ "anyOf": [{ "type": kind }, { "type": "null" }], "default": null });
    json!({
        "action": {
            "title": "CodeGymAction",
            "description": "One tool call: a tool of the session's environment (MCP tools/list names them) and its arguments.",
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "The tool to call." },
                "parameters": { "type": "object", "default": {}, "description": "The tool's arguments." },
                "metadata": { "type": "object", "default": {} },
            },
            "required": ["name"],
            "additionalProperties": false,
        },
        "observation": {
            "title": "CodeGymObservation",
            "type": "object",
            "properties": {
                "done": { "type": "boolean", "default": false },
                "reward": nullable("number"),
                "metadata": { "type": "object", "default": {} },
                "text": { "type": "string", "description": "What the tool returned, or why the call did not run to completion." },
                "error": {
                    "anyOf": [{ "enum": StepError::ALL.map(StepError::as_str) }, { "type": "null" }],
                    "default": null,
                    "description": "Set when the call did not run to completion; the environment is then as it was before it.",
                },
                "truncated": { "type": "boolean", "default": false, "description": "Whether the text was cut at the observation cap." },
            },
            "required": ["text"],
        },
        "state": {
            "title": "CodeGymState",
            "type": "object",
            "properties": {
                "episode_id": nullable("string"),
                "step_count": { "type": "integer", "minimum": 0, "default": 0 },
                "config_id": nullable("string"),
                "env_name": nullable("string"),
                "done": { "type": "boolean", "default": false },
                "reward": { "type": "number", "default": 0.0 },
            },
            "additionalProperties": true,
        },
    })
}

/// The OpenAPI description of the HTTP endpoints (the WebSocket is not an OpenAPI path).
fn openapi() -> Value {
    let get = |summary: &str| json!({ "get": { "summary": summary, "responses": { "200": { "description": "OK" } } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "codegym serve (OpenEnv)",
            "version": API_VERSION,
            "description": "CodeGym environments in OpenEnv's session form: sessions over WS /ws; MCP over POST /mcp.",
        },
        "paths": {
            "/health": get("Health check"),
            "/metadata": get("Environment metadata"),
            "/schema": get("JSON Schemas of action, observation and state"),
            "/mcp": { "post": {
                "summary": "MCP JSON-RPC 2.0: tools/list, tools/call, openenv/session/create, openenv/session/close",
                "responses": { "200": { "description": "A JSON-RPC response (errors included)" } },
            }},
        },
    })
}
