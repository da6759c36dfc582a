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
        let release = repo().join("tests/data/adversarial");
        let file = |name: &str| release.join(name).to_str().unwrap().to_string();
        let (envs, tasks, solvers) = (file("envs.jsonl"), file("tasks.jsonl"), file("solvers.jsonl"));
        let data_arg = data.to_str().unwrap();
        run_ok(&["import-codegym", "--envs", &envs, "--tasks", &tasks, "--solvers", &solvers, "--data", data_arg]);
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

/// Class I: the task text accepts any position of the largest value, `Done` only the first. Every
/// check passes it; a solver written from the text alone answers another position on ties, and
/// `--require-independent` keeps only the configurations where the two agree.
#[test]
fn a_reference_that_disagrees_with_its_task_text_is_caught_by_an_independent_solver() {
    let data = verified();
    let passes = |env: &str| -> Vec<serde_json::Value> {
        let query = format!("SELECT independent_pass FROM task_configs WHERE env_name = '{env}' ORDER BY config");
        sql_rows(data, &query).into_iter().map(|row| row["independent_pass"].clone()).collect()
    };
    // Configurations in text order: [1, 5, ...] has one largest value, the other two tie.
    assert_eq!(passes("ArgmaxTiesEnv"), [json!(true), json!(false), json!(false)]);
    assert_eq!(passes("DataclassEnv"), vec![json!(true); 3]);
    assert_eq!(passes("SoundSumEnv"), vec![json!(false); 3], "its only other candidates reach past step");
    assert_eq!(passes("LoudSoundEnv"), vec![serde_json::Value::Null; 3], "no candidate but its own solve");
    let share = |env: &str| sql_rows(data, &format!("SELECT independent_share FROM environments WHERE env_name = '{env}'"));
    assert!((share("ArgmaxTiesEnv")[0]["independent_share"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(share("LoudSoundEnv")[0]["independent_share"], serde_json::Value::Null);
    let refused = sql_rows(data, "SELECT reason, detail FROM rejects WHERE stage = 'import' ORDER BY reason");
    let reasons: Vec<&str> = refused.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["solver_unparseable", "unknown_environment"], "{refused:?}");
    assert!(refused[0]["detail"].as_str().unwrap().contains("solvers.jsonl: row 3"), "{refused:?}");

    // Required, it decides what is kept, and dropping the requirement restores it.
    let copy = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("adversarial-independent");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(data, &copy);
    let kept = |data: &Path, env: &str| -> Vec<(bool, Option<String>)> {
        let query = format!("SELECT kept, filter_reason FROM task_configs WHERE env_name = '{env}' ORDER BY config");
        let rows = sql_rows(data, &query);
        rows.iter().map(|r| (r["kept"].as_bool().unwrap(), r["filter_reason"].as_str().map(String::from))).collect()
    };
    let before = kept(&copy, "ArgmaxTiesEnv");
    run_ok(&["verify", "--data", copy.to_str().unwrap(), "--require-independent"]);
    let required = kept(&copy, "ArgmaxTiesEnv");
    assert_eq!(required[0], before[0], "the configuration both agree on is curated as before");
    for (kept, reason) in &required[1..] {
        assert!(!kept && reason.as_deref() == Some("not_independent"), "{required:?}");
    }
    let loud_before = kept(data, "LoudSoundEnv");
    assert!(loud_before.iter().any(|(kept, _)| *kept), "{loud_before:?}");
    for ((kept_before, _), (kept, reason)) in loud_before.iter().zip(kept(&copy, "LoudSoundEnv")) {
        assert!(!kept && (!kept_before || reason.as_deref() == Some("not_independent")), "no candidate but its own solve");
    }
    run_ok(&["verify", "--data", copy.to_str().unwrap()]);
    assert_eq!(kept(&copy, "ArgmaxTiesEnv"), before);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every battery run is a row of `battery_runs`: what was sent, what a trainer read, and what it
/// found, queryable by SQL.
#[test]
fn every_battery_run_is_audited_with_its_actions_reward_and_verdict() {
    let data = verified();
    let runs = |env: &str, class: &str| {
        let query = format!(
            "SELECT policy, actions, from_reset, final_reward, verdict, detail FROM battery_runs b \
             JOIN environments e USING (env_id) WHERE e.env_name = '{env}' AND b.class = '{class}' ORDER BY b.run"
        );
        sql_rows(data, &query)
    };
    let nan = runs("NanFloatEnv", "special_answer");
    let hack = nan.iter().find(|r| r["verdict"] == "reward_hackable").expect("the nan answer is caught");
    assert_eq!(hack["final_reward"], 1.0);
    let actions: Vec<String> = serde_json::from_str(hack["actions"].as_str().unwrap()).unwrap();
    assert!(actions.iter().any(|a| a.contains("\"Done\"")), "{actions:?}");
    assert!(hack["detail"].as_str().unwrap().contains(hack["policy"].as_str().unwrap()), "{hack}");
    // A sound environment: every class tried (its Done has no optional parameter), nothing caught;
    // an integral float for its integer answer is a documented equivalence.
    let classes = sql_rows(
        data,
        "SELECT DISTINCT b.class, b.verdict FROM battery_runs b JOIN environments e USING (env_id) \
         WHERE e.env_name = 'SoundSumEnv' ORDER BY 1, 2",
    );
    let tried: std::collections::BTreeSet<&str> = classes.iter().map(|r| r["class"].as_str().unwrap()).collect();
    assert_eq!(tried.len(), 10, "{classes:?}");
    assert!(!tried.contains("optional_parameter"), "{classes:?}");
    assert!(classes.iter().all(|r| r["verdict"] == "held" || r["verdict"] == "lenient_matching"), "{classes:?}");
    let optional = runs("OptionalOverrideEnv", "optional_parameter");
    assert!(optional.iter().any(|r| r["verdict"] == "reward_hackable"), "{optional:?}");
    let padding = runs("StepLimitPaysEnv", "padding");
    assert_eq!(padding[0]["verdict"], "reward_hackable", "{padding:?}");
    assert_eq!(padding[0]["from_reset"], true);
    let replay = runs("ReplayDriftEnv", "serve_replay");
    assert!(replay.iter().any(|r| r["verdict"] == "not_servable"), "{replay:?}");
}
