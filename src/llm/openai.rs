//! `--llm openai`: any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, hosted APIs).
//! Retries 429, 5xx, timeouts and broken bodies with exponential backoff and jitter, never sooner
//! than the server's `Retry-After`; stops the run on answers that fail every request alike (401,
//! 403, 404).

use super::{Backend, ChatRequest, Completion, LlmError, backoff};
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime};

/// When and how often to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt (doubling after each further failure) and its cap.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) }
    }
}

/// Where the endpoint is and how hard to push it.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// e.g. `http://localhost:8000/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Whole-request timeout (a stalled connection counts as a failed attempt).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Ask for `n` completions in one request (servers that support `n`); otherwise one request
    /// per completion.
    pub n_per_request: bool,
}

pub struct OpenAiBackend {
    http: reqwest::Client,
    url: String,
    settings: OpenAiSettings,
}

impl OpenAiBackend {
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiBackend, LlmError> {
        // Our TLS stack brings its own crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .pool_max_idle_per_host(settings.in_flight)
            .build()
            .map_err(|e| LlmError::Fatal(format!("cannot set up the HTTP client: {e}")))?;
        let url = format!("{}/chat/completions", settings.base_url.trim_end_matches('/'));
        if let Err(e) = reqwest::Url::parse(&url) {
            return Err(LlmError::Fatal(format!("OPENAI_BASE_URL `{}` is not a URL: {e}", settings.base_url)));
        }
        Ok(OpenAiBackend { http, url, settings })
    }

    /// One HTTP attempt.
    async fn attempt(&self, request: &ChatRequest, n: u32) -> Attempt {
        let mut body = serde_json::json!({
            "model": request.sampling.model,
            "messages": request.messages,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "max_tokens": request.sampling.max_tokens,
            "n": n,
        });
        if let Some(seed) = request.sampling.seed {
            body["seed"] = seed.into();
        }
        let mut http = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("requests serialize"));
        if let Some(key) = &self.settings.api_key {
            http = http.bearer_auth(key);
        }
        let response = match http.send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => return Attempt::Fatal(format!("cannot build the request: {}", describe(&e))),
            Err(e) => return Attempt::Retry { detail: describe(&e), retry_after: None },
        };
        let status = response.status();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?));
        let text = match response.bytes().await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return Attempt::Retry { detail: format!("HTTP {status}, body unreadable: {}", describe(&e)), retry_after },
        };
        match status.as_u16() {
            200..=299 => match parse_completion(&text) {
                Ok(completion) => Attempt::Done(completion),
                Err(detail) => Attempt::Retry { detail, retry_after: None },
            },
            408 | 409 | 429 | 500..=599 => Attempt::Retry { detail: format!("HTTP {status}: {}", snippet(&text)), retry_after },
            401 | 403 | 404 => Attempt::Fatal(format!(
                "{} answered HTTP {status}: {}\n  hint: check OPENAI_BASE_URL, OPENAI_API_KEY and the model name",
                self.url,
                snippet(&text)
            )),
            _ => Attempt::Refused(format!("HTTP {status}: {}", snippet(&text))),
        }
    }

    /// One logical request with retries.
    async fn complete_n(&self, request: &ChatRequest, call_id: &str, n: u32) -> Result<Completion, LlmError> {
        let policy = &self.settings.retry;
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (detail, retry_after) = match self.attempt(request, n).await {
                Attempt::Done(mut completion) => {
                    completion.latency_ms = Some(started.elapsed().as_millis() as i64);
                    completion.attempts = attempts;
                    return Ok(completion);
                }
                Attempt::Fatal(detail) => return Err(LlmError::Fatal(detail)),
                Attempt::Refused(detail) => {
                    return Err(LlmError::Refused { stage: request.stage.clone(), label: request.label.clone(), detail });
                }
                Attempt::Retry { detail, retry_after } => (detail, retry_after),
            };
            if attempts >= policy.max_attempts {
                return Err(LlmError::Exhausted {
                    stage: request.stage.clone(),
                    label: request.label.clone(),
                    attempts,
                    last: detail,
                });
            }
            let wait = backoff(policy.initial_backoff, policy.max_backoff, call_id, attempts);
            tokio::time::sleep(retry_after.map_or(wait, |after| after.max(wait))).await;
        }
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    async fn complete(&self, request: &ChatRequest, call_id: &str) -> Result<Completion, LlmError> {
        if self.settings.n_per_request || request.n <= 1 {
            return self.complete_n(request, call_id, request.n).await;
        }
        // One request per completion, each with its own seed so the samples differ.
        let mut total =
            Completion { choices: Vec::new(), prompt_tokens: None, completion_tokens: None, latency_ms: None, attempts: 0 };
        for sample in 0..request.n {
            let mut single = request.clone();
            single.sampling.seed = Some(request.sampling.seed.unwrap_or(0).wrapping_add(u64::from(sample)));
            let part = self.complete_n(&single, &format!("{call_id}/{sample}"), 1).await?;
            total.choices.extend(part.choices);
            total.prompt_tokens = add(total.prompt_tokens, part.prompt_tokens);
            total.completion_tokens = add(total.completion_tokens, part.completion_tokens);
            total.latency_ms = add(total.latency_ms, part.latency_ms);
            total.attempts += part.attempts;
        }
        Ok(total)
    }

    fn in_flight(&self) -> usize {
        self.settings.in_flight
    }

    fn live(&self) -> bool {
        true
    }
}

enum Attempt {
    Done(Completion),
    Retry { detail: String, retry_after: Option<Duration> },
    Refused(String),
    Fatal(String),
}

fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, None) => None,
        _ => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

#[derive(Deserialize)]
struct WireCompletion {
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
}

/// The completion in a 2xx body, or why the body is broken (a retryable failure).
fn parse_completion(body: &str) -> Result<Completion, String> {
    let wire: WireCompletion =
        serde_json::from_str(body).map_err(|e| format!("the body is not a chat completion ({e}): {}", snippet(body)))?;
    if wire.choices.is_empty() {
        return Err("the completion has no choices".into());
    }
    let mut choices = wire.choices;
    choices.sort_by_key(|c| c.index);
    Ok(Completion {
        choices: choices.into_iter().map(|c| c.message.content.unwrap_or_default()).collect(),
        prompt_tokens: wire.usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: wire.usage.as_ref().and_then(|u| u.completion_tokens),
        latency_ms: None,
        attempts: 0,
    })
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "broken body"
    } else {
        "request failed"
    };
    let mut detail = format!("{kind}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    detail
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_parse_in_choice_order_and_broken_bodies_are_retryable() {
        let body = r#"{"choices":[{"index":1,"message":{"content":"b"}},{"index":0,"message":{"content":"a"}}],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        let completion = parse_completion(body).unwrap();
        assert_eq!(completion.choices, ["a", "b"]);
        assert_eq!((completion.prompt_tokens, completion.completion_tokens), (Some(7), Some(3)));
        assert!(parse_completion(r#"{"choices":[]}"#).unwrap_err().contains("no choices"));
        assert!(parse_completion("<html>bad gateway</html>").unwrap_err().contains("not a chat completion"));
        assert!(parse_completion(r#"{"choices":[{"index":0,"message":{"content":"a"#).is_err());
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("-1"), None);
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon).unwrap();
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }
}
