//! `codegym serve`: the verified environments of a dataset as a sandboxed rollout server that
//! trainers already speak to: OpenEnv on one address ([`openenv`], [`mcp`]) and the CodeGym
//! release's REST API on another ([`rest`]). Every tool call of every session runs in the
//! WebAssembly sandbox under per-step limits; a call that misbehaves costs its own interpreter and
//! an error observation, never another session.
//!
//! ```text
//!   trainers --HTTP / WebSocket--> [openenv] [mcp] [rest]    tokio runtime: network I/O only
//!                                        \    |    /
//!                                          [pool]            sessions; live interpreters (bounded,
//!                                            |                LRU eviction); idle sessions as
//!                                            |                pickled state
//!                                        [workers]           sandbox threads (large stacks): a
//!                                            |                prompt lane and a slow lane
//!                                  interpreters (session.py)
//!                                            |
//!                                        [record]            --record DIR: the `episodes` table
//! ```
//! [`catalog`] decides what is served (verified environments whose state survives pickling, their
//! kept configurations) and resolves the names clients use; [`tools`] turns the tool schemas
//! verification stored into MCP tool descriptions; [`briefing`] is what the first observation of
//! an episode tells the agent (task, instructions, tools). [`Server`] binds both addresses, checks the
//! token, reaps idle sessions, flushes the recording, and shuts all of it down in order.

mod briefing;
mod catalog;
mod mcp;
mod openenv;
mod pool;
mod record;
mod rest;
mod tools;
mod workers;

pub use catalog::{Catalog, ConfigRef, ResolveError, Skipped};
pub use pool::{CallError, PoolSettings, Protocol, StepError};

use crate::dataset::{Dataset, DatasetError};
use crate::sandbox::Sandbox;
use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use pool::Pool;
use record::Recorder;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest request body or WebSocket message read (an action itself is capped lower, so a
/// 10 MB action is read and refused with a clear error rather than cut off).
pub(crate) const MAX_BODY_BYTES: usize = 16 << 20;

/// Interpreters alive at once by default (about 6 MiB each): more than the sessions a trainer
/// keeps busy at once (verl's example, 32 prompts x 8 samples + 128 validation, is 384), so live
/// sessions do not take turns on too few interpreters.
pub const DEFAULT_MAX_LIVE: usize = 512;

/// An action longer than this is refused (a tool call's arguments are a few hundred bytes).
pub const MAX_ACTION_BYTES: usize = 1 << 20;

/// How often the recording is merged into the `episodes` table while serving.
const RECORD_EVERY: Duration = Duration::from_secs(5);

/// Resolved settings of `codegym serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The dataset: a directory or an object store URL.
    pub data: String,
    /// OpenEnv's address.
    pub addr: SocketAddr,
    /// The CodeGym REST API's address.
    pub codegym_addr: SocketAddr,
    /// Serve every configuration of a verified environment, not only kept ones.
    pub all_configs: bool,
    /// Where to record episodes (a dataset: a directory or an object store URL).
    pub record: Option<String>,
    /// Required on every request when set; must be set to bind a non-loopback address.
    pub token: Option<Token>,
    pub pool: PoolSettings,
}

/// The token every request must carry. Never empty (an empty one would let anyone in, say from
/// an unset variable), compared in constant time, and never printed: its `Debug` hides it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Result<Token, ServeError> {
        if token.trim().is_empty() {
            return Err(ServeError::EmptyToken);
        }
        Ok(Token(token.into()))
    }

    fn matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.0.as_bytes())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(hidden)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(
        "{0} holds no configuration to serve ({1})\n  hint: run `codegym build` or `codegym verify` first, or pass --all-configs"
    )]
    NothingToServe(String, String),
    #[error(
        "binding {0} exposes the server beyond this machine, so it needs a token\n  hint: pass --token TOKEN or set CODEGYM_SERVE_TOKEN"
    )]
    TokenRequired(SocketAddr),
    #[error(
        "the token is empty, which would let anyone in\n  hint: pass a non-empty --token TOKEN (or CODEGYM_SERVE_TOKEN), or leave both unset to serve on loopback only"
    )]
    EmptyToken,
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct App {
    pool: Pool,
    /// Turns true when the server stops (open WebSocket sessions end).
    stopping: watch::Receiver<bool>,
}

impl App {
    /// The environment of the session's episode (or of its last one).
    fn episode_env(&self, session: &pool::Session) -> Result<Arc<catalog::ServedEnv>, CallError> {
        let config_id = session.summary().config_id.ok_or(CallError::NoEpisode)?;
        Ok(self.pool.catalog().resolve(&ConfigRef::Id(config_id))?.env.clone())
    }
}

/// A running server.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    pool: Pool,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub openenv_addr: SocketAddr,
    pub codegym_addr: SocketAddr,
}

/// What a server did, reported when it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub sessions_closed: usize,
    pub rows_recorded: usize,
}

impl Server {
    /// Reads what to serve, starts the pool and listens on both addresses.
    pub fn start(sandbox: Arc<Sandbox>, settings: ServeSettings) -> Result<Server, ServeError> {
        for addr in [settings.addr, settings.codegym_addr] {
            if !addr.ip().is_loopback() && settings.token.is_none() {
                return Err(ServeError::TokenRequired(addr));
            }
        }
        let catalog = Catalog::load(&Dataset::open_existing(&settings.data)?, settings.all_configs)?;
        if catalog.configs().is_empty() {
            let what = format!("{} servable environments", catalog.envs().len());
            return Err(ServeError::NothingToServe(settings.data.clone(), what));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("codegym-serve-io")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let recorder = settings.record.as_deref().map(|to| Dataset::open(to, None).map(Recorder::new)).transpose()?;
        let pool = Pool::new(sandbox, Arc::new(catalog), settings.pool.clone(), recorder);
        let (stop, stopping) = watch::channel(false);
        let app = App { pool: pool.clone(), stopping };
        let token = settings.token.clone();
        let mut tasks = Vec::new();
        let mut listen = |addr: SocketAddr, router: Router| -> Result<SocketAddr, ServeError> {
            let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| ServeError::Bind(addr, e))?;
            let bound = listener.local_addr().map_err(|e| ServeError::Bind(addr, e))?;
            let token = token.clone();
            let router = router.layer(axum::middleware::from_fn(move |request, next| check_token(token.clone(), request, next)));
            let mut stopping = stop.subscribe();
            let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            });
            tasks.push(runtime.spawn(async move {
                let _ = serving.await;
            }));
            Ok(bound)
        };
        let openenv_addr = listen(settings.addr, openenv::router(app.clone()))?;
        let codegym_addr = listen(settings.codegym_addr, rest::router(app.clone()))?;
        tasks.push(runtime.spawn(housekeeping(pool.clone(), stop.subscribe())));
        Ok(Server { runtime, pool, stop, tasks, openenv_addr, codegym_addr })
    }

    pub fn catalog(&self) -> &Catalog {
        self.pool.catalog()
    }

    /// Open sessions and live interpreters.
    pub fn counts(&self) -> (usize, usize) {
        self.pool.counts()
    }

    /// Blocks until SIGINT or SIGTERM.
    pub fn wait_for_signal(&self) {
        self.runtime.block_on(async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match terminate.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
        });
    }

    /// Stops listening, closes every session (their connections are told why), lets running
    /// steps finish, stops the sandbox threads, writes the last of the recording and merges the
    /// parts this server appended to it.
    pub fn shutdown(self) -> Result<Stopped, ServeError> {
        let _ = self.stop.send(true);
        let sessions_closed = self.pool.counts().0;
        self.pool.shutdown();
        self.runtime.block_on(async {
            for task in self.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        });
        let rows_recorded = match self.pool.recorder() {
            Some(recorder) => recorder.finish()?,
            None => 0,
        };
        self.runtime.shutdown_timeout(Duration::from_secs(2));
        Ok(Stopped { sessions_closed, rows_recorded })
    }
}

/// Refuses requests without the token (header `Authorization: Bearer TOKEN`, or `?token=TOKEN`
/// for WebSocket clients that cannot set headers).
async fn check_token(token: Option<Token>, request: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(request).await };
    let bearer =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("token="));
    if bearer.or(query).is_some_and(|given| token.matches(given)) {
        return next.run(request).await;
    }
    let message = "missing or wrong token: send `Authorization: Bearer TOKEN` (or `?token=TOKEN`)";
    (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response()
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Reaps idle sessions and flushes the recording until the server stops.
async fn housekeeping(pool: Pool, mut stopping: watch::Receiver<bool>) {
    let settings = pool.settings();
    let every = (settings.interpreter_idle.min(settings.idle_timeout) / 4).clamp(Duration::from_millis(100), RECORD_EVERY);
    let mut ticks = tokio::time::interval(every);
    let mut flushed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        pool.reap();
        if pool.recorder().is_some() && flushed.elapsed() >= RECORD_EVERY {
            flushed = tokio::time::Instant::now();
            let pool = pool.clone();
            let flush = tokio::task::spawn_blocking(move || pool.recorder().map(|r| r.flush()));
            if let Ok(Some(Err(error))) = flush.await {
                eprintln!("codegym serve: recording failed (will retry): {error}");
            }
        }
    }
}
