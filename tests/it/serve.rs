//! `codegym serve` as trainers use it, on loopback, the server a real `codegym serve` process that
//! a guard kills whatever happens:
//! - OpenEnv's own runtime validator passes; OpenEnv's own Python client replays every kept
//!   configuration of the sample build through its stored oracle trajectory (the same observations
//!   as verification recorded, reward 1), a wrong Done gets 0, and the same configuration, seed
//!   and actions give the same observations;
//! - a release-style REST client (plain urllib) does the same through the CodeGym API;
//! - 256 concurrent sessions replay their oracles while sessions on an environment written to
//!   misbehave (loop, allocate, flood output, recurse when called with 13) trip their own verdicts,
//!   keep their state and still reach reward 1;
//! - bad input gets a clear error and nothing else; sessions restore from their pickled state
//!   when interpreters are evicted or idle; idle sessions are reaped; a token guards the server;
//!   SIGTERM stops it cleanly with the recording written; two servers recording into one
//!   directory at once keep every step of both, as SQL and DuckDB read it.
//!
//! The Python clients need OpenEnv's client (the current `openenv`, in `tests/requirements.txt`,
//! and the legacy `openenv-core`, in `tests/requirements-openenv-legacy.txt`, which `.ci/run`
//! installs): without it those tests are skipped with a note, and fail under CI. TRL's OpenEnv
//! harness, which drives OpenEnv's harness layer, is tested in `trl.rs`.

use crate::util::{Venv, codegym, dataset, repo, sample_build, sandbox, sql_rows, test_python, venv_python};
use codegym::dataset::Table;
use codegym::naming::{self, Named};
use codegym::sandbox::{Job, Limits};
use codegym::tables::{EnvironmentRow, TaskConfigRow};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A running `codegym serve`, killed when dropped.
pub(crate) struct Served {
    child: Child,
    /// `host:port` of OpenEnv and of the CodeGym API.
    pub(crate) openenv: String,
    pub(crate) codegym: String,
    /// What it printed before it was ready.
    banner: Vec<String>,
    stderr: PathBuf,
    /// The thread copying the server's stderr into the file: joined once the server exits, so
    /// the file holds its last lines.
    relay: Option<std::thread::JoinHandle<()>>,
    _scratch: tempfile::TempDir,
}

impl Served {
    pub(crate) fn start(data: &Path, extra: &[&str]) -> Served {
        let scratch = tempfile::tempdir().unwrap();
        let stderr = scratch.path().join("stderr");
        let mut child = codegym()
            .args(["serve", "--data", data.to_str().unwrap(), "--addr", "127.0.0.1:0", "--codegym-addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Status lines, the addresses and the ready line come on stderr (stdout is for data):
        // each line is kept in the file `stderr()` reads and passed on until the ready line.
        let (lines, ready) = std::sync::mpsc::channel();
        let piped = child.stderr.take().unwrap();
        let mut file = std::fs::File::create(&stderr).unwrap();
        let relay = std::thread::spawn(move || {
            for line in BufReader::new(piped).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = lines.send(line);
            }
        });
        let (mut openenv, mut codegym_api, mut banner) = (String::new(), String::new(), Vec::new());
        loop {
            let Ok(line) = ready.recv_timeout(Duration::from_secs(120)) else {
                let _ = child.kill();
                panic!("codegym serve did not get ready: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
            };
            if let Some(rest) = line.strip_prefix("codegym serve: OpenEnv at http://") {
                openenv = rest.split_whitespace().next().unwrap().to_string();
                codegym_api = rest.split("CodeGym API at http://").nth(1).unwrap().trim().to_string();
            }
            if line.contains("ready") {
                break;
            }
            banner.push(line);
        }
        Served { child, openenv, codegym: codegym_api, banner, stderr, relay: Some(relay), _scratch: scratch }
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(relay) = self.relay.take() {
                    relay.join().unwrap();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "codegym serve did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client script of `tests/data/serve` and returns the JSON summary it prints.
pub(crate) fn run_client(python: &str, script: &str, args: &[&str]) -> Value {
    let output = Command::new(python).arg(repo().join("tests/data/serve").join(script)).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(output.stdout.trim_ascii_end().rsplit(|&b| b == b'\n').next().unwrap()).unwrap()
}

/// A kept configuration and its stored oracle trajectory.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Replay {
    pub(crate) config_id: String,
    /// `{code_id}__{EnvName}@{json}`, and `EnvName@{json}` as stored.
    env_str: String,
    pub(crate) config: String,
    pub(crate) actions: Vec<String>,
    pub(crate) observations: Vec<String>,
    /// A near miss of the oracle's answer, of its type: Done with it must get 0.
    pub(crate) wrong_answer: Value,
    /// The environment's task text and tool names: what the first observation must show.
    pub(crate) task: String,
    pub(crate) tools: Vec<String>,
}

pub(crate) fn replays(data: &Path) -> Vec<Replay> {
    let data = dataset(data);
    let envs: Vec<EnvironmentRow> = data.read_table(Table::Environments).unwrap();
    let configs: Vec<TaskConfigRow> = data.read_table(Table::TaskConfigs).unwrap();
    let code_ids = naming::code_ids(envs.iter().map(Named::from));
    let env_of = |id: &str| envs.iter().find(|e| e.env_id == id).unwrap();
    configs
        .iter()
        .filter(|c| c.kept)
        .map(|c| {
            let env = env_of(&c.env_id);
            let pairs: Vec<(String, String)> = serde_json::from_str(c.oracle_trajectory.as_deref().unwrap()).unwrap();
            let done: Value = serde_json::from_str(&pairs.last().unwrap().0).unwrap();
            Replay {
                config_id: c.config_id.clone(),
                env_str: naming::env_str(&code_ids[&c.env_id], &c.env_name, &c.config),
                config: c.config.clone(),
                actions: pairs.iter().map(|(a, _)| a.clone()).collect(),
                observations: pairs.iter().map(|(_, o)| o.clone()).collect(),
                wrong_answer: near_miss(&done["parameters"]["answer"]),
                task: env.task_text.clone().unwrap(),
                tools: env.tools.clone(),
            }
        })
        .collect()
}

/// A wrong answer of `right`'s type, distinct from it even as a float: it must get reward 0.
fn near_miss(right: &Value) -> Value {
    match right {
        Value::Bool(b) => json!(!b),
        Value::Number(n) if n.is_i64() => json!(n.as_i64().unwrap() + 1),
        // Beyond 2^53 adding 1 is lost in a float (and an integer past 2^64 is one here): double it.
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            json!(if f.abs() < 1e15 { f + 1.0 } else { f * 2.0 })
        }
        Value::String(s) => json!(format!("{s}x")),
        Value::Array(items) => {
            let mut longer = items.clone();
            longer.push(items.last().cloned().unwrap_or(json!(0)));
            Value::Array(longer)
        }
        Value::Object(map) => {
            let mut more = map.clone();
            more.insert("codegym_extra".into(), json!(0));
            Value::Object(more)
        }
        Value::Null => json!("codegym-wrong-answer"),
    }
}

pub(crate) fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path
}

const MISBEHAVING: &str = "MisbehavingEnv";

/// The sample build plus `MisbehavingEnv` (tests/data/serve), verified by hand, with four kept
/// configurations `{"values": [i, 4, 5]}`, and the same environment as `UnpicklableEnv`, verified
/// but not servable, with one: a copy in `dir`.
fn with_misbehaving(dir: &Path) -> Vec<String> {
    let copied = Command::new("cp").arg("-r").arg(sample_build().join(".")).arg(dir).status().unwrap();
    assert!(copied.success(), "copy the sample build");
    let (mut envs, mut configs): (Vec<EnvironmentRow>, Vec<TaskConfigRow>) = (Vec::new(), Vec::new());
    let source = std::fs::read_to_string(repo().join("tests/data/serve/misbehaving_env.py")).unwrap();
    let described =
        sandbox().run(Job::call("describe", json!({ "source": source, "env_name": MISBEHAVING }), Limits::default())).unwrap();
    let described = described.result.unwrap_or_else(|| panic!("describe failed: {:?}", described.detail));
    let tools: Vec<String> = serde_json::from_value(described["tools"].clone()).unwrap();
    // Planted as verified by the current verifier: what it does wrong is for the server to survive.
    envs.push(EnvironmentRow {
        status: "verified".into(),
        servable: Some(true),
        verifier: Some(codegym::verify::VerifySettings::default().verifier()),
        tool_count: tools.len() as i32,
        tools,
        tool_docs: described["tool_docs"].as_str().unwrap().into(),
        ..EnvironmentRow::pending("misbehaving".into(), "tests".into(), "misbehaving".into(), MISBEHAVING.into(), source)
    });
    let mine: Vec<TaskConfigRow> = (0..4)
        .map(|i| TaskConfigRow {
            kept: true,
            ..TaskConfigRow::pending(
                "misbehaving",
                MISBEHAVING,
                format!("{MISBEHAVING}@{{\"values\": [{i}, 4, 5]}}"),
                "easy",
                None,
            )
        })
        .collect();
    let ids = mine.iter().map(|c| c.config_id.clone()).collect();
    configs.extend(mine);
    let unpicklable = EnvironmentRow {
        env_id: "unpicklable".into(),
        env_name: "UnpicklableEnv".into(),
        servable: Some(false),
        serve_detail: Some("TypeError: cannot pickle 'generator' object".into()),
        ..envs[0].clone()
    };
    configs.push(TaskConfigRow {
        kept: true,
        ..TaskConfigRow::pending("unpicklable", "UnpicklableEnv", "UnpicklableEnv@{}".into(), "easy", None)
    });
    envs.push(unpicklable);
    let data = dataset(dir);
    data.upsert(Table::Environments, envs, |env| data.shard_of(&env.env_id)).unwrap();
    data.upsert(Table::TaskConfigs, configs, |config| data.shard_of(&config.env_id)).unwrap();
    ids
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap().0
}

/// The next JSON message, or `{"closed": code, "reason": ...}` when the server closes.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Close(frame))) => {
                return json!({ "closed": frame.as_ref().map(|f| u16::from(f.code)), "reason": frame.map(|f| f.reason.to_string()) });
            }
            Some(Ok(_)) => continue,
            other => return json!({ "closed": null, "reason": format!("{other:?}") }),
        }
    }
}

async fn ask(ws: &mut Ws, message: Value) -> Value {
    ws.send(Message::Text(message.to_string().into())).await.unwrap();
    next_json(ws).await
}

async fn step(ws: &mut Ws, name: &str, parameters: Value) -> Value {
    ask(ws, json!({ "type": "step", "data": { "name": name, "parameters": parameters } })).await
}

fn text(answer: &Value) -> &str {
    answer["data"]["observation"]["text"].as_str().unwrap_or_else(|| panic!("not an observation: {answer}"))
}

/// Replays a stored oracle over the WebSocket: every observation as stored, reward 1 at the end.
async fn replay_ws(addr: String, replay: Replay) {
    let mut ws = connect(&addr).await;
    let reset = ask(&mut ws, json!({ "type": "reset", "data": { "config_id": replay.config_id } })).await;
    assert_eq!(reset["type"], "observation", "{reset}");
    let mut last = Value::Null;
    for (action, stored) in replay.actions.iter().zip(&replay.observations) {
        // The action as stored, byte for byte: its numbers reach the environment as the oracle wrote them.
        ws.send(Message::Text(format!(r#"{{"type": "step", "data": {action}}}"#).into())).await.unwrap();
        last = next_json(&mut ws).await;
        assert_eq!(text(&last), stored, "{}: {action}", replay.config);
    }
    assert_eq!((&last["data"]["reward"], &last["data"]["done"]), (&json!(1.0), &json!(true)), "{}", replay.config);
}

/// A session on `MisbehavingEnv` that calls `tool(n=13)` mid-episode: the call gets an error
/// observation with `verdict`, the state before it stands, and the episode still earns 1.
async fn misbehave_ws(addr: String, config_id: String, first: i64, tool: &'static str, verdict: &'static str) {
    let mut ws = connect(&addr).await;
    let reset = ask(&mut ws, json!({ "type": "reset", "data": { "config_id": config_id } })).await;
    assert_eq!(reset["type"], "observation", "{reset}");
    assert_eq!(text(&step(&mut ws, "Accumulate", json!({ "value": first })).await), first.to_string());
    let bad = step(&mut ws, tool, json!({ "n": 13 })).await;
    assert_eq!(bad["data"]["observation"]["error"], verdict, "{tool}: {bad}");
    assert_eq!(bad["data"]["done"], false, "{bad}");
    assert!(text(&bad).contains("as it was before this call"), "{bad}");
    assert_eq!(text(&step(&mut ws, "Observe", json!({})).await), format!("3 values; total so far {first}"), "{tool}: state lost");
    assert_eq!(
        step(&mut ws, tool, json!({ "n": 1 })).await["data"]["observation"]["error"],
        Value::Null,
        "{tool} works otherwise"
    );
    for value in [4, 5] {
        step(&mut ws, "Accumulate", json!({ "value": value })).await;
    }
    let done = step(&mut ws, "Done", json!({ "answer": first + 9 })).await;
    assert_eq!((&done["data"]["reward"], &done["data"]["done"]), (&json!(1.0), &json!(true)), "{tool}: {done}");
}

/// An HTTP client (reqwest wants a TLS crypto provider installed even for plain HTTP).
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `openenv validate` of `venv`'s OpenEnv passes against the server, its GenericEnvClient replays
/// every kept configuration (each reset observation opening with the task, the instructions and
/// the tools), and its MCPToolClient lists and calls the tools of one configuration of every
/// environment to reward 1.
fn openenv_clients_pass(venv: Venv, validate_args: &[&str]) {
    let Some(python) = venv_python(venv, &["openenv.core.mcp_client"]) else { return };
    let served = Served::start(sample_build(), &[]);
    let url = format!("http://{}", served.openenv);
    let validate = Command::new(Path::new(&python).with_file_name("openenv"))
        .args(["validate", "--url", &url])
        .args(validate_args)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&validate.stdout);
    assert!(validate.status.success(), "openenv validate failed:\n{report}\n{}", String::from_utf8_lossy(&validate.stderr));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!((report["passed"].as_bool(), report["mode"].as_str()), (Some(true), Some("production")), "{report}");

    let replays = replays(sample_build());
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "workload.json", &replays);
    let summary = run_client(&python, "openenv_client.py", &[&url, workload.to_str().unwrap()]);
    assert_eq!(summary["rewarded"].as_u64(), Some(replays.len() as u64), "{summary}");
    assert_eq!(summary["wrong_done_zero"].as_u64(), Some(replays.len() as u64), "{summary}");
    assert_eq!(summary["deterministic"], true);
    assert!(replays.len() >= 300, "the sample build keeps {} configurations", replays.len());

    let one_each = one_per_environment(replays);
    let workload = write_json(scratch.path(), "one-each.json", &one_each);
    let summary = run_client(&python, "openenv_mcp_client.py", &[&url, workload.to_str().unwrap()]);
    assert_eq!(summary["rewarded"].as_u64(), Some(one_each.len() as u64), "{summary}");
}

#[test]
fn legacy_openenv_core_validates_and_its_generic_and_mcp_clients_replay_the_sample_build() {
    openenv_clients_pass(Venv::OpenEnvLegacy, &[]);
}

#[test]
fn current_openenv_validates_and_its_generic_and_mcp_clients_replay_the_sample_build() {
    openenv_clients_pass(Venv::Tests, &["--json"]);
}

/// The first kept configuration of each environment whose task text no other environment
/// shares (a scripted policy tells episodes apart by their task).
pub(crate) fn one_per_environment(replays: Vec<Replay>) -> Vec<Replay> {
    let mut envs = std::collections::HashSet::new();
    let first: Vec<Replay> =
        replays.into_iter().filter(|r| envs.insert(r.env_str.split('@').next().unwrap().to_string())).collect();
    let mut tasks = std::collections::HashMap::new();
    for replay in &first {
        *tasks.entry(replay.task.clone()).or_insert(0) += 1;
    }
    first.into_iter().filter(|r| tasks[&r.task] == 1).collect()
}

/// The official MCP Python SDK, over Streamable HTTP, as any MCP client connects: `initialize`
/// on a URL naming the configuration, `tools/list` without a selector, `tools/call` to reward 1.
#[test]
fn an_mcp_sdk_client_initializes_lists_and_calls_the_tools_of_every_environment() {
    let Some(python) = test_python(&["mcp.client.streamable_http"]) else { return };
    let served = Served::start(sample_build(), &[]);
    let one_each = one_per_environment(replays(sample_build()));
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "one-each.json", &one_each);
    let url = format!("http://{}", served.openenv);
    let summary = run_client(&python, "mcp_sdk_client.py", &[&url, workload.to_str().unwrap()]);
    assert_eq!(summary["rewarded"].as_u64(), Some(one_each.len() as u64), "{summary}");
    assert!(one_each.len() >= 20, "{} environments", one_each.len());
}

/// verifiers' OpenEnv environment rolls out one configuration of every environment, its model a
/// scripted policy that replays the oracle: each earns reward 1, and the model's first turn holds
/// the task text (first in the observation) and the tools.
#[test]
fn verifiers_openenv_environment_rolls_out_every_environment_to_reward_1() {
    let Some(python) = venv_python(Venv::Verifiers, &["verifiers.v1.tasksets.openenv", "openai"]) else { return };
    let served = Served::start(sample_build(), &[]);
    let one_each = one_per_environment(replays(sample_build()));
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "one-each.json", &one_each);
    let url = format!("http://{}", served.openenv);
    let summary = run_client(&python, "verifiers_rollout.py", &[&url, workload.to_str().unwrap()]);
    assert_eq!(summary["rewarded"].as_u64(), Some(one_each.len() as u64), "{summary}");
    assert_eq!(summary["first_turns_checked"].as_u64(), Some(one_each.len() as u64), "{summary}");
}

#[test]
fn a_release_style_rest_client_replays_every_kept_configuration() {
    let Some(python) = test_python(&["json"]) else { return };
    let served = Served::start(sample_build(), &[]);
    let mut replays = replays(sample_build());
    // Half the episodes name their configuration the short way (each class is served once here).
    for replay in replays.iter_mut().step_by(2) {
        replay.env_str = replay.config.clone();
    }
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "workload.json", &replays);
    let url = format!("http://{}", served.codegym);
    let summary = run_client(&python, "rest_client.py", &[&url, workload.to_str().unwrap()]);
    assert_eq!(summary["rewarded"].as_u64(), Some(replays.len() as u64), "{summary}");
}

#[test]
fn sessions_that_misbehave_trip_their_own_verdicts_among_256_sound_ones() {
    let data = tempfile::tempdir().unwrap();
    let misbehaving = with_misbehaving(data.path());
    let served = Served::start(data.path(), &["--step-timeout-ms", "2000"]);
    let sound: Vec<Replay> = replays(sample_build()).into_iter().cycle().take(248).collect();
    let kinds = [("Spin", "timeout"), ("Grow", "memory"), ("Shout", "output_limit"), ("Dive", "error")];
    let started = Instant::now();
    runtime().block_on(async {
        let mut sessions = Vec::new();
        for replay in sound {
            sessions.push(tokio::spawn(replay_ws(served.openenv.clone(), replay)));
        }
        for (i, (tool, verdict)) in kinds.iter().cycle().take(8).enumerate() {
            let config = misbehaving[i % misbehaving.len()].clone();
            sessions.push(tokio::spawn(misbehave_ws(served.openenv.clone(), config, (i % 4) as i64, tool, verdict)));
        }
        assert_eq!(sessions.len(), 256);
        for session in sessions {
            session.await.unwrap();
        }
    });
    eprintln!("256 concurrent sessions in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_else() {
    let data = tempfile::tempdir().unwrap();
    let misbehaving = with_misbehaving(data.path());
    let served = Served::start(data.path(), &["--step-timeout-ms", "1000", "--max-observation-kb", "1", "--max-sessions", "3"]);
    assert!(
        served.banner.iter().any(|l| l.contains("1 verified environments not servable (1 configurations)")),
        "{:?}",
        served.banner
    );
    assert!(
        served.stderr().contains("not servable: UnpicklableEnv: TypeError: cannot pickle 'generator' object"),
        "{}",
        served.stderr()
    );
    let runtime = runtime();
    let _open = runtime.block_on(async {
        let mut ws = connect(&served.openenv).await;
        let error = |answer: &Value, code: &str, says: &str| {
            assert_eq!((answer["type"].as_str(), answer["data"]["code"].as_str()), (Some("error"), Some(code)), "{answer}");
            assert!(answer["data"]["message"].as_str().unwrap().contains(says), "{answer} does not say {says:?}");
        };
        ws.send(Message::Text("{not json".into())).await.unwrap();
        error(&next_json(&mut ws).await, "INVALID_JSON", "Invalid JSON");
        error(&ask(&mut ws, json!({ "type": "dance" })).await, "UNKNOWN_TYPE", "Unknown message type: dance");
        error(&step(&mut ws, "Observe", json!({})).await, "EXECUTION_ERROR", "no episode");
        error(
            &ask(&mut ws, json!({ "type": "reset", "data": { "config_id": "nope" } })).await,
            "EXECUTION_ERROR",
            "unknown config_id `nope`",
        );
        let unknown_env = ask(&mut ws, json!({ "type": "reset", "data": { "env_str": "NoSuchEnv@{}" } })).await;
        error(&unknown_env, "EXECUTION_ERROR", "no environment `NoSuchEnv` is served");
        let unservable = ask(&mut ws, json!({ "type": "reset", "data": { "env_str": "UnpicklableEnv@{}" } })).await;
        error(&unservable, "EXECUTION_ERROR", "no environment `UnpicklableEnv` is served");
        let reset =
            ask(&mut ws, json!({ "type": "reset", "data": { "env_str": format!("{MISBEHAVING}@{{\"values\": [0, 4, 5]}}") } }))
                .await;
        assert_eq!(reset["type"], "observation", "{reset}");
        assert_eq!(reset["data"]["done"], false);
        assert_eq!(misbehaving.len(), 4);

        let unknown = step(&mut ws, "Fly", json!({})).await;
        assert_eq!(unknown["data"]["observation"]["error"], "unknown_tool", "{unknown}");
        assert!(text(&unknown).contains("unknown tool `Fly`. The tools are: Observe, Get, Accumulate"), "{unknown}");
        let echo = step(&mut ws, "Echo", json!({ "size": 5000 })).await;
        assert_eq!(echo["data"]["observation"]["truncated"], true, "{echo}");
        assert!(
            text(&echo).starts_with(&"y".repeat(1024)) && text(&echo).contains("cut to its first 1024 bytes of 5000"),
            "{echo}"
        );
        let huge = step(&mut ws, "Echo", json!({ "size": "y".repeat(10 << 20) })).await;
        error(&huge, "VALIDATION_ERROR", "over the limit of 1048576 bytes");
        error(&ask(&mut ws, json!({ "type": "step", "data": { "name": 5 } })).await, "VALIDATION_ERROR", "Invalid message");
        let state = ask(&mut ws, json!({ "type": "state" })).await;
        assert_eq!(state["data"]["step_count"], 2, "refused messages are no steps: {state}");
        let done = step(&mut ws, "Done", json!({ "answer": 9 })).await;
        assert_eq!((&done["data"]["reward"], &done["data"]["done"]), (&json!(1.0), &json!(true)), "{done}");
        error(&step(&mut ws, "Observe", json!({})).await, "EXECUTION_ERROR", "the episode is over");

        // Capacity: 3 sessions at most; a client that disconnects mid-step frees its slot.
        let mut second = connect(&served.openenv).await;
        assert_eq!(ask(&mut second, json!({ "type": "state" })).await["type"], "state");
        let mut leaving = connect(&served.openenv).await;
        ask(&mut leaving, json!({ "type": "reset", "data": { "config_id": misbehaving[1] } })).await;
        let mut fourth = connect(&served.openenv).await;
        let full = next_json(&mut fourth).await;
        error(&full, "CAPACITY_REACHED", "Server at capacity: 3/3 sessions active");
        leaving
            .send(Message::Text(
                json!({ "type": "step", "data": { "name": "Spin", "parameters": { "n": 13 } } }).to_string().into(),
            ))
            .await
            .unwrap();
        drop(leaving);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut again = loop {
            let mut next = connect(&served.openenv).await;
            let state = ask(&mut next, json!({ "type": "state" })).await;
            if state["type"] == "state" {
                break next;
            }
            assert!(Instant::now() < deadline, "the slot of a client that left mid-step was never freed: {state}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let reset = ask(&mut again, json!({ "type": "reset", "data": { "config_id": misbehaving[2] } })).await;
        assert_eq!(text(&step(&mut again, "Observe", json!({})).await), "3 values; total so far 0", "{reset}");
        (ws, second, again)
    });

    let http = http_client();
    let rest = |path: &str, body: &str| {
        let request = http.post(format!("http://{}{path}", served.codegym)).body(body.to_string());
        runtime.block_on(async {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap())
        })
    };
    let refused = |(status, body): (u16, Value), expected: u16, says: &str| {
        assert_eq!(status, expected, "{body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body} does not say {says:?}");
    };
    refused(rest("/start", "{not json"), 400, "malformed JSON body");
    refused(rest("/step", r#"{"instance_id": "nope", "action": "{\"name\": \"Observe\"}"}"#), 404, "unknown instance_id `nope`");
    refused(rest("/step", r#"{"instance_id": "nope", "action": "Observe()"}"#), 400, "malformed action");
    refused(rest("/steps", "{}"), 404, "no endpoint POST /steps");
    let huge = json!({ "instance_id": "nope", "action": format!("{{\"name\": \"{}\"}}", "y".repeat(10 << 20)) });
    refused(rest("/step", &huge.to_string()), 413, "over the limit of 1048576 bytes");
    // Three sessions are open on the WebSocket side: the REST API shares the capacity.
    refused(rest("/get_instance", "{}"), 429, "Server at capacity");
    let mcp = |body: &str| rest_mcp(&runtime, &served.openenv, body);
    assert_eq!(mcp("{}")["error"]["code"], -32600);
    assert_eq!(mcp("not json")["error"]["code"], -32700);
    assert_eq!(mcp(r#"{"jsonrpc": "2.0", "id": 1, "method": "fly"}"#)["error"]["code"], -32601);
    let tools =
        mcp(&json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "env_name": MISBEHAVING } }).to_string());
    let accumulate = tools["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "Accumulate").unwrap().clone();
    assert_eq!(accumulate["inputSchema"]["properties"]["value"]["type"], "integer", "{tools}");
    let call = mcp(r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "Observe"}}"#);
    assert!(call["error"]["message"].as_str().unwrap().contains("session_id"), "{call}");
    let stateless = runtime.block_on(http_client().post(format!("http://{}/step", served.openenv)).body("{}").send()).unwrap();
    assert_eq!(stateless.status().as_u16(), 404, "OpenEnv's stateless endpoints are not served");
}

/// Posts `body` to OpenEnv's `/mcp`: always HTTP 200, a JSON-RPC answer.
fn rest_mcp(runtime: &tokio::runtime::Runtime, addr: &str, body: &str) -> Value {
    runtime.block_on(async {
        let response = http_client().post(format!("http://{addr}/mcp")).body(body.to_string()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        answer
    })
}

/// An action with its parameters as written (serde_json would read a 20-digit integer as a float).
#[derive(serde::Deserialize)]
struct RawAction {
    name: String,
    parameters: Option<Box<serde_json::value::RawValue>>,
}

#[test]
fn mcp_lists_and_calls_tools_over_http_and_the_websocket() {
    let served = Served::start(sample_build(), &[]);
    let runtime = runtime();
    let mcp = |body: String| rest_mcp(&runtime, &served.openenv, &body);
    // An oracle whose arguments hold integers past 2^64: they must reach the environment exact.
    let replay = replays(sample_build())
        .into_iter()
        .find(|r| r.actions.iter().any(|a| a.split(|c: char| !c.is_ascii_digit()).any(|digits| digits.len() >= 20)))
        .expect("the sample build has an oracle with a 20-digit argument");
    let create = mcp(
        json!({ "jsonrpc": "2.0", "id": 1, "method": "openenv/session/create", "params": { "config_id": replay.config_id } })
            .to_string(),
    );
    let session = create["result"]["session_id"].as_str().unwrap_or_else(|| panic!("{create}")).to_string();
    let listed =
        mcp(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "session_id": session } }).to_string());
    assert!(!listed["result"]["tools"].as_array().unwrap().is_empty(), "{listed}");
    for (i, (action, stored)) in replay.actions.iter().zip(&replay.observations).enumerate() {
        let call: RawAction = serde_json::from_str(action).unwrap();
        let arguments = call.parameters.as_deref().map_or("{}", |p| p.get());
        let body = format!(
            r#"{{"jsonrpc": "2.0", "id": {i}, "method": "tools/call", "params": {{"session_id": "{session}", "name": {}, "arguments": {arguments}}}}}"#,
            json!(call.name)
        );
        let called = mcp(body);
        assert_eq!(called["result"]["content"][0]["text"], json!(stored), "{}: {action}", replay.config);
    }
    let closed =
        mcp(json!({ "jsonrpc": "2.0", "id": 9, "method": "openenv/session/close", "params": { "session_id": session } })
            .to_string());
    assert_eq!(closed["result"]["closed"], true, "{closed}");
    let gone = mcp(
        json!({ "jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": { "session_id": session, "name": "Observe" } })
            .to_string(),
    );
    assert!(gone["error"]["message"].as_str().unwrap().contains("Unknown session_id"), "{gone}");

    runtime.block_on(async {
        let mut ws = connect(&served.openenv).await;
        ask(&mut ws, json!({ "type": "reset", "data": { "config_id": replay.config_id } })).await;
        let listed = ask(&mut ws, json!({ "type": "mcp", "data": { "jsonrpc": "2.0", "id": 1, "method": "tools/list" } })).await;
        assert_eq!(listed["type"], "mcp", "{listed}");
        let first: Value = serde_json::from_str(&replay.actions[0]).unwrap();
        assert!(listed["data"]["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == first["name"]), "{listed}");
        let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": first["name"], "arguments": first["parameters"] } });
        let called = ask(&mut ws, json!({ "type": "mcp", "data": call })).await;
        assert_eq!(called["data"]["result"]["content"][0]["text"], json!(replay.observations[0]), "{called}");
        assert_eq!(ask(&mut ws, json!({ "type": "state" })).await["data"]["step_count"], 1, "an MCP call is a step");
    });
}

/// MCP's handshake and sessions over HTTP (initialize, a notification, `Mcp-Session-Id`, DELETE),
/// OpenEnv's MCP actions as WebSocket steps, a WebSocket attached to an HTTP session, and
/// `/schema` naming the tools.
#[test]
fn mcp_handshake_sessions_and_openenv_mcp_actions_work_as_clients_send_them() {
    let served = Served::start(sample_build(), &[]);
    let replay = replays(sample_build()).remove(0);
    let first: Value = serde_json::from_str(&replay.actions[0]).unwrap();
    let http = http_client();
    let base = format!("http://{}/mcp", served.openenv);
    runtime().block_on(async {
        let send = |url: String, session: Option<String>, body: Value| {
            let mut request = http.post(url).body(body.to_string());
            if let Some(session) = session {
                request = request.header("Mcp-Session-Id", session);
            }
            request.send()
        };
        let rpc = |id: u64, method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let url = format!("{base}?config_id={}", replay.config_id);
        let response = send(url, None, rpc(1, "initialize", json!({ "protocolVersion": "2025-03-26" }))).await.unwrap();
        let session = response.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let initialized: Value = response.bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        assert_eq!(initialized["result"]["protocolVersion"], "2025-03-26", "{initialized}");
        assert_eq!(initialized["result"]["capabilities"]["tools"], json!({ "listChanged": false }), "{initialized}");
        let notified = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let notified = send(base.clone(), Some(session.clone()), notified).await.unwrap();
        assert_eq!(notified.status().as_u16(), 202, "a notification gets no answer");
        assert!(notified.bytes().await.unwrap().is_empty());
        let listed: Value = send(base.clone(), Some(session.clone()), rpc(2, "tools/list", json!({}))).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        let names: Vec<&str> = listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, replay.tools, "{listed}");
        let call = rpc(3, "tools/call", json!({ "name": first["name"], "arguments": first["parameters"] }));
        let called: Value = send(base.clone(), Some(session.clone()), call).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        assert_eq!(called["result"]["content"][0]["text"], json!(replay.observations[0]), "{called}");
        let other = json!({ "jsonrpc": "2.0", "id": 4, "method": "initialize", "params": { "protocolVersion": "1999-01-01" } });
        let other: Value = send(base.clone(), None, other).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        assert_eq!(other["result"]["protocolVersion"], "2025-06-18", "an unknown version gets ours: {other}");
        let deleted = http.delete(&base).header("Mcp-Session-Id", &session).send().await.unwrap();
        assert_eq!(deleted.status().as_u16(), 200);
        let gone = send(base.clone(), Some(session.clone()), rpc(5, "tools/list", json!({}))).await.unwrap();
        assert_eq!(gone.status().as_u16(), 404, "a closed MCP session is gone");

        // OpenEnv 0.10's MCP client: a session created without a configuration, a WebSocket
        // attached to it that resets it, tools called over HTTP by its id.
        let created: Value = send(base.clone(), None, rpc(6, "openenv/session/create", json!({}))).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        let id = created["result"]["session_id"].as_str().unwrap().to_string();
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/ws?session_id={id}", served.openenv)).await.unwrap();
        let reset = ask(&mut ws, json!({ "type": "reset", "data": { "config_id": replay.config_id } })).await;
        // (The order of its members, task first, is checked by the Python clients: a Value sorts.)
        assert_eq!(reset["data"]["observation"]["task"], json!(replay.task), "{reset}");
        let call = rpc(7, "tools/call", json!({ "session_id": id, "name": first["name"], "arguments": first["parameters"] }));
        let called: Value = send(base.clone(), None, call).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        assert_eq!(called["result"]["content"][0]["text"], json!(replay.observations[0]), "{called}");
        assert_eq!(ask(&mut ws, json!({ "type": "state" })).await["data"]["step_count"], 1, "one session");
        // OpenEnv's MCP actions as steps (openenv-core 0.3's MCP client).
        let tools = ask(&mut ws, json!({ "type": "step", "data": { "type": "list_tools" } })).await;
        assert_eq!(tools["data"]["observation"]["tools"].as_array().unwrap().len(), replay.tools.len(), "{tools}");
        let call = json!({ "type": "step", "data": { "type": "call_tool", "tool_name": first["name"], "arguments": first["parameters"] } });
        let called = ask(&mut ws, call).await;
        assert_eq!(called["data"]["observation"]["tool_name"], first["name"], "{called}");
        let observed = &called["data"]["observation"];
        assert!(observed["result"].is_string() && observed["result"] == observed["text"], "{called}");
        assert_eq!(called["data"]["observation"]["error"], Value::Null, "{called}");
        let unknown = ask(&mut ws, json!({ "type": "step", "data": { "type": "call_tool", "tool_name": "NoSuchTool" } })).await;
        assert_eq!(unknown["data"]["observation"]["error"]["error_type"], "tool_not_found", "{unknown}");
        drop(ws);
        // The attached session outlives its socket; its HTTP creator closes it.
        let closed: Value = send(base.clone(), None, rpc(8, "openenv/session/close", json!({ "session_id": id }))).await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        assert_eq!(closed["result"]["closed"], true, "{closed}");

        let schema: Value = http.get(format!("http://{}/schema", served.openenv)).send().await.unwrap().bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
        let named = schema["action"]["properties"]["name"]["enum"].as_array().unwrap();
        assert!(replay.tools.iter().all(|tool| named.contains(&json!(tool))), "{schema}");
    });
}

#[test]
fn a_session_is_reachable_only_by_its_creator_and_ids_are_unguessable() {
    let served = Served::start(sample_build(), &[]);
    let replay = replays(sample_build()).remove(0);
    let http = http_client();
    let mcp = |body: Value| {
        let request = http.post(format!("http://{}/mcp", served.openenv)).body(body.to_string()).send();
        async move { serde_json::from_slice::<Value>(&request.await.unwrap().bytes().await.unwrap()).unwrap() }
    };
    let rpc = |method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let observe = |session: &str| rpc("tools/call", json!({ "session_id": session, "name": "Observe" }));
    let close = |session: &str| rpc("openenv/session/close", json!({ "session_id": session }));
    let unknown = |answer: &Value| answer["error"]["message"].as_str().is_some_and(|m| m.contains("Unknown session_id"));
    runtime().block_on(async {
        let mut ws = connect(&served.openenv).await;
        ask(&mut ws, json!({ "type": "reset", "data": { "config_id": replay.config_id } })).await;
        let own = ask(&mut ws, json!({ "type": "mcp", "data": rpc("openenv/session/create", json!({})) })).await;
        let socket_session = own["data"]["result"]["session_id"].as_str().unwrap().to_string();
        // Another client that learnt the WebSocket session's id reaches nothing with it.
        assert!(unknown(&mcp(observe(&socket_session)).await), "a WebSocket session stepped over HTTP");
        assert!(unknown(&mcp(close(&socket_session)).await), "a WebSocket session closed over HTTP");
        let mut other = connect(&served.openenv).await;
        let stolen = ask(&mut other, json!({ "type": "mcp", "data": observe(&socket_session) })).await;
        assert!(unknown(&stolen["data"]), "a WebSocket session stepped from another socket: {stolen}");
        // ... and the session goes on, for its own socket only.
        let mine = ask(&mut ws, json!({ "type": "mcp", "data": observe(&socket_session) })).await;
        assert!(mine["data"]["result"].is_object(), "{mine}");

        // A REST instance is reached by its id on the REST API only, and an MCP session opened
        // over HTTP on MCP only.
        let instance = post(&http, &served.codegym, "/get_instance", json!({})).await;
        let instance = instance["instance_id"].as_str().unwrap().to_string();
        assert!(unknown(&mcp(observe(&instance)).await), "a REST instance stepped over MCP");
        let created = mcp(rpc("openenv/session/create", json!({ "config_id": replay.config_id }))).await;
        let mcp_session = created["result"]["session_id"].as_str().unwrap().to_string();
        let response = http
            .post(format!("http://{}/start", served.codegym))
            .body(json!({ "instance_id": mcp_session, "env_str": replay.env_str }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "an MCP session started over REST");
        for id in [&socket_session, &instance, &mcp_session] {
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}: 128 random bits, in hex");
        }
    });
}

#[test]
fn an_empty_token_is_refused_at_start() {
    for addr in ["127.0.0.1:0", "0.0.0.0:0"] {
        let output = codegym()
            .args(["serve", "--data", sample_build().to_str().unwrap(), "--addr", addr, "--codegym-addr", addr, "--token", ""])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("the token is empty"), "{stderr}");
    }
}

#[test]
fn a_step_that_grows_the_state_past_the_cap_fails_and_the_session_keeps_its_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    with_misbehaving(dir.path());
    let served = Served::start(dir.path(), &["--max-state-kb", "16"]);
    runtime().block_on(async {
        let mut ws = connect(&served.openenv).await;
        let env_str = format!("{MISBEHAVING}@{{\"values\": [0, 4, 5]}}");
        assert_eq!(ask(&mut ws, json!({ "type": "reset", "data": { "env_str": env_str } })).await["type"], "observation");
        assert_eq!(text(&step(&mut ws, "Hoard", json!({ "size": 4000 })).await), "4000");
        let grown = step(&mut ws, "Hoard", json!({ "size": 40000 })).await;
        assert_eq!(grown["data"]["observation"]["error"], "state_too_large", "{grown}");
        assert!(text(&grown).contains("past the 16 KiB this server keeps"), "{grown}");
        // The next step starts from the last good state: 4000 kept, not 44000.
        assert_eq!(text(&step(&mut ws, "Hoard", json!({ "size": 1 })).await), "4001");
        let done = step(&mut ws, "Done", json!({ "answer": 9 })).await;
        assert_eq!(done["data"]["reward"], 1.0, "{done}");
    });
}

/// A CodeGym API call that must succeed.
pub(crate) async fn post(http: &reqwest::Client, addr: &str, path: &str, body: Value) -> Value {
    let response = http.post(format!("http://{addr}{path}")).body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

#[test]
fn sessions_come_back_from_their_pickled_state_after_eviction_or_idleness() {
    let served = Served::start(sample_build(), &["--max-live", "3", "--interpreter-idle-s", "1"]);
    let replays: Vec<Replay> = replays(sample_build()).into_iter().take(6).collect();
    let http = http_client();
    runtime().block_on(async {
        let mut instances = Vec::new();
        for replay in &replays {
            let instance = post(&http, &served.codegym, "/get_instance", json!({})).await["instance_id"].clone();
            post(&http, &served.codegym, "/start", json!({ "instance_id": instance, "env_str": replay.env_str })).await;
            instances.push(instance);
        }
        // Six sessions take turns on three interpreters: every step restores its session.
        let longest = replays.iter().map(|r| r.actions.len()).max().unwrap();
        for i in 0..longest {
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(2500)).await; // every interpreter is given back
            }
            for (replay, instance) in replays.iter().zip(&instances).filter(|(r, _)| i < r.actions.len()) {
                let answer =
                    post(&http, &served.codegym, "/step", json!({ "instance_id": instance, "action": replay.actions[i] })).await;
                assert_eq!(answer["observation"], replay.observations[i], "{} step {i}", replay.config);
            }
        }
        for instance in &instances {
            assert_eq!(
                post(&http, &served.codegym, "/reward", json!({ "instance_id": instance })).await,
                json!({ "reward": 1.0 })
            );
        }
    });
}

#[test]
fn idle_sessions_are_reaped() {
    let served = Served::start(sample_build(), &["--idle-timeout-s", "1"]);
    let replay = replays(sample_build()).remove(0);
    let http = http_client();
    runtime().block_on(async {
        let instance = post(&http, &served.codegym, "/get_instance", json!({})).await["instance_id"].clone();
        post(&http, &served.codegym, "/start", json!({ "instance_id": instance, "env_str": replay.env_str })).await;
        let mut ws = connect(&served.openenv).await;
        ask(&mut ws, json!({ "type": "reset", "data": { "config_id": replay.config_id } })).await;
        let closed =
            tokio::time::timeout(Duration::from_secs(10), next_json(&mut ws)).await.expect("the idle session was never closed");
        assert_eq!(closed["closed"], 1000, "{closed}");
        assert!(closed["reason"].as_str().unwrap().contains("idle"), "{closed}");
        let response = http
            .post(format!("http://{}/step", served.codegym))
            .body(json!({ "instance_id": instance, "action": replay.actions[0] }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
    });
}

#[test]
fn a_token_guards_the_server_and_sigterm_stops_it_with_the_recording_written() {
    let refused = codegym().args(["serve", "--data", sample_build().to_str().unwrap(), "--addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs a token"), "{}", String::from_utf8_lossy(&refused.stderr));

    let record = tempfile::tempdir().unwrap();
    let mut served = Served::start(sample_build(), &["--token", "s3cret", "--record", record.path().to_str().unwrap()]);
    let replay = replays(sample_build()).remove(0);
    let http = http_client();
    runtime().block_on(async {
        let url = format!("http://{}/health", served.openenv);
        assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 401);
        assert_eq!(http.get(&url).bearer_auth("wrong").send().await.unwrap().status().as_u16(), 401);
        assert_eq!(http.get(&url).bearer_auth("s3cret").send().await.unwrap().status().as_u16(), 200);
        let rest = |path: &str, body: Value| {
            http.post(format!("http://{}{path}", served.codegym)).bearer_auth("s3cret").body(body.to_string()).send()
        };
        let instance: Value =
            serde_json::from_slice(&rest("/get_instance", json!({})).await.unwrap().bytes().await.unwrap()).unwrap();
        let instance = instance["instance_id"].clone();
        rest("/start", json!({ "instance_id": instance, "env_str": replay.env_str })).await.unwrap();
        for action in &replay.actions[..3] {
            assert!(rest("/step", json!({ "instance_id": instance, "action": action })).await.unwrap().status().is_success());
        }
    });
    let status = served.terminate();
    assert!(status.success(), "codegym serve exited with {status}: {}", served.stderr());
    let rows = sql_rows(record.path(), "SELECT step, protocol, verdict, action, observation FROM episodes ORDER BY step");
    assert_eq!(rows.len(), 4, "the reset and three steps: {rows:?}");
    assert_eq!(rows[0]["action"], Value::Null);
    for (row, stored) in rows[1..].iter().zip(&replay.observations) {
        assert_eq!((&row["protocol"], &row["verdict"], &row["observation"]), (&json!("codegym"), &json!("ok"), &json!(stored)));
    }
}

/// Replays `replay` through the CodeGym API of the server at `addr`: every observation as stored.
async fn replay_rest(http: &reqwest::Client, addr: &str, replay: &Replay) {
    let instance = post(http, addr, "/get_instance", json!({})).await["instance_id"].clone();
    post(http, addr, "/start", json!({ "instance_id": instance, "env_str": replay.env_str })).await;
    for (action, stored) in replay.actions.iter().zip(&replay.observations) {
        let answer = post(http, addr, "/step", json!({ "instance_id": instance, "action": action })).await;
        assert_eq!(answer["observation"], json!(stored), "{}: {action}: {answer}", replay.config);
    }
}

#[test]
fn two_servers_recording_into_one_directory_keep_every_step_of_both() {
    let record = tempfile::tempdir().unwrap();
    let to = record.path().to_str().unwrap();
    let servers = [Served::start(sample_build(), &["--record", to]), Served::start(sample_build(), &["--record", to])];
    let replays = replays(sample_build());
    let http = http_client();
    runtime().block_on(async {
        // Two rounds on each server at once, with a flush of both in between (every 5 s), so
        // each appends to the table while the other's parts are there.
        for round in 0..2 {
            let mut episodes = Vec::new();
            for served in &servers {
                for replay in &replays {
                    let (http, addr, replay) = (http.clone(), served.codegym.clone(), replay.clone());
                    episodes.push(tokio::spawn(async move { replay_rest(&http, &addr, &replay).await }));
                }
            }
            for episode in episodes {
                episode.await.unwrap();
            }
            if round == 0 {
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
        }
    });
    let mut servers = servers;
    let stopping: Vec<_> = servers.iter_mut().map(|s| s.child.id()).collect();
    Command::new("kill").arg("-TERM").args(stopping.iter().map(u32::to_string)).status().unwrap();
    for served in &mut servers {
        let status = served.terminate();
        assert!(status.success(), "codegym serve exited with {status}: {}", served.stderr());
    }
    let steps: usize = replays.iter().map(|r| r.actions.len() + 1).sum::<usize>() * 4;
    let rows = sql_rows(record.path(), "SELECT episode_id, count(*) AS n, max(step) AS last FROM episodes GROUP BY episode_id");
    assert_eq!(rows.len(), replays.len() * 4, "every episode of both servers: {rows:?}");
    assert_eq!(rows.iter().map(|r| r["n"].as_u64().unwrap() as usize).sum::<usize>(), steps, "every step, each once");
    assert!(rows.iter().all(|r| r["n"].as_i64().unwrap() == r["last"].as_i64().unwrap() + 1), "{rows:?}");
    let Some(python) = test_python(&["duckdb"]) else { return };
    let glob = record.path().join("episodes/*.parquet");
    let script = "import duckdb, sys; print(duckdb.connect().execute(f\"SELECT count(*), count(DISTINCT (episode_id, step)) FROM '{sys.argv[1]}'\").fetchone())";
    let output = Command::new(python).args(["-c", script, glob.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("({steps}, {steps})"),
        "DuckDB reads the same table by glob"
    );
}

#[test]
fn a_session_is_answered_while_four_others_spin_to_the_step_timeout() {
    let data = tempfile::tempdir().unwrap();
    let misbehaving = with_misbehaving(data.path());
    // Two threads, fewer than the sessions that spin: with one queue over them, every call
    // waited for a spinning one to end.
    let served = Served::start(data.path(), &["--threads", "2", "--step-timeout-ms", "20000"]);
    let replay = replays(sample_build()).remove(0);
    runtime().block_on(async {
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut spinning = Vec::new();
        for config in &misbehaving {
            let mut ws = connect(&served.openenv).await;
            let reset = ask(&mut ws, json!({ "type": "reset", "data": { "config_id": config } })).await;
            assert_eq!(reset["type"], "observation", "{reset}");
            let ended = ended.clone();
            spinning.push(tokio::spawn(async move {
                let answer = step(&mut ws, "Spin", json!({ "n": 13 })).await;
                ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            }));
        }
        assert_eq!(spinning.len(), 4);
        // Not an assertion: gives the spinning calls time to take the threads before ours comes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        replay_ws(served.openenv.clone(), replay).await;
        assert_eq!(
            ended.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a whole episode of another session waited for a spinning call to end"
        );
        for spin in spinning {
            assert_eq!(spin.await.unwrap()["data"]["observation"]["error"], "timeout");
        }
    });
}
