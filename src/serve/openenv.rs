//! The OpenEnv protocol (openenv-core 0.3.0 and openenv 0.10, as verifiers, SkyRL and TRL speak
//! it), in its session form ("production" mode): `WS /ws`, one session per connection, with
//! `reset`, `step`, `state`, `close` and `mcp` messages; `GET /health`, `/metadata`, `/schema`,
//! `/openapi.json`; `POST /mcp` ([`super::mcp`]). The stateless `POST /reset`, `/step` and
//! `GET /state` of OpenEnv's simulation mode are not served.
//!
//! Messages, as implemented:
//! - `WS /ws?session_id=ID` attaches the socket to a session opened over HTTP MCP
//!   (`openenv/session/create`, as OpenEnv's MCP client does), which outlives the socket; without
//!   it the socket opens its own session, which ends with it;
//! - `{"type": "reset", "data": {"config_id" | "env_str", "seed"?, "episode_id"?}}` -> an
//!   observation that opens with the briefing ([`super::briefing`]: `task`, `instructions`,
//!   `instructions_version`, `available_tools`); without a configuration it restarts the
//!   session's last one;
//! - `{"type": "step", "data": {"name": TOOL, "parameters": {...}}}` -> an observation;
//! - observation: `{"type": "observation", "data": {"observation": {"text", "error",
//!   "truncated"}, "reward", "done"}}` (`error`: the verdict of a step that did not run to
//!   completion, with the session left as it was; no timings);
//! - OpenEnv's MCP actions as steps: `{"type": "list_tools"}` -> `{"observation": {"tools"}}`;
//!   `{"type": "call_tool", "tool_name", "arguments"}` -> `{"observation": {"tool_name",
//!   "result", "error", "text", "truncated"}}` (`error`: OpenEnv's `ToolError`, or null);
//! - `{"type": "state"}` -> `{"type": "state", "data": {"episode_id", "step_count", "config_id",
//!   "env_name", "done", "reward"}}`;
//! - `{"type": "close"}` ends the session; `{"type": "mcp", "data": JSON-RPC}` -> `{"type": "mcp",
//!   "data": JSON-RPC response}`;
//! - errors: `{"type": "error", "data": {"message", "code"}}` with OpenEnv's codes
//!   (`INVALID_JSON`, `UNKNOWN_TYPE`, `VALIDATION_ERROR`, `EXECUTION_ERROR`, `CAPACITY_REACHED`);
//!   a connection past `--max-sessions` gets `CAPACITY_REACHED` and is closed.

use super::briefing::Briefing;
use super::catalog::{ConfigRef, ServedEnv};
use super::pool::{Access, Action, CallError, Protocol, Reply, Session, StepError};
use super::tools::ToolSpec;
use super::{App, MAX_BODY_BYTES, mcp};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
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
        .route("/schema", get(|app: State<App>| async move { Json(schemas(&app)) }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/mcp", post(mcp::endpoint).delete(mcp::end_session))
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
         or env_str (EnvName@{{json}} or {{code_id}}__{{EnvName}}@{{json}}): the observation holds the task, the \
         instructions and the tools; step with {{\"name\": TOOL, \"parameters\": {{...}}}}.",
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

async fn upgrade(State(app): State<App>, uri: Uri, upgrade: WebSocketUpgrade) -> Response {
    let attach = uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("session_id="));
    let attach = attach.map(String::from);
    upgrade.max_message_size(MAX_BODY_BYTES).on_upgrade(move |socket| connection(app, socket, attach))
}

/// The session a connection works on: its own, or the HTTP MCP session it attached to.
fn session_for(app: &App, attach: Option<&str>) -> Result<Arc<Session>, Value> {
    match attach {
        None => app.pool.open(Protocol::OpenEnv, Access::Socket).map_err(|e| error_message(&e)),
        Some(id) => app.pool.by_id(id, Protocol::OpenEnv).ok_or_else(|| {
            error_data(
                &format!("Unknown session_id: {id} (open one with openenv/session/create over POST /mcp)"),
                "VALIDATION_ERROR",
            )
        }),
    }
}

/// One WebSocket connection: one session, messages answered in order.
async fn connection(app: App, mut socket: WebSocket, attach: Option<String>) {
    let session = match session_for(&app, attach.as_deref()) {
        Ok(session) => session,
        Err(error) => {
            let _ = socket.send(Message::Text(error.to_string().into())).await;
            let _ = socket.send(Message::Close(Some(CloseFrame { code: 1013, reason: "no session".into() }))).await;
            return;
        }
    };
    let mut stopping = app.stopping.clone();
    let ending = loop {
        let message = tokio::select! {
            message = socket.recv() => message,
            _ = session.closing.notified() => break Some((1000, "the session was closed: idle too long, or by its HTTP creator")),
            _ = stopping.changed() => break Some((1001, "the server is shutting down")),
        };
        let raw = match message {
            Some(Ok(Message::Text(raw))) => raw.to_string(),
            Some(Ok(Message::Binary(raw))) => String::from_utf8_lossy(&raw).into_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
        };
        let Some(answer) = handle(&app, &session, &raw).await else { break Some((1000, "closed")) };
        if socket.send(Message::Text(answer.into())).await.is_err() {
            break None;
        }
    };
    // An attached session belongs to its HTTP creator, who closes it (or the reaper does).
    if attach.is_none() {
        app.pool.close(&session);
    }
    if let Some((code, reason)) = ending {
        let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

/// The answer to one message; `None` for `close`.
async fn handle(app: &App, session: &Arc<Session>, raw: &str) -> Option<String> {
    let message: Value = match serde_json::from_str(raw) {
        Ok(message) => message,
        Err(e) => return Some(error_data(&format!("Invalid JSON: {e}"), "INVALID_JSON").to_string()),
    };
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let answer = match kind.as_str() {
        "reset" => reset(app, session, message).await,
        "step" => step(app, session, raw).await,
        "state" => typed::<Bare>(message).map(|_| state(session).to_string()),
        "close" => return typed::<Bare>(message).err().map(|error| error.to_string()),
        "mcp" => match typed_raw::<WithData<Box<RawValue>>>(raw) {
            Ok(WithData { data, .. }) => {
                let answer = mcp::answer(app, data.get().as_bytes(), Some(session), mcp::Transport::Socket).await;
                // A notification has no answer, but every message here gets one: an empty result.
                Ok(json!({ "type": "mcp", "data": answer.unwrap_or_else(|| json!({})) }).to_string())
            }
            Err(error) => Err(error),
        },
        other => Err(error_data(&format!("Unknown message type: {other}"), "UNKNOWN_TYPE")),
    };
    Some(answer.unwrap_or_else(|error| error.to_string()))
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

/// The kind of a step's action: CodeGym's own (no `type`), or one of OpenEnv's MCP actions.
#[derive(Deserialize)]
struct ActionKind {
    #[serde(rename = "type")]
    kind: Option<McpAction>,
}

/// OpenEnv's MCP actions, by their `type`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum McpAction {
    ListTools,
    CallTool,
}

/// OpenEnv's `ListToolsAction`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTools {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(default, rename = "metadata")]
    _metadata: Map<String, Value>,
}

/// OpenEnv's `CallToolAction`; its arguments stay raw JSON, as a step's parameters do.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallTool {
    #[serde(rename = "type")]
    _kind: String,
    tool_name: String,
    arguments: Option<Box<RawValue>>,
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

async fn reset(app: &App, session: &Arc<Session>, mut message: Value) -> Result<String, Value> {
    if message.get("data").is_none() {
        message["data"] = json!({});
    }
    let WithData { data, .. } = typed::<WithData<ResetData>>(message)?;
    let reference = ConfigRef::from_keys(data.config_id, data.env_str);
    let reply = app.pool.start(session, reference, data.seed, data.episode_id).await.map_err(|e| error_message(&e))?;
    let env = app.episode_env(session).map_err(|e| error_message(&e))?;
    Ok(observation_message(&Form::Reset.first(&reply, &env)))
}

async fn step(app: &App, session: &Arc<Session>, raw: &str) -> Result<String, Value> {
    let WithData { data, .. } = typed_raw::<WithData<Box<RawValue>>>(raw)?;
    let max = app.pool.settings().max_action_bytes;
    let kind = serde_json::from_str::<ActionKind>(data.get()).map_err(invalid)?.kind;
    let (action, called) = match kind {
        None => {
            let data = serde_json::from_str::<StepData>(data.get()).map_err(invalid)?;
            (Action::from_parts(&data.name, data.parameters.as_deref(), max), None)
        }
        Some(McpAction::ListTools) => {
            serde_json::from_str::<ListTools>(data.get()).map_err(invalid)?;
            return list_tools(app, session);
        }
        Some(McpAction::CallTool) => {
            let data = serde_json::from_str::<CallTool>(data.get()).map_err(invalid)?;
            (Action::from_parts(&data.tool_name, data.arguments.as_deref(), max), Some(data.tool_name))
        }
    };
    let action = action.map_err(|e| error_message(&e))?;
    let reply = app.pool.step(session, action).await.map_err(|e| error_message(&e))?;
    let data = match &called {
        Some(tool_name) => Form::ToolCall(tool_name).of(&reply),
        None => Form::Step.of(&reply),
    };
    Ok(observation_message(&data))
}

/// OpenEnv's `ListToolsObservation` for the session's episode: not a step of it.
fn list_tools(app: &App, session: &Session) -> Result<String, Value> {
    let env = app.episode_env(session).map_err(|e| error_message(&e))?;
    let summary = session.summary();
    #[derive(Serialize)]
    struct Tools<'a> {
        tools: &'a [ToolSpec],
    }
    Ok(observation_message(&Observed { observation: Tools { tools: &env.tools }, reward: None, done: summary.done }))
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

/// What an OpenEnv observation message carries: `{"observation": {...}, "reward", "done"}`.
/// Serialized straight to text, so the briefing stays first in the observation.
#[derive(Serialize)]
pub(super) struct Observed<T> {
    observation: T,
    reward: Option<f64>,
    done: bool,
}

/// How a reply is observed.
pub(super) enum Form<'a> {
    /// The first observation of an episode: the briefing, then the text.
    Reset,
    /// A step: the text.
    Step,
    /// A step asked as OpenEnv's `CallToolAction` of this tool.
    ToolCall(&'a str),
}

/// An observation's members, in the order they are written.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum ObservationData<'a> {
    Text {
        #[serde(flatten)]
        briefing: Option<Briefing<'a>>,
        text: &'a str,
        error: Option<&'static str>,
        truncated: bool,
    },
    ToolCall {
        tool_name: &'a str,
        /// What the tool returned: OpenEnv's client hands it to its caller.
        result: &'a str,
        error: Option<ToolError<'a>>,
        text: &'a str,
        truncated: bool,
    },
}

/// OpenEnv's `ToolError`: why a call did not run to completion.
#[derive(Serialize)]
pub(super) struct ToolError<'a> {
    error_type: &'static str,
    message: &'a str,
}

impl<'a> Form<'a> {
    /// The first observation of an episode of `env`.
    pub(super) fn first(self, reply: &'a Reply, env: &'a ServedEnv) -> Observed<ObservationData<'a>> {
        let mut observed = self.of(reply);
        if let ObservationData::Text { briefing, .. } = &mut observed.observation {
            *briefing = Some(Briefing::of(env));
        }
        observed
    }

    pub(super) fn of(self, reply: &'a Reply) -> Observed<ObservationData<'a>> {
        let observation = match self {
            Form::Reset | Form::Step => ObservationData::Text {
                briefing: None,
                text: &reply.observation,
                error: reply.error.map(StepError::as_str),
                truncated: reply.truncated,
            },
            Form::ToolCall(tool_name) => ObservationData::ToolCall {
                tool_name,
                result: &reply.observation,
                error: reply.error.map(|error| ToolError { error_type: tool_error_type(error), message: &reply.observation }),
                text: &reply.observation,
                truncated: reply.truncated,
            },
        };
        Observed { observation, reward: Some(reply.reward), done: reply.done }
    }
}

/// OpenEnv's `ToolErrorType` of a step error.
fn tool_error_type(error: StepError) -> &'static str {
    match error {
        StepError::Timeout => "timeout",
        StepError::UnknownTool => "tool_not_found",
        StepError::Memory | StepError::OutputLimit | StepError::Error | StepError::StateTooLarge => "execution_error",
    }
}

fn observation_message<T: Serialize>(data: &Observed<T>) -> String {
    #[derive(Serialize)]
    struct Message<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        data: &'a Observed<T>,
    }
    serde_json::to_string(&Message { kind: "observation", data }).expect("observations serialize")
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

/// Most tool names `/schema` lists: past it, the reset observation alone names them (a client
/// such as verifiers sends the schema to the model on every turn).
const MAX_SCHEMA_TOOLS: usize = 256;

/// The JSON Schemas of the action, the observation and the state. The action's `name` lists the
/// tools of every served environment when they are few; the reset observation always lists the
/// episode's own.
fn schemas(app: &App) -> Value {
    let nullable = |kind: &str| json!({ "anyOf": [{ "type": kind }, { "type": "null" }], "default": null });
    let names: std::collections::BTreeSet<&str> = app.pool.catalog().envs().iter().flat_map(|env| env.tool_names()).collect();
    let mut name = json!({
        "type": "string",
        "description": "The tool to call: one of the episode's tools, which the reset observation lists (`available_tools`).",
    });
    if names.len() <= MAX_SCHEMA_TOOLS {
        name["enum"] = json!(names);
    }
    json!({
        "action": {
            "title": "CodeGymAction",
            "description": "One tool call: a tool of the episode's environment and its arguments. Call `Done` with the answer to end the episode.",
            "type": "object",
            "properties": {
                "name": name,
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
                "task": { "type": "string", "description": "The reset observation only: the task text." },
                "instructions": { "type": "string", "description": "The reset observation only: how to call the tools and finish with Done." },
                "instructions_version": { "type": "string" },
                "available_tools": {
                    "type": "array",
                    "description": "The reset observation only: the episode's tools (name, description, inputSchema).",
                    "items": { "type": "object", "properties": {
                        "name": { "type": "string" }, "description": { "type": "string" }, "inputSchema": { "type": "object" },
                    }},
                },
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
