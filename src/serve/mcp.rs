//! OpenEnv's MCP endpoint: JSON-RPC 2.0 over `POST /mcp`, and over a WebSocket session as
//! `{"type": "mcp", "data": REQUEST}`. A request that cannot be served still gets a JSON-RPC
//! error object (over HTTP with status 200), as OpenEnv answers.
//!
//! Methods, as OpenEnv 0.3.0 defines them:
//! - `tools/list` lists an environment's tools from its agent-facing docs: the WebSocket
//!   session's, or the one `params` names (`session_id`, `config_id`, `env_str` or `env_name`);
//! - `tools/call` (`name`, `arguments`) is one step of a session's episode: the WebSocket
//!   session's, or `params.session_id`'s;
//! - `openenv/session/create` opens a session over HTTP and starts an episode of `config_id` or
//!   `env_str` (with `seed` and `episode_id` as a reset takes them); `openenv/session/close`
//!   closes one.

use super::App;
use super::catalog::ConfigRef;
use super::openenv::step_data;
use super::pool::{Access, Action, CallError, Protocol, Session};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::sync::Arc;

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

/// Answers one JSON-RPC request (the raw body); `session` is the WebSocket session it came on.
pub(super) async fn answer(app: &App, body: &[u8], session: Option<&Arc<Session>>) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => return response(Value::Null, Err(RpcError::new(PARSE_ERROR, "Parse error"))),
    };
    let (id, method, params) = match checked(request) {
        Ok(parts) => parts,
        Err(error) => return response(Value::Null, Err(error)),
    };
    let result = match method.as_str() {
        "tools/list" => tools_list(app, &params, session),
        "tools/call" => tools_call(app, &params, raw_arguments(body), session).await,
        "openenv/session/create" => create(app, &params, session).await,
        "openenv/session/close" => close(app, &params, session),
        other => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    };
    response(id, result)
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
            let config_id = session.summary().config_id.ok_or(CallError::NoEpisode)?;
            catalog.resolve(&ConfigRef::Id(config_id)).map_err(CallError::from)?.env.clone()
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
        "structuredContent": step_data(&reply),
    }))
}

async fn create(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>) -> Result<Value, RpcError> {
    if let Some(session) = own {
        return Ok(json!({ "session_id": session.id }));
    }
    let reference =
        config_ref(params).ok_or_else(|| RpcError::new(INVALID_PARAMS, "openenv/session/create needs config_id or env_str"))?;
    let seed =
        params.get("seed").map(|s| s.as_u64().ok_or_else(|| RpcError::new(INVALID_PARAMS, "`seed` must be an integer >= 0")));
    let seed = seed.transpose()?;
    let label = text_param(params, "episode_id").map(String::from);
    let session = app.pool.open(Protocol::OpenEnv, Access::Id)?;
    match app.pool.start(&session, Some(reference), seed, label).await {
        Ok(reply) => {
            let mut data = step_data(&reply);
            data["session_id"] = session.id.clone().into();
            Ok(data)
        }
        Err(error) => {
            app.pool.close(&session);
            Err(error.into())
        }
    }
}

fn close(app: &App, params: &Map<String, Value>, own: Option<&Arc<Session>>) -> Result<Value, RpcError> {
    let id = text_param(params, "session_id")
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "Invalid params - 'session_id' is required"))?;
    if own.is_some_and(|s| s.id == id) {
        return Err(RpcError::new(INVALID_REQUEST, "Cannot close active WebSocket-managed session via MCP method"));
    }
    app.pool.close(&by_id(app, id)?);
    Ok(json!({ "session_id": id, "closed": true }))
}
