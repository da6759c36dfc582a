//! TRL 1.16 trains against `codegym serve` through its OpenEnv harness: the rollout worker of its
//! asynchronous GRPO trainer (`trl.experimental.async_grpo.openenv_harness.HarnessRolloutWorker`)
//! runs its own rollout process on the README's session factory, samples every turn through its
//! own chat template rendering and tool-call parsing, and scores groups from the reward the
//! session forwards (tests/data/serve/trl_rollout.py; a scripted vLLM server stands in for the
//! model):
//! - the model's first turn holds the task text, and the chat template shows it every tool;
//! - the tool calls reach the environment, and the reward TRL gives each rollout is the server's:
//!   1 for the right answer, 0 for a wrong one, as the server recorded it, with the advantages
//!   GRPO draws from them;
//! - a server that dies mid-rollout earns nothing: TRL logs each failed rollout and each session
//!   that cannot start, and no sample reaches the trainer (no reward of 0).
//!
//! TRL comes from tests/requirements-trainers.txt, which `.ci/run` installs: without it these
//! tests are skipped with a note, and fail under CI.

use crate::serve::{Replay, Served, one_per_environment, replays, run_client, write_json};
use crate::util::{sample_build, sql_rows, test_python};
use serde_json::Value;

/// The Python with TRL and the current OpenEnv.
fn trl_python() -> Option<String> {
    test_python(&["trl.experimental.async_grpo.openenv_harness", "openenv.core.harness", "tokenizers"])
}

/// The answer of the oracle's final Done.
fn oracle_answer(replay: &Replay) -> Value {
    let done: Value = serde_json::from_str(replay.actions.last().unwrap()).unwrap();
    done["parameters"]["answer"].clone()
}

#[test]
fn trl_grpo_rollouts_see_the_task_and_tools_and_earn_the_servers_reward_right_or_wrong() {
    let Some(python) = trl_python() else { return };
    let record = tempfile::tempdir().unwrap();
    let mut served = Served::start(sample_build(), &["--record", record.path().to_str().unwrap()]);
    let one_each = one_per_environment(replays(sample_build()));
    assert!(one_each.len() >= 20, "{} environments", one_each.len());
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "one-each.json", &one_each);
    let url = format!("http://{}", served.openenv);
    let summary = run_client(&python, "trl_rollout.py", &[&url, workload.to_str().unwrap()]);

    // Both rollouts of every group: the right answer earns 1 and the wrong one 0, in TRL's reward
    // and in what the server answered, and GRPO's advantage ranks them.
    let rollouts = summary["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 2 * one_each.len(), "{summary}");
    let mut scored = Vec::new();
    for rollout in rollouts {
        let replay = &one_each[rollout["group"].as_u64().unwrap() as usize];
        let answer = &rollout["answer"]["answer"];
        let right = if *answer == oracle_answer(replay) {
            true
        } else {
            assert_eq!(*answer, replay.wrong_answer, "{}: an answer neither right nor the wrong one", replay.config);
            false
        };
        let reward = if right { 1.0 } else { 0.0 };
        assert_eq!(rollout["reward"].as_f64(), Some(reward), "{}: {rollout}", replay.config);
        assert_eq!(rollout["harness_reward"].as_f64(), Some(reward), "{rollout}");
        assert_eq!(
            (rollout["server_reward"].as_f64(), rollout["server_done"].as_bool()),
            (Some(reward), Some(true)),
            "{rollout}"
        );
        assert_eq!(rollout["advantage"].as_f64().unwrap() > 0.0, right, "{rollout}");
        scored.push((replay.config_id.clone(), reward, right));
    }
    for replay in &one_each {
        let answers: Vec<bool> = scored.iter().filter(|s| s.0 == replay.config_id).map(|s| s.2).collect();
        assert_eq!(answers.iter().filter(|r| **r).count(), 1, "{}: one right and one wrong answer", replay.config);
    }

    // The model's first turn: the task text opens the user turn, and every tool is in the prompt.
    let first_turns = summary["first_turns"].as_array().unwrap();
    for replay in &one_each {
        let turn = first_turns.iter().find(|t| t["config_id"] == replay.config_id.as_str()).unwrap();
        assert!(turn["user"].as_str().unwrap().starts_with(&replay.task), "{}: {}", replay.config, turn["user"]);
        let shown = turn["shown"].as_str().unwrap();
        for tool in &replay.tools {
            assert!(shown.contains(&format!(r#""name": "{tool}""#)), "{}: {tool} not offered:\n{shown}", replay.config);
        }
    }

    // The server's own record: each rollout TRL scored is an episode that ended with that reward.
    assert!(served.terminate().success());
    let mut recorded: Vec<(String, f64)> = sql_rows(record.path(), "SELECT config_id, reward FROM episodes WHERE done")
        .iter()
        .map(|row| (row["config_id"].as_str().unwrap().to_string(), row["reward"].as_f64().unwrap()))
        .collect();
    for (config_id, reward, _) in &scored {
        let at = recorded.iter().position(|(c, r)| c == config_id && r == reward);
        recorded.remove(at.unwrap_or_else(|| panic!("{config_id}: no recorded episode ended with reward {reward}")));
    }
}

#[test]
fn a_server_that_dies_mid_rollout_gives_trl_logged_failures_and_no_reward() {
    let Some(python) = trl_python() else { return };
    let served = Served::start(sample_build(), &[]);
    // Episodes of at least two steps, so the server dies between two tool calls of the first.
    let workload: Vec<Replay> =
        one_per_environment(replays(sample_build())).into_iter().filter(|r| r.actions.len() >= 2).take(3).collect();
    let scratch = tempfile::tempdir().unwrap();
    let workload = write_json(scratch.path(), "workload.json", &workload);
    let url = format!("http://{}", served.openenv);
    let summary = run_client(&python, "trl_rollout.py", &[&url, workload.to_str().unwrap(), &served.pid().to_string()]);
    assert_eq!(summary["killed"], true, "{summary}");
    assert_eq!(summary["reached_trainer"], serde_json::json!([]), "a failed rollout reached the trainer: {summary}");
    for (warning, count) in summary["logged"].as_object().unwrap() {
        assert!(count.as_u64().unwrap() >= 1, "TRL never logged {warning:?}: {summary}");
    }
}
