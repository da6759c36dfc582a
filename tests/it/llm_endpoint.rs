//! `--llm openai` against an OpenAI-compatible server on loopback that misbehaves on purpose: 429
//! with `Retry-After`, 500s, a stalled connection, a truncated body, a non-JSON body, an empty
//! choice list, and a problem whose every attempt fails. The build finishes, every problem ends in
//! a table, no request is retried before it may be, answers are recorded before use, and a rerun
//! pays for nothing twice.

use crate::util::table_bytes;
use crate::util::{codegym, count, repo, sql_rows};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server does with one attempt.
#[derive(Debug, Clone)]
enum Behaviour {
    Answer(Vec<String>),
    Status { code: u16, retry_after: Option<u64> },
    Stall,
    Truncated(Vec<String>),
    NotJson,
    NoChoices,
}

/// One attempt as the server saw it.
#[derive(Debug, Clone)]
struct Attempt {
    key: String,
    behaviour: String,
    /// The `Retry-After` the server sent, in seconds.
    retry_after: Option<u64>,
    /// Completions asked for.
    n: u64,
    arrived: Instant,
    answered: Instant,
}

/// The hand-written answers of one sample problem.
struct AuthoredProblem {
    id: String,
    question: String,
    env_name: String,
    env: String,
    configs: Vec<String>,
    oracles: Vec<String>,
}

/// Hand-written answers of some sample problems, found the way a model would be asked for them.
struct Authored {
    problems: Vec<AuthoredProblem>,
}

impl Authored {
    fn load(ids: &[&str]) -> Authored {
        let corpus = std::fs::read_to_string(repo().join("data-samples/corpus/problems.jsonl")).unwrap();
        let rows: Vec<serde_json::Value> = corpus.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let problems = ids
            .iter()
            .map(|id| {
                let row = rows.iter().find(|r| r["question_id"] == *id).unwrap();
                let dir = repo().join("data-samples/llm/authored").join(id);
                let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let env = read("env.md");
                let answer = env.rsplit("</think>").next().unwrap();
                let env_name = answer
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("class ")?.split_once("(gymnasium.Env)").map(|(n, _)| n.to_string()))
                    .unwrap_or_default();
                AuthoredProblem {
                    id: id.to_string(),
                    question: row["question"].as_str().unwrap().to_string(),
                    env_name,
                    env: env.clone(),
                    configs: vec![read("configs-1.md"), read("configs-2.md")],
                    oracles: vec![read("oracle-1.md"), read("oracle-2.md"), read("oracle-3.md")],
                }
            })
            .collect();
        Authored { problems }
    }

    /// (problem id, stage, answers) for a request's user message.
    fn answer(&self, user: &str, n: usize) -> Option<(String, &'static str, Vec<String>)> {
        for p in &self.problems {
            if user.contains("Rewrite the programming exercise") && user.contains(p.question.trim()) {
                return Some((p.id.clone(), "environment", vec![p.env.clone()]));
            }
            if user.contains(&format!("Now write the 15 lines for `{}`", p.env_name)) {
                return Some((p.id.clone(), "configs", p.configs[..n].to_vec()));
            }
            if user.contains(&format!("Now write `def solve(self):` for `{}`", p.env_name)) {
                return Some((p.id.clone(), "oracle", p.oracles[..n].to_vec()));
            }
        }
        None
    }
}

/// The misbehaviour script: by problem, stage and attempt number.
fn script(problem: &str, stage: &str, attempt: usize, answers: Vec<String>) -> Behaviour {
    match (problem, stage, attempt) {
        ("cgs_0002", "environment", _) => Behaviour::Status { code: 500, retry_after: None },
        ("cgs_0001", "environment", 0) => Behaviour::Status { code: 429, retry_after: Some(1) },
        ("cgs_0003", "environment", 0) => Behaviour::Status { code: 500, retry_after: None },
        ("cgs_0003", "environment", 1) => Behaviour::Truncated(answers),
        ("cgs_0009", "environment", 0) => Behaviour::Stall,
        ("cgs_0009", "environment", 1) => Behaviour::NotJson,
        (_, "configs", 0) => Behaviour::NoChoices,
        (_, "oracle", 0) => Behaviour::Status { code: 503, retry_after: Some(1) },
        _ => Behaviour::Answer(answers),
    }
}

fn completion(answers: &[String]) -> String {
    let choices: Vec<serde_json::Value> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| serde_json::json!({"index": i, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}))
        .collect();
    serde_json::json!({"object": "chat.completion", "choices": choices, "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}).to_string()
}

fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 65536];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
    let length: usize = headers.lines().find_map(|l| l.strip_prefix("content-length:"))?.trim().parse().ok()?;
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(String::from_utf8_lossy(&buffer[header_end..header_end + length]).into_owned())
}

fn respond(stream: &mut TcpStream, behaviour: &Behaviour) {
    let http = |code: u16, extra: &str, body: &str, sent: usize| {
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body.as_bytes()[..sent]);
        bytes
    };
    let bytes = match behaviour {
        Behaviour::Answer(answers) => {
            let body = completion(answers);
            http(200, "", &body, body.len())
        }
        Behaviour::Status { code, retry_after } => {
            let extra = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            let body = r#"{"error": {"message": "try again later"}}"#;
            http(*code, &extra, body, body.len())
        }
        Behaviour::Stall => {
            // Say nothing until the client gives up and closes the connection.
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = stream.read(&mut [0u8; 1]);
            return;
        }
        Behaviour::Truncated(answers) => {
            let body = completion(answers);
            http(200, "", &body, body.len() / 2)
        }
        Behaviour::NotJson => {
            let body = "<html><body>502 Bad Gateway</body></html>";
            http(200, "", body, body.len())
        }
        Behaviour::NoChoices => {
            let body = r#"{"object": "chat.completion", "choices": []}"#;
            http(200, "", body, body.len())
        }
    };
    let _ = stream.write_all(&bytes);
}

/// Counts attempts per request key: the first call for a key returns 0.
type AttemptOf<'a> = &'a dyn Fn(&str) -> usize;

/// Starts a server on loopback whose `handler` decides, per request, its key and what to do
/// (given how often that key was seen before); returns its base URL and the attempts it saw.
fn serve_with(
    handler: impl Fn(&serde_json::Value, AttemptOf) -> (String, Behaviour) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Attempt>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let handler = Arc::new(handler);
    let server_log = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (log, seen, handler) = (server_log.clone(), seen.clone(), handler.clone());
            std::thread::spawn(move || {
                let arrived = Instant::now();
                let Some(body) = read_request(&mut stream) else { return };
                let request: serde_json::Value = serde_json::from_str(&body).unwrap();
                let attempt_of = |key: &str| {
                    let mut seen = seen.lock().unwrap();
                    let count = seen.entry(key.to_string()).or_default();
                    *count += 1;
                    *count - 1
                };
                let (key, behaviour) = handler(&request, &attempt_of);
                let name = format!("{behaviour:?}").split(['(', ' ']).next().unwrap().to_string();
                let retry_after = match behaviour {
                    Behaviour::Status { retry_after, .. } => retry_after,
                    _ => None,
                };
                let n = request["n"].as_u64().unwrap_or(1);
                let record =
                    |answered| log.lock().unwrap().push(Attempt { key, behaviour: name, retry_after, n, arrived, answered });
                // Logged before the answer is written, so the client never sees an answer whose
                // attempt is not logged yet; a stalled attempt ends when the client gives up.
                if matches!(behaviour, Behaviour::Stall) {
                    respond(&mut stream, &behaviour);
                    record(Instant::now());
                } else {
                    record(Instant::now());
                    respond(&mut stream, &behaviour);
                }
            });
        }
    });
    (url, log)
}

/// The server of the build test: authored answers, delivered through the misbehaviour script.
fn misbehaving_server(authored: Authored) -> (String, Arc<Mutex<Vec<Attempt>>>) {
    serve_with(move |request, attempt_of| {
        let user = request["messages"][1]["content"].as_str().unwrap_or_default();
        let n = request["n"].as_u64().unwrap_or(1) as usize;
        let Some((problem, stage, answers)) = authored.answer(user, n) else {
            return ("unknown".into(), Behaviour::Status { code: 400, retry_after: None });
        };
        let key = format!("{problem}/{stage}");
        let attempt = attempt_of(&key);
        (key.clone(), script(&problem, stage, attempt, answers))
    })
}

const CONFIG: &str = r#"
preset = "kodcode"
[model]
model = "loopback-model"
[endpoint]
in_flight = 4
timeout_s = 1.5
max_attempts = 3
initial_backoff_ms = 200
max_backoff_ms = 1000
[synthesis]
config_samples = 2
oracle_samples = 3
"#;

fn write_corpus(path: PathBuf, ids: &[&str]) -> PathBuf {
    let corpus = std::fs::read_to_string(repo().join("data-samples/corpus/problems.jsonl")).unwrap();
    let rows: Vec<&str> =
        corpus.lines().filter(|l| ids.iter().any(|id| l.contains(&format!("\"question_id\": \"{id}\"")))).collect();
    assert_eq!(rows.len(), ids.len());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

/// `codegym build` of `corpus` into `data` with the test configuration and backend `llm`.
fn build(dir: &Path, corpus: &Path, data: &Path, llm: &str) -> std::process::Command {
    let config = dir.join("codegym.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut command = codegym();
    command.arg("build").arg("--config").arg(config).arg("--corpus").arg(corpus).args(["--llm", llm]).arg("--data").arg(data);
    command
}

fn live_build(dir: &Path, corpus: &Path, data: &Path, base_url: &str) -> std::process::Output {
    build(dir, corpus, data, "openai").env("OPENAI_BASE_URL", base_url).env("OPENAI_API_KEY", "test-key").output().unwrap()
}

#[test]
fn a_misbehaving_endpoint_slows_the_build_but_loses_nothing() {
    let ids = ["cgs_0001", "cgs_0002", "cgs_0003", "cgs_0009"];
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path().join("corpus.jsonl"), &ids);
    let data = dir.path().join("data");
    let (url, log) = misbehaving_server(Authored::load(&ids));
    let output = live_build(dir.path(), &corpus, &data, &url);
    crate::util::assert_success(&output, &["build", "--llm", "openai"]);

    // Every problem ends in a table: three environments, and a reject for the one whose every
    // attempt failed.
    let envs = sql_rows(&data, "SELECT source_id, status FROM environments ORDER BY source_id");
    assert_eq!(envs.iter().map(|e| e["source_id"].as_str().unwrap()).collect::<Vec<_>>(), ["cgs_0001", "cgs_0003", "cgs_0009"]);
    assert!(envs.iter().all(|e| e["status"] == "verified"), "{envs:?}");
    let failed = sql_rows(&data, "SELECT source_id, reason, detail FROM rejects WHERE stage = 'environment'");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!((failed[0]["source_id"].as_str(), failed[0]["reason"].as_str()), (Some("cgs_0002"), Some("llm_failed")));
    assert!(failed[0]["detail"].as_str().unwrap().contains("after 3 attempts"), "{failed:?}");

    // No request was retried before it was allowed to be.
    let attempts = log.lock().unwrap().clone();
    let mut by_key: HashMap<&str, Vec<&Attempt>> = HashMap::new();
    for attempt in &attempts {
        by_key.entry(attempt.key.as_str()).or_default().push(attempt);
    }
    for (key, tries) in &mut by_key {
        tries.sort_by_key(|a| a.arrived);
        for pair in tries.windows(2) {
            let gap = pair[1].arrived.saturating_duration_since(pair[0].answered);
            // Retry-After when given, else at least half the initial backoff (jitter).
            let least = pair[0].retry_after.map_or(Duration::from_millis(100), Duration::from_secs);
            assert!(gap >= least, "{key}: retried {gap:?} after a {} (at least {least:?})", pair[0].behaviour);
        }
    }
    let tries = |key: &str| by_key.get(key).map_or(0, Vec::len);
    assert_eq!(tries("cgs_0002/environment"), 3, "retries stop at max_attempts");
    assert_eq!(tries("cgs_0009/environment"), 3, "a stalled connection times out and is retried");
    assert_eq!(tries("cgs_0003/environment"), 3, "a truncated body is retried");

    // Calls carry their accounting; every answer was recorded.
    let calls =
        sql_rows(&data, "SELECT stage, attempts, latency_ms, prompt_tokens, cached FROM llm_calls ORDER BY stage, attempts");
    assert_eq!(calls.len(), 9, "{calls:?}");
    assert!(calls.iter().all(|c| c["cached"] == false && c["prompt_tokens"] == 1000), "{calls:?}");
    assert!(
        calls.iter().filter(|c| c["stage"] == "oracle").all(|c| c["attempts"] == 2 && c["latency_ms"].as_i64().unwrap() >= 1000)
    );
    let recorded: usize = std::fs::read_dir(data.join("llm"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().count())
        .sum();
    assert_eq!(recorded, 9, "one recording file per shard, every answer in one");

    // A rerun against an endpoint that is gone pays for nothing twice: it only asks again for
    // the request that never got an answer.
    let gone = "http://127.0.0.1:9/v1";
    let output = live_build(dir.path(), &corpus, &data, gone);
    crate::util::assert_success(&output, &["build", "--llm", "openai", "(rerun)"]);
    let runs = sql_rows(&data, "SELECT llm_requests FROM runs ORDER BY started_at");
    assert_eq!(runs.iter().map(|r| r["llm_requests"].as_i64().unwrap()).collect::<Vec<_>>(), [10, 1], "{runs:?}");
    assert_eq!(count(&data, "SELECT count(*) AS n FROM rejects WHERE reason = 'llm_failed'"), 1);

    // The recording replays offline into the same tables.
    // (Same file name: a problem's `source` is its corpus file's stem.)
    let answered = write_corpus(dir.path().join("answered/corpus.jsonl"), &["cgs_0001", "cgs_0003", "cgs_0009"]);
    let replayed = dir.path().join("replayed");
    let replay = format!("replay:{}", data.join("llm").display());
    crate::util::assert_success(&build(dir.path(), &answered, &replayed, &replay).output().unwrap(), &["build", &replay]);
    for table in ["environments", "task_configs", "oracle_candidates", "tool_call_stats"] {
        assert!(table_bytes(&data, table) == table_bytes(&replayed, table), "{table} differs after replay");
    }
}

fn request(user: &str, n: u32) -> codegym::llm::ChatRequest {
    codegym::llm::ChatRequest {
        stage: "oracle".into(),
        prompt_version: "oracle.v1".into(),
        entity_id: user.into(),
        label: format!("problem {user}"),
        messages: vec![codegym::llm::Message::new("user", user)],
        sampling: codegym::llm::Sampling { seed: Some(7), ..Default::default() },
        n,
    }
}

#[test]
fn servers_without_n_get_one_request_per_sample_and_setup_errors_stop_the_run() {
    use codegym::llm::{Client, LlmError, OpenAiBackend, OpenAiSettings, Recording, RetryPolicy};
    // A server that ignores `n` (one choice per request), refuses a prompt that is too long and
    // knows no key for "unauthorized".
    let (url, log) = serve_with(|request, attempt_of| {
        let user = request["messages"][0]["content"].as_str().unwrap().to_string();
        attempt_of(&user);
        let behaviour = match user.as_str() {
            "unauthorized" => Behaviour::Status { code: 401, retry_after: None },
            "too long" => Behaviour::Status { code: 400, retry_after: None },
            _ => Behaviour::Answer(vec![format!("seed {}", request["seed"])]),
        };
        (user, behaviour)
    });
    let settings = OpenAiSettings {
        base_url: url,
        api_key: Some("k".into()),
        in_flight: 2,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        },
        n_per_request: false,
    };
    let client = Client::new(Arc::new(OpenAiBackend::new(settings).unwrap()), Recording::default(), None);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let calls = runtime.block_on(client.complete_all(vec![request("sample", 3), request("too long", 1)], None)).unwrap();
    let sampled = calls[0].as_ref().unwrap();
    assert_eq!(sampled.completion.choices, ["seed 7", "seed 8", "seed 9"], "one request per sample, each its own seed");
    assert_eq!(sampled.completion.attempts, 3);
    let refused = calls[1].as_ref().unwrap_err();
    assert_eq!(refused.reason(), codegym::reasons::Reason::LlmRefused, "{refused}");
    assert!(refused.to_string().contains("problem too long"), "{refused}");
    let attempts = log.lock().unwrap().clone();
    assert_eq!(attempts.iter().filter(|a| a.key == "sample").map(|a| a.n).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(attempts.iter().filter(|a| a.key == "too long").count(), 1, "a 400 is not retried");

    let fatal = runtime.block_on(client.complete_all(vec![request("unauthorized", 1)], None)).unwrap_err();
    assert!(matches!(fatal, LlmError::Fatal(_)) && fatal.to_string().contains("OPENAI_API_KEY"), "{fatal}");
}

#[test]
fn a_wrong_endpoint_fails_before_any_work_and_an_unreachable_one_still_finishes_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path().join("corpus.jsonl"), &["cgs_0001"]);
    let data = dir.path().join("data");
    let output = live_build(dir.path(), &corpus, &data, "not a url");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("OPENAI_BASE_URL `not a url` is not a URL"), "{stderr}");
    assert!(!data.join("problems").exists(), "nothing was ingested before the backend was checked");

    // Nothing answers: the problem ends as a reject, and the build finishes without verifying.
    let output = live_build(dir.path(), &corpus, &data, "http://127.0.0.1:9/v1");
    crate::util::assert_success(&output, &["build", "--llm", "openai"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("no environments to verify"));
    let rejects = sql_rows(&data, "SELECT stage, reason FROM rejects");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!((rejects[0]["stage"].as_str(), rejects[0]["reason"].as_str()), (Some("environment"), Some("llm_failed")));
}
