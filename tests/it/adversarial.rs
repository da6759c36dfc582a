//! Verification against environments written to defeat it (`tests/data/adversarial`, one per
//! check, each with the status verification must give it), and the verifier stamp that makes a
//! rebuild re-verify what an older verifier passed.

use crate::util::{codegym, dataset, import_release, repo, run_ok, sql_rows};
use codegym::dataset::Table;
use codegym::tables::{EnvironmentRow, OracleCandidateRow};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The adversarial release imported and verified once per test run.
fn verified() -> &'static Path {
    static DATA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("adversarial");
        let _ = std::fs::remove_dir_all(&data);
        import_release(&repo().join("tests/data/adversarial"), "jsonl", &data);
        add_candidates(&data);
        run_ok(&["verify", "--data", data.to_str().unwrap(), "--threads", "2"]);
        data
    })
}

/// Solvers for the sound environment that reach for its hidden state past the step-only guard.
fn add_candidates(data: &Path) {
    let data = dataset(data);
    let envs: Vec<EnvironmentRow> = data.read_table(Table::Environments).unwrap();
    let sound = envs.iter().find(|e| e.env_name == "SoundSumEnv").unwrap();
    let bypasses = [
        "import json\ndef solve(self):\n    env = self.step.__self__\n    return env.step(json.dumps({'name': 'Done', 'parameters': {'answer': sum(env.values)}}))[1]\n",
        "import json\ndef solve(self):\n    env = object.__getattribute__(self, '_env')\n    return env.step(json.dumps({'name': 'Done', 'parameters': {'answer': sum(env.values)}}))[1]\n",
    ];
    let rows: Vec<OracleCandidateRow> = bypasses
        .iter()
        .enumerate()
        .map(|(i, solver)| OracleCandidateRow {
            env_id: sound.env_id.clone(),
            candidate: i as i32 + 1,
            solver: solver.to_string(),
            origin: Some("adversarial test".into()),
            smoke_test: None,
        })
        .collect();
    data.upsert(Table::OracleCandidates, rows, |c| data.shard_of(&c.env_id)).unwrap();
}

fn expected() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/data/adversarial/envs.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            (row["env_name"].as_str().unwrap().to_string(), row["expected"].as_str().unwrap().to_string())
        })
        .collect()
}

fn status(data: &Path, env: &str) -> serde_json::Value {
    sql_rows(data, &format!("SELECT status, status_detail, oracle_candidate FROM environments WHERE env_name = '{env}'"))
        .remove(0)
}

#[test]
fn every_planted_defect_is_caught_and_sound_environments_pass() {
    let data = verified();
    let mut wrong = Vec::new();
    for (env, expected) in expected() {
        let row = status(data, &env);
        if row["status"] != expected.as_str() {
            wrong.push(format!("{env}: expected {expected}, got {row}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn candidates_cannot_reach_the_environment_past_step() {
    let data = verified();
    assert_eq!(status(data, "SoundSumEnv")["oracle_candidate"], 0, "the bypassing candidates are never the oracle");
    let cells = sql_rows(
        data,
        "SELECT r.candidate, count(*) AS n FROM oracle_runs r JOIN environments e USING (env_id) \
         WHERE e.env_name = 'SoundSumEnv' AND r.verdict = 'pass' GROUP BY r.candidate ORDER BY r.candidate",
    );
    assert_eq!(cells, vec![json!({"candidate": 0, "n": 3})], "no bypassing candidate passes a cell");
}

/// Oracles run where the harness that reports on them is not: patching it (through `gc`, or an
/// import) forges nothing.
#[test]
fn a_forged_pass_is_not_believed_and_the_harness_cannot_be_imported() {
    let data = verified();
    let verdicts = sql_rows(
        data,
        "SELECT e.env_name, r.verdict, count(*) AS n FROM oracle_runs r JOIN environments e USING (env_id) \
         WHERE e.env_name IN ('GcForgerEnv', 'HarnessImporterEnv') GROUP BY e.env_name, r.verdict ORDER BY e.env_name",
    );
    assert_eq!(
        verdicts,
        vec![
            json!({"env_name": "GcForgerEnv", "verdict": "wrong", "n": 3}),
            json!({"env_name": "HarnessImporterEnv", "verdict": "wrong", "n": 3}),
        ]
    );
}

#[test]
fn answers_that_observe_shows_are_filtered_however_they_show() {
    let data = verified();
    let reasons = sql_rows(
        data,
        "SELECT c.env_name, c.filter_reason, count(*) AS n FROM task_configs c \
         WHERE c.env_name IN ('FullStopLeakEnv', 'InputAnswerLeakEnv') GROUP BY c.env_name, c.filter_reason ORDER BY c.env_name",
    );
    assert_eq!(
        reasons,
        vec![
            json!({"env_name": "FullStopLeakEnv", "filter_reason": "answer_in_observe", "n": 3}),
            json!({"env_name": "InputAnswerLeakEnv", "filter_reason": "answer_in_observe", "n": 3}),
        ]
    );
}

#[test]
fn a_huge_configuration_is_rejected_alone() {
    let data = verified();
    let rows = sql_rows(
        data,
        "SELECT filter_reason, oracle_passed, length(config) > 100000 AS huge FROM task_configs \
         WHERE env_name = 'HugeConfigEnv' ORDER BY huge, config",
    );
    assert_eq!(rows.len(), 4);
    assert!(rows[..3].iter().all(|r| r["oracle_passed"] == true), "{rows:?}");
    assert_eq!(rows[3], json!({"filter_reason": "config_too_large", "oracle_passed": null, "huge": true}));
}

#[test]
fn a_rebuild_reverifies_what_an_older_verifier_passed_and_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
    run_ok(&["verify", "--data", data.to_str().unwrap()]);
    let handle = dataset(&data);
    let mut envs: Vec<EnvironmentRow> = handle.read_table(Table::Environments).unwrap();
    let stamped = envs.iter().filter(|e| e.verifier.is_some()).count();
    assert_eq!(stamped, envs.len(), "every decided environment carries its verifier");
    let verified = envs.iter().position(|e| e.status == "verified").unwrap();
    let failed = envs.iter().position(|e| e.status != "verified").unwrap();
    for i in [verified, failed] {
        envs[i].verifier = Some("verify-checks-v1+older".into());
    }
    handle.upsert(Table::Environments, envs, |e| handle.shard_of(&e.env_id)).unwrap();
    let output = codegym().args(["verify", "--data", data.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 verified by this run"), "only the environment an older verifier passed runs again: {stderr}");
}

#[test]
fn whether_a_state_can_be_held_idle_is_known_before_any_rollout() {
    let data = verified();
    let rows = sql_rows(
        data,
        "SELECT env_name, servable, serve_detail FROM environments WHERE env_name IN ('SoundSumEnv', 'UnpicklableEnv') ORDER BY env_name",
    );
    assert_eq!(rows[0], json!({"env_name": "SoundSumEnv", "servable": true, "serve_detail": null}));
    assert_eq!(rows[1]["servable"], false, "{rows:?}");
    assert!(rows[1]["serve_detail"].as_str().unwrap().contains("lambda"), "{rows:?}");
}

#[test]
fn the_battery_names_the_policy_that_earned_a_reward_without_the_answer() {
    let data = verified();
    let detail = |env: &str| status(data, env)["status_detail"].as_str().unwrap_or("").to_string();
    assert!(detail("NanFloatEnv").contains("\"nan\""), "{}", detail("NanFloatEnv"));
    assert!(detail("OptionalOverrideEnv").contains("optional expected="), "{}", detail("OptionalOverrideEnv"));
    assert!(detail("RetryRevealsEnv").starts_with("the policy \"retry"), "{}", detail("RetryRevealsEnv"));
    assert!(detail("StepLimitPaysEnv").contains("padding"), "{}", detail("StepLimitPaysEnv"));
    assert!(detail("MembershipEnv").contains("observed value"), "{}", detail("MembershipEnv"));
}

#[test]
fn every_finding_of_an_environment_is_a_reject_not_only_its_status() {
    let data = verified();
    let reasons = |env: &str| {
        let rows = sql_rows(
            data,
            &format!(
                "SELECT DISTINCT r.reason FROM rejects r JOIN environments e ON r.entity_id = e.env_id \
                 WHERE e.env_name = '{env}' ORDER BY r.reason"
            ),
        );
        rows.into_iter().map(|r| r["reason"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let class_log = reasons("ClassLogEnv");
    assert!(class_log.contains(&"state_across_episodes".to_string()), "{class_log:?}");
    let pays = reasons("ServedRewardPaysEnv");
    assert!(pays.contains(&"reward_inconsistent".to_string()) && pays.contains(&"reward_hackable".to_string()), "{pays:?}");
}

#[test]
fn curation_counts_calls_itself_and_documented_equivalences_are_recorded_not_rejected() {
    let data = verified();
    let calls = sql_rows(
        data,
        "SELECT c.oracle_calls, r.detail FROM task_configs c JOIN oracle_runs r USING (config_id) \
         WHERE c.env_name = 'SelfCountEnv' AND r.candidate = 0 ORDER BY c.oracle_calls LIMIT 1",
    );
    // Count, then GetValue and Add per value, then Done: 3 values make 8 calls (the environment says 80).
    assert_eq!(calls[0]["oracle_calls"], 8, "{calls:?}");
    assert!(calls[0]["detail"].as_str().unwrap().contains("counted 80 calls"), "{calls:?}");
    let lenient = status(data, "CaseInsensitiveEnv");
    assert_eq!(lenient["status"], "verified");
    assert!(lenient["status_detail"].as_str().unwrap().starts_with("lenient_matching:"), "{lenient}");
}
