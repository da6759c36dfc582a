//! OpenEnv's MCP endpoint, as MCP clients and OpenEnv's own speak it: JSON-RPC 2.0 over
//! `POST /mcp`, and over a WebSocket session as `{"type": "mcp", "data": REQUEST}`. A request
//! that cannot be served still gets a JSON-RPC error object (over HTTP with status 200), as
//! OpenEnv answers; a notification (no `id`) gets no answer (HTTP 202).
//!
//! Methods:
//! - `initialize` answers the protocol version, the `tools` capability and the instructions;
//!   over HTTP with `?config_id=` or `?env_str=` in the URL it also opens a session and starts an
//!   episode of that configuration, whose id comes back in the `Mcp-Session-Id` header (MCP's
//!   Streamable HTTP sessions): later requests carrying the header work on that session;
//!   `notifications/initialized` and `ping` are accepted; `DELETE /mcp` with the header closes
//!   the session;
//! - `tools/list` lists an environment's tools from its agent-facing docs: the caller's session's
//!   (the WebSocket's, the `Mcp-Session-Id` header's, or `params.session_id`'s), or the one
//!   `params` names (`config_id`, `env_str` or `env_name`);
//! - `tools/call` (`name`, `arguments`) is one step of the caller's session's episode;
//! - `openenv/session/create` opens a session over HTTP, and starts an episode of `config_id` or
//!   `env_str` when given (with `seed` and `episode_id` as a reset takes them; the answer then
//!   holds the first observation); without one, a WebSocket attaches to it (`/ws?session_id=`)
//!   and resets it, as OpenEnv 0.10's MCP client does. `openenv/session/close` closes one.
//!
//! Hand-written rather than built on the Rust MCP SDK (`rmcp`): the same handler must answer
//! inside OpenEnv's WebSocket messages and carry OpenEnv's `openenv/session/*` methods, which the
//! SDK's transports do not, and the surface is five methods.

use super::App;
use super::briefing;
use super::catalog::ConfigRef;
use super::openenv::Form;
use super::pool::{Access, Action, CallError, Protocol, Session};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// MCP's session header (Streamable HTTP).
const SESSION_HEADER: &str = "mcp-session-id";
/// The MCP protocol versions this server speaks; the first is answered to a client asking for
/// another.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const SERVER_ERROR: i64 = -32000;

/// A JSON-RPC error: code, message and data.
struct RpcError(i64, String, Value);

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError(code, message.into(), Value::Null)
    }
}

impl From<CallError> for RpcError {
    fn from(error: CallError) -> RpcError {
        match &error {
            CallError::Capacity { active, max } => {
                RpcError(SERVER_ERROR, error.to_string(), json!({ "active_sessions": active, "max_sessions": max }))
            }
            CallError::ActionTooLarge(..) | CallError::MalformedAction(_) | CallError::Resolve(_) | CallError::NoConfig => {
                RpcError::new(INVALID_PARAMS, error.to_string())
            }
            _ => RpcError::new(SERVER_ERROR, error.to_string()),
        }
    }
}

/// `POST /mcp`: the caller's session is the one its `Mcp-Session-Id` header names, if any.
pub(super) async fn endpoint(State(app): State<App>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let named = headers.get(SESSION_HEADER).map(|id| id.to_str().unwrap_or_default().to_string());
    let own = match named.as_deref().map(|id| by_id(&app, id)) {
        Some(Ok(session)) => Some(session),
        // MCP: an unknown session gets 404, and the client starts a new one.
        Some(Err(RpcError(_, message, _))) => return (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response(),
        None => None,
    };
    let opened = match own {
        None if is_initialize(&body) => match open_from_query(&app, &uri).await {
            Ok(opened) => opened,
            Err(error) => return Json(response(request_id(&body), Err(error))).into_response(),
        },
        _ => None,
    };
    let session = own.or(opened.clone());
    let Some(answer) = answer(&app, &body, session.as_ref(), Transport::Http).await else {
        return StatusCode::ACCEPTED.into_response();
    };
    let mut response = Json(answer).into_response();
    if let Some(session) = opened.and_then(|s| HeaderValue::from_str(&s.id).ok()) {
        response.headers_mut().insert(SESSION_HEADER, session);
    }
    response
}

/// `DELETE /mcp`: MCP's end of the session its `Mcp-Session-Id` header names.
pub(super) async fn end_session(State(app): State<App>, headers: HeaderMap) -> Response {
    let named = headers.get(SESSION_HEADER).and_then(|id| id.to_str().ok()).unwrap_or_default();
    match by_id(&app, named) {
        Ok(session) => {
            app.pool.close(&session);
            StatusCode::OK.into_response()
        }
        Err(RpcError(_, message, _)) => (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response(),
    }
}

fn is_initialize(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|request| request["method"] == "initialize")
}

fn request_id(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).map(|request| request["id"].clone()).unwrap_or(Value::Null)
}

/// The session an HTTP `initialize` opens when its URL names a configuration, with its episode
/// started.
async fn open_from_query(app: &App, uri: &Uri) -> Result<Option<Arc<Session>>, RpcError> {
    let query: Map<String, Value> = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), Value::from(percent_decoded(value))))
        .collect();
    let Some(reference) = config_ref(&query) else { return Ok(None) };
    Ok(Some(open_started(app, reference, None, None).await?.0))
}

/// `%XX` escapes and `+` of a URL query value decoded (an `env_str` holds JSON).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a request came from: a WebSocket session cannot be closed over MCP (its socket closes
/// it), an HTTP one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Http,
    Socket,
}

/// Answers one JSON-RPC message (the raw body); `session` is the caller's own session (the
/// WebSocket's, or the one its `Mcp-Session-Id` header names). `None` for a notification.
pub(super) async fn answer(app: &App, body: &[u8], session: Option<&Arc<Session>>, via: Transport) -> Option<Value> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => return Some(response(Value::Null, Err(RpcError::new(PARSE_ERROR, "Parse error")))),
    };
    let notification = request.get("id").is_none();
    let (id, method, params) = match checked(request) {
        Ok(parts) => parts,
        Err(error) => return Some(response(Value::Null, Err(error))),
    };
    let result = match method.as_str() {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => tools_list(app, &params, session),
        "tools/call" => tools_call(app, &params, raw_arguments(body), session).await,
        "openenv/session/create" => create(app, &params, session, via).await,
        "openenv/session/close" => close(app, &params, session, via),
        notified if notified.starts_with("notifications/") => Ok(Value::Null),
        other => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    };
    // JSON-RPC: a notification gets no answer, even an error.
    (!notification).then(|| response(id, result))
}

/// The answer to `initialize`: the client's protocol version when this server speaks it.
fn initialize(params: &Map<String, Value>) -> Value {
    let asked = text_param(params, "protocolVersion");
    let version = PROTOCOL_VERSIONS.into_iter().find(|v| Some(*v) == asked).unwrap_or(PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "codegym", "version": env!("CARGO_PKG_VERSION") },
        "instructions": briefing::instructions(),
    })
}

fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(RpcError(code, message, data)) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message, "data": data } })
        }
    }
}

/// The id, method and params of a request object, as JSON-RPC 2.0 (and OpenEnv) require them.
fn checked(request: Value) -> Result<(Value, String, Map<String, Value>), RpcError> {
    let invalid = |why: &str| RpcError::new(INVALID_REQUEST, format!("Invalid request: {why}"));
    let Value::Object(mut request) = request else { return Err(invalid("not a JSON object")) };
    if request.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(invalid("`jsonrpc` must be \"2.0\""));
    }
    if let Some(extra) = request.keys().find(|k| !["jsonrpc", "method", "params", "id"].contains(&k.as_str())) {
        return Err(invalid(&format!("unknown member `{extra}`")));
    }
    let id = request.remove("id").unwrap_or(Value::Null);
    if !(id.is_null() || id.is_string() || id.is_i64() || id.is_u64()) {
        return Err(invalid("`id` must be a string, an integer or null"));
    }
    let Some(Value::String(method)) = request.remove("method") else { return Err(invalid("`method` must be a string")) };
    match request.remove("params").unwrap_or_else(|| json!({})) {
        Value::Object(params) => Ok((id, method, params)),
        _ => Err(RpcError::new(INVALID_PARAMS, "Params must be an object")),
    }
}

fn text_param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params.get(name).and_then(Value::as_str)
}

/// The configuration `params` names by `config_id` or `env_str`.
fn config_ref(params: &Map<String, Value>) -> Option<ConfigRef> {
    let text = |name| text_param(params, name).map(String::from);
    ConfigRef::from_keys(text("config_id"), text("env_str"))
}

/// The session `params.session_id` names, else the WebSocket's own. An id reaches only the
/// caller's own WebSocket session or a session opened over HTTP, never another socket's.
fn session_of(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>) -> Result<Arc<Session>, RpcError> {
    match text_param(params, "session_id") {
        Some(id) if own.is_some_and(|s| s.id == id) => Ok(own.cloned().expect("checked")),
        Some(id) => by_id(app, id),
        None => own.cloned().ok_or_else(|| RpcError::new(INVALID_PARAMS, "Invalid params - 'session_id' is required over HTTP")),
    }
}

fn by_id(app: &App, id: &str) -> Result<Arc<Session>, RpcError> {
    app.pool.by_id(id, Protocol::OpenEnv).ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("Unknown session_id: {id}")))
}

fn tools_list(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>) -> Result<Value, RpcError> {
    let catalog = app.pool.catalog();
    let env = match (config_ref(params), text_param(params, "env_name")) {
        (Some(reference), _) => catalog.resolve(&reference).map_err(CallError::from)?.env.clone(),
        (None, Some(name)) => catalog.envs()[catalog.env_named(name).map_err(CallError::from)?].clone(),
        (None, None) => {
            let session = session_of(app, params, own).map_err(|_| {
                RpcError::new(INVALID_PARAMS, "tools/list needs an environment: session_id, config_id, env_str or env_name")
            })?;
            app.episode_env(&session)?
        }
    };
    Ok(json!({ "tools": env.tools }))
}

/// `params.arguments` of a request as the client wrote it (numbers kept exactly).
fn raw_arguments(body: &[u8]) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Request {
        params: Option<Box<RawValue>>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        arguments: Option<Box<RawValue>>,
    }
    let params = serde_json::from_slice::<Request>(body).ok()?.params?;
    serde_json::from_str::<Params>(params.get()).ok()?.arguments
}

async fn tools_call(
    app: &App,
    params: &Map<String, Value>,
    arguments: Option<Box<RawValue>>,
    own: Option<&Arc<Session>>,
) -> Result<Value, RpcError> {
    let session = session_of(app, params, own)?;
    let name = text_param(params, "name").ok_or_else(|| RpcError::new(INVALID_PARAMS, "Missing 'name' in params"))?;
    let action = Action::from_parts(name, arguments.as_deref(), app.pool.settings().max_action_bytes)?;
    let reply = app.pool.step(&session, action).await?;
    Ok(json!({
        "content": [{ "type": "text", "text": reply.observation }],
        "isError": reply.error.is_some(),
        "structuredContent": Form::Step.of(&reply),
    }))
}

/// Opens an HTTP session and starts an episode of `reference` in it: the session and the first
/// observation. A session whose episode fails to start is closed again.
async fn open_started(
    app: &App,
    reference: ConfigRef,
    seed: Option<u64>,
    label: Option<String>,
) -> Result<(Arc<Session>, Value), RpcError> {
    let session = app.pool.open(Protocol::OpenEnv, Access::Id)?;
    let started = match app.pool.start(&session, Some(reference), seed, label).await {
        Ok(reply) => app.episode_env(&session).map(|env| serde_json::to_value(Form::Reset.first(&reply, &env))),
        Err(error) => Err(error),
    };
    match started {
        Ok(first) => Ok((session, first.expect("observations serialize"))),
        Err(error) => {
            app.pool.close(&session);
            Err(error.into())
        }
    }
}

async fn create(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>, via: Transport) -> Result<Value, RpcError> {
    if let (Some(session), Transport::Socket) = (own, via) {
        return Ok(json!({ "session_id": session.id }));
    }
    let seed =
        params.get("seed").map(|s| s.as_u64().ok_or_else(|| RpcError::new(INVALID_PARAMS, "`seed` must be an integer >= 0")));
    let seed = seed.transpose()?;
    let label = text_param(params, "episode_id").map(String::from);
    let Some(reference) = config_ref(params) else {
        // No configuration yet: the client resets the session over a WebSocket attached to it.
        return Ok(json!({ "session_id": app.pool.open(Protocol::OpenEnv, Access::Id)?.id }));
    };
    let (session, mut first) = open_started(app, reference, seed, label).await?;
    first["session_id"] = session.id.clone().into();
    Ok(first)
}

fn close(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>, via: Transport) -> Result<Value, RpcError> {
    let id = text_param(params, "session_id")
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "Invalid params - 'session_id' is required"))?;
    if via == Transport::Socket && own.is_some_and(|s| s.id == id) {
        return Err(RpcError::new(INVALID_REQUEST, "Cannot close active WebSocket-managed session via MCP method"));
    }
    app.pool.close(&by_id(app, id)?);
    Ok(json!({ "session_id": id, "closed": true }))
}
