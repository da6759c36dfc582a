//! LLM access for the synthesis stages: chat requests, their content-hash ids, the backends that
//! answer them (a live OpenAI-compatible endpoint, or a recording replayed offline), and the
//! client that runs many requests concurrently while recording every live answer before it is used.
//! Knows nothing of prompts or tables: `synthesis` builds the requests and stores the results.

mod openai;
mod recording;
mod replay;

pub use openai::{OpenAiBackend, OpenAiSettings, RetryPolicy};
pub use recording::{RecordedCall, Recorder, Recording};
pub use replay::ReplayBackend;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.to_string(), content: content.into() }
    }
}

/// The model and how it samples; part of every request's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Model name sent to the endpoint.
    pub model: String,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    /// Sent as the request's `seed`, so servers that honour it sample reproducibly.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { model: "Qwen/Qwen2.5-72B-Instruct".into(), temperature: 0.7, top_p: 0.95, max_tokens: 8192, seed: Some(0) }
    }
}

/// One chat-completion request of a pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The stage asking (`environment`, `configs`, `oracle`).
    pub stage: String,
    /// The prompt file and version that built the messages (e.g. `environment.v1`).
    pub prompt_version: String,
    /// The row the request is for (a problem_id or env_id).
    pub entity_id: String,
    /// A name a user recognises in errors (the problem's source id).
    pub label: String,
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    /// Completions wanted.
    pub n: u32,
}

impl ChatRequest {
    /// The request's content hash: prompt version, messages, sampling and `n`. The replay key.
    pub fn call_id(&self) -> String {
        let messages = serde_json::to_string(&self.messages).expect("messages serialize");
        let sampling = serde_json::to_string(&self.sampling).expect("sampling serializes");
        crate::ids::content_id("llm_call", &[&self.prompt_version, &messages, &sampling, &self.n.to_string()])
    }
}

/// What a backend answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The completions' texts, in choice order.
    pub choices: Vec<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Wall-clock time of the request, retries included; `None` when replayed.
    pub latency_ms: Option<i64>,
    /// HTTP attempts it took (0 when replayed).
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Replay found no recording of the request.
    #[error(
        "no recorded response for the {stage} request of {label} (call {call_id}) in {dir}\n  hint: the prompt, the model settings or the upstream answers changed since the recording; run with --llm openai to record it"
    )]
    NotRecorded { stage: String, label: String, call_id: String, dir: String },
    /// The endpoint kept failing until the retries ran out.
    #[error("the {stage} request of {label} failed after {attempts} attempts: {last}")]
    Exhausted { stage: String, label: String, attempts: u32, last: String },
    /// An answer no retry can fix (e.g. 400: the prompt is too long for the model).
    #[error("the endpoint refused the {stage} request of {label}: {detail}")]
    Refused { stage: String, label: String, detail: String },
    /// A setup problem that fails every request alike (401, 404, a missing setting).
    #[error("{0}")]
    Fatal(String),
    #[error("cannot record LLM responses in {path}: {source}")]
    Record { path: PathBuf, source: std::io::Error },
}

impl LlmError {
    /// Whether the whole run must stop (every other request would fail the same way).
    pub fn is_fatal(&self) -> bool {
        matches!(self, LlmError::Fatal(_) | LlmError::Record { .. } | LlmError::NotRecorded { .. })
    }

    /// The reject reason for a request that failed on its own.
    pub fn reason(&self) -> crate::reasons::Reason {
        use crate::reasons::Reason;
        match self {
            LlmError::Exhausted { .. } => Reason::LlmFailed,
            LlmError::Refused { .. } => Reason::LlmRefused,
            LlmError::NotRecorded { .. } => Reason::LlmNotRecorded,
            LlmError::Fatal(_) | LlmError::Record { .. } => Reason::LlmFatal,
        }
    }
}

/// Something that answers chat requests: a live endpoint or a recording.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn complete(&self, request: &ChatRequest, call_id: &str) -> Result<Completion, LlmError>;
    /// Requests it is useful to have in flight at once.
    fn in_flight(&self) -> usize;
    /// Whether answers come from a live endpoint (and so must be recorded).
    fn live(&self) -> bool;
}

/// Told about every finished request (a progress bar).
pub trait CallReporter: Send + Sync {
    fn on_call_done(&self);
}

/// Which backend `--llm` names: `openai` or `replay:DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    OpenAi,
    Replay(PathBuf),
}

impl std::str::FromStr for BackendSpec {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            None if spec == "openai" => Ok(BackendSpec::OpenAi),
            Some(("replay", dir)) if !dir.is_empty() => Ok(BackendSpec::Replay(PathBuf::from(dir))),
            _ => Err(format!("unknown --llm `{spec}`: expected `openai` or `replay:DIR`")),
        }
    }
}

/// A finished call: the request, its id and the answer, as `llm_calls` stores it.
#[derive(Debug, Clone)]
pub struct Call {
    pub call_id: String,
    pub request: ChatRequest,
    pub completion: Completion,
    /// Answered from a recording (this run made no request).
    pub cached: bool,
}

/// Runs requests against a backend, answering from the dataset's own recording first, and
/// recording every live answer before handing it out.
pub struct Client {
    backend: Arc<dyn Backend>,
    recording: Recording,
    recorder: Option<Recorder>,
    live_requests: AtomicU64,
}

impl Client {
    /// `recording` answers requests already paid for; `recorder` stores new live answers.
    pub fn new(backend: Arc<dyn Backend>, recording: Recording, recorder: Option<Recorder>) -> Client {
        Client { backend, recording, recorder, live_requests: AtomicU64::new(0) }
    }

    /// Records the next live answers into `shard`'s recording file.
    pub fn record_shard(&self, shard: u32) {
        if let Some(recorder) = &self.recorder {
            recorder.shard(shard);
        }
    }

    /// Requests sent to a live endpoint so far (retries not counted).
    pub fn live_requests(&self) -> u64 {
        self.live_requests.load(Ordering::Relaxed)
    }

    /// Answers every request, up to the backend's in-flight limit at once; results in request
    /// order. Stops early only on a fatal error.
    pub async fn complete_all(
        &self,
        requests: Vec<ChatRequest>,
        reporter: Option<&dyn CallReporter>,
    ) -> Result<Vec<Result<Call, LlmError>>, LlmError> {
        use futures::StreamExt;
        let limit = self.backend.in_flight().max(1);
        // Unordered, so one slow request never holds back the ones behind it; sorted after.
        let mut indexed: Vec<(usize, Result<Call, LlmError>)> = futures::stream::iter(requests.into_iter().enumerate())
            .map(|(i, request)| async move {
                let result = self.complete(request).await;
                if let Some(reporter) = reporter {
                    reporter.on_call_done();
                }
                (i, result)
            })
            .buffer_unordered(limit)
            .collect()
            .await;
        indexed.sort_by_key(|(i, _)| *i);
        let mut results: Vec<Result<Call, LlmError>> = indexed.into_iter().map(|(_, r)| r).collect();
        if let Some(fatal) = results.iter().position(|r| r.as_ref().is_err_and(LlmError::is_fatal)) {
            return Err(results.swap_remove(fatal).expect_err("a fatal error"));
        }
        Ok(results)
    }

    async fn complete(&self, request: ChatRequest) -> Result<Call, LlmError> {
        let call_id = request.call_id();
        if let Some(recorded) = self.recording.get(&call_id) {
            return Ok(Call { completion: recorded.completion(), call_id, request, cached: true });
        }
        if self.backend.live() {
            self.live_requests.fetch_add(1, Ordering::Relaxed);
        }
        let completion = self.backend.complete(&request, &call_id).await?;
        if let (true, Some(recorder)) = (self.backend.live(), &self.recorder) {
            recorder.append(&RecordedCall::new(&call_id, &request, &completion))?;
        }
        let cached = !self.backend.live();
        Ok(Call { call_id, request, completion, cached })
    }
}

/// Exponential backoff with full jitter, deterministic per (request, attempt) so runs are
/// reproducible without a random-number generator: `attempt` 1 waits up to `initial`, each next one
/// up to twice as long, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, call_id: &str, attempt: u32) -> Duration {
    let ceiling = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let hash = blake3::hash(format!("{call_id}/{attempt}").as_bytes());
    let unit = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    // Half fixed, half jitter: never a zero wait, never two clients in lockstep.
    ceiling.mul_f64(0.5 + 0.5 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            stage: "environment".into(),
            prompt_version: "environment.v1".into(),
            entity_id: "p1".into(),
            label: "cgs_0001".into(),
            messages: vec![Message::new("user", "hello")],
            sampling: Sampling::default(),
            n: 1,
        }
    }

    #[test]
    fn call_ids_change_with_every_part_of_the_request() {
        let base = request().call_id();
        assert_eq!(base, request().call_id());
        assert_ne!(base, ChatRequest { prompt_version: "environment.v2".into(), ..request() }.call_id());
        assert_ne!(base, ChatRequest { n: 2, ..request() }.call_id());
        let sampling = Sampling { temperature: 0.1, ..Sampling::default() };
        assert_ne!(base, ChatRequest { sampling, ..request() }.call_id());
        // Bookkeeping fields are not part of the request sent.
        assert_eq!(base, ChatRequest { label: "other".into(), entity_id: "p2".into(), ..request() }.call_id());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..10 {
            let wait = backoff(initial, max, "c", attempt);
            let ceiling = (initial * 2u32.pow(attempt - 1)).min(max);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "attempt {attempt}: {wait:?} vs {ceiling:?}");
        }
        assert_ne!(backoff(initial, max, "a", 3), backoff(initial, max, "b", 3), "jitter spreads clients");
    }

    #[test]
    fn backend_specs_parse() {
        assert_eq!("openai".parse(), Ok(BackendSpec::OpenAi));
        assert_eq!("replay:data-samples/llm".parse(), Ok(BackendSpec::Replay("data-samples/llm".into())));
        assert!("replay:".parse::<BackendSpec>().is_err());
        assert!("anthropic".parse::<BackendSpec>().is_err());
    }
}
