//! verl 0.9.1 trains against `codegym serve`: verl's own tool registry loads the verl export's tool
//! from its tool_config.yaml, and verl's own `ToolAgentLoop` plays training steps of rollouts
//! through it against a real server (tests/data/serve/verl_agent_loop.py; a scripted policy stands
//! in for the model):
//! - under `full_determinism` (request ids `det-{i}` in every step) every step earns the oracle's
//!   reward, the model shown the oracle's observations;
//! - rollouts that end on a turn limit or the length limit release their episodes, as do those
//!   that end on Done: a server with exactly one session per rollout serves every step, and none
//!   is left open;
//! - the calls of one turn play in order in one episode;
//! - the token is sent (from the tool config or the environment); every failure of the server is
//!   counted in `codegym_error`, or stops the rollout with `fail_on_server_error`;
//! - leases free the instances of a client that stopped renewing, and the tool renews its own.
//!
//! verl comes from tests/requirements-trainers.txt, which `.ci/run` installs: without it these
//! tests are skipped with a note, and fail under CI.

use crate::serve::{Served, http_client, post, replays, run_client, runtime, write_json};
use crate::util::{run_ok, sample_build, test_python};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The oracle trajectories of one kept configuration of each of `n` environments of the sample
/// build, the shortest first: {config_id: {"actions", "observations"}}.
fn workload(n: usize) -> BTreeMap<String, Value> {
    let mut seen = std::collections::HashSet::new();
    let mut firsts: Vec<_> =
        replays(sample_build()).into_iter().filter(|r| seen.insert(r.config.split_once('@').unwrap().0.to_string())).collect();
    firsts.sort_by_key(|r| r.actions.len());
    firsts.truncate(n);
    firsts.into_iter().map(|r| (r.config_id, json!({ "actions": r.actions, "observations": r.observations }))).collect()
}

/// A verl export of the sample build whose tool talks to `served`, and the scratch it lives in.
struct Export {
    dir: tempfile::TempDir,
    verl: PathBuf,
}

fn export(served: &Served) -> Export {
    let dir = tempfile::tempdir().unwrap();
    let verl = dir.path().join("verl");
    let url = format!("http://{}", served.codegym);
    let data = sample_build().to_str().unwrap();
    run_ok(&["export", "--data", data, "--format", "verl", "--out", verl.to_str().unwrap(), "--server-url", &url]);
    Export { dir, verl }
}

/// Runs verl's agent loop on `scenarios` (see verl_agent_loop.py) with the `n`-rollout workload;
/// returns, per scenario, what it printed.
fn train(python: &str, export: &Export, n: usize, scenarios: Value) -> (BTreeMap<String, Value>, Vec<Value>) {
    let workload = workload(n);
    let workload_file = write_json(export.dir.path(), "workload.json", &workload);
    let scenarios_file = write_json(export.dir.path(), "scenarios.json", &scenarios);
    let args = [export.verl.to_str().unwrap(), workload_file.to_str().unwrap(), scenarios_file.to_str().unwrap()];
    let results = run_client(python, "verl_agent_loop.py", &args);
    (workload, results.as_array().unwrap().clone())
}

/// Every rollout of every step of a scenario's result.
fn rollouts(result: &Value) -> impl Iterator<Item = &Value> {
    result["steps"].as_array().unwrap().iter().flat_map(|step| step.as_array().unwrap())
}

/// The Python with verl 0.9.1 and the export's consumers.
fn verl_python() -> Option<String> {
    test_python(&["verl.experimental.agent_loop.tool_agent_loop", "aiohttp", "pyarrow", "yaml"])
}

/// Stops the server and checks that no session was left open.
fn assert_nothing_left_open(mut served: Served) {
    assert!(served.terminate().success());
    let stderr = served.stderr();
    assert!(stderr.contains("stopped; 0 sessions closed"), "sessions were left open:\n{stderr}");
}

#[test]
fn under_full_determinism_every_training_step_of_verl_earns_the_oracles_reward() {
    let Some(python) = verl_python() else { return };
    // One session per rollout: a step can only run if the one before released every episode.
    let served = Served::start(sample_build(), &["--max-sessions", "6"]);
    let export = export(&served);
    let scenario = json!([{ "steps": 2, "rollouts": 6, "script": "oracle",
                            "overrides": { "actor_rollout_ref.rollout.full_determinism": true } }]);
    let (workload, results) = train(&python, &export, 6, scenario);
    let result = &results[0];
    let ids: Vec<&str> = result["request_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("det-")), "full determinism's request ids: {ids:?}");
    for step in result["steps"].as_array().unwrap() {
        for (rollout, trajectory) in step.as_array().unwrap().iter().zip(workload.values()) {
            assert_eq!(rollout["score"], json!({ "score": 1.0, "codegym_error": 0 }), "{rollout}");
            assert_eq!(rollout["tool_messages"], trajectory["observations"], "the model is shown the oracle's observations");
        }
    }
    assert_nothing_left_open(served);
}

#[test]
fn verl_rollouts_that_end_on_a_limit_release_their_episodes() {
    let Some(python) = verl_python() else { return };
    let served = Served::start(sample_build(), &["--max-sessions", "4"]);
    let export = export(&served);
    let observe = |overrides: Value, tool: Value, keep: bool| {
        let mut scenario = json!({ "steps": 3, "rollouts": 4, "script": "observe", "overrides": overrides, "tool": tool });
        scenario["keep_agent_data"] = json!(keep);
        scenario
    };
    let scenarios = json!([
        // The tool knows the turn limit: it releases after the last call, even while something
        // (a tracer, say) keeps the rollout's state alive.
        observe(
            json!({ "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": 3 }),
            json!({ "max_assistant_turns": 3 }),
            true
        ),
        observe(json!({ "actor_rollout_ref.rollout.multi_turn.max_user_turns": 2 }), json!({ "max_user_turns": 2 }), true),
        // It does not: the episode ends with the rollout's state.
        observe(json!({ "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": 3 }), json!({}), false),
        // The length limit, which no tool can foresee.
        observe(json!({ "actor_rollout_ref.rollout.response_length": 3000 }), json!({}), false),
    ]);
    let (_, results) = train(&python, &export, 4, scenarios);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["held_after_step"], json!([0, 0, 0]), "scenario {i}");
        for rollout in rollouts(result) {
            let shown = rollout["tool_messages"].as_array().unwrap();
            match [Some(2), Some(2), Some(2), None][i] {
                Some(calls) => assert_eq!(shown.len(), calls, "scenario {i}: {rollout}"),
                None => assert!((3..64).contains(&shown.len()), "the length limit ends it: {rollout}"),
            }
            assert_eq!(rollout["fields"], json!({ "codegym_error": 0, "codegym_reward": 0.0 }), "scenario {i}: {rollout}");
            assert!(shown.iter().all(|m| !m.as_str().unwrap().starts_with("Error")), "scenario {i}: {rollout}");
        }
    }
    assert_nothing_left_open(served);
}

#[test]
fn parallel_calls_of_a_verl_turn_play_in_order_in_one_episode() {
    let Some(python) = verl_python() else { return };
    let served = Served::start(sample_build(), &["--max-sessions", "4"]);
    let export = export(&served);
    let scenario = json!([{ "steps": 1, "rollouts": 4, "script": "oracle_parallel",
                            "overrides": { "actor_rollout_ref.rollout.multi_turn.max_parallel_calls": 2 } }]);
    let (workload, results) = train(&python, &export, 4, scenario);
    for (rollout, trajectory) in rollouts(&results[0]).zip(workload.values()) {
        assert_eq!(rollout["score"], json!({ "score": 1.0, "codegym_error": 0 }), "{rollout}");
        assert_eq!(rollout["tool_messages"], trajectory["observations"], "both calls of the first turn, in order");
    }
    assert_nothing_left_open(served);
}

#[test]
fn the_verl_tool_sends_its_token_and_counts_or_raises_server_failures() {
    let Some(python) = verl_python() else { return };
    let served = Served::start(sample_build(), &["--max-sessions", "2", "--token", "s3cret"]);
    let export = export(&served);
    let oracle = |tool: Value, env: Value| json!({ "steps": 1, "rollouts": 2, "script": "oracle", "tool": tool, "env": env });
    let scenarios = json!([
        oracle(json!({ "token": "s3cret" }), json!({})),
        oracle(json!({}), json!({ "CODEGYM_SERVE_TOKEN": "s3cret" })),
        oracle(json!({}), json!({})),
        oracle(json!({ "fail_on_server_error": true }), json!({})),
        oracle(json!({ "server_url": "http://127.0.0.1:9", "token": "s3cret" }), json!({})),
    ]);
    let (_, results) = train(&python, &export, 2, scenarios);
    for (i, result) in results[..2].iter().enumerate() {
        for rollout in rollouts(result) {
            assert_eq!(rollout["score"], json!({ "score": 1.0, "codegym_error": 0 }), "token from scenario {i}: {rollout}");
        }
    }
    for (result, why) in [(&results[2], "missing or wrong token"), (&results[4], "cannot reach codegym serve")] {
        for rollout in rollouts(result) {
            let shown = rollout["tool_messages"].as_array().unwrap();
            assert!(shown.iter().all(|m| m.as_str().unwrap().contains(why)), "{rollout}");
            assert_eq!(
                rollout["score"],
                json!({ "score": 0.0, "codegym_error": shown.len() }),
                "every failure counted: {rollout}"
            );
        }
    }
    for rollout in rollouts(&results[3]) {
        assert_eq!(rollout["raised"], "CodegymServerFailure", "{rollout}");
        assert!(rollout["message"].as_str().unwrap().contains("missing or wrong token"), "{rollout}");
    }
    assert_nothing_left_open(served);
}

#[test]
fn leases_free_the_instances_of_a_client_that_stopped_renewing() {
    // The housekeeping runs every quarter of the interpreter idle time (here 250 ms).
    let served = Served::start(sample_build(), &["--interpreter-idle-s", "1"]);
    let http = http_client();
    runtime().block_on(async {
        let open = |lease: Option<u64>| {
            let body = lease.map_or(json!({}), |lease| json!({ "lease_s": lease }));
            let (http, addr) = (&http, &served.codegym);
            async move { post(http, addr, "/get_instance", body).await }
        };
        let abandoned = open(Some(1)).await;
        assert_eq!(abandoned["lease_s"], 1);
        let renewed = open(Some(1)).await["instance_id"].clone();
        let unleased = open(None).await["instance_id"].clone();
        let capped = open(Some(1 << 40)).await;
        assert_eq!(capped["lease_s"], 10800, "at most the idle timeout");
        // `/reward` reaches an instance without renewing it: 409 while it is open (no episode), 404
        // once it is gone.
        let status = |id: &Value| {
            let request = http.post(format!("http://{}/reward", served.codegym)).body(json!({ "instance_id": id }).to_string());
            async move { request.send().await.unwrap().status().as_u16() }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while status(&abandoned["instance_id"]).await != 404 {
            let answer = post(&http, &served.codegym, "/renew", json!({ "instance_ids": [renewed] })).await;
            assert_eq!(answer["unknown"], json!([]), "a renewed instance stays");
            assert!(Instant::now() < deadline, "the abandoned instance's lease never ran out");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for id in [&renewed, &unleased] {
            assert_eq!(status(id).await, 409, "{id} is still open");
        }
        let answer = post(&http, &served.codegym, "/renew", json!({ "instance_ids": [renewed, abandoned["instance_id"]] })).await;
        assert_eq!(answer["unknown"], json!([abandoned["instance_id"]]), "the client learns which instance it lost");
    });
    let Some(python) = verl_python() else { return };
    // The tool renews what it holds: rollouts whose every generation outlasts the lease go on.
    let export = export(&served);
    let scenario = json!([{ "steps": 1, "rollouts": 2, "script": "observe", "think_s": 1.5,
                            "tool": { "lease_s": 1, "max_assistant_turns": 3 },
                            "overrides": { "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": 3 } }]);
    let (_, results) = train(&python, &export, 2, scenario);
    for rollout in rollouts(&results[0]) {
        assert_eq!(rollout["fields"], json!({ "codegym_error": 0, "codegym_reward": 0.0 }), "{rollout}");
    }
}
