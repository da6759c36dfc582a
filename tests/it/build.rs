//! `codegym build`: the whole pipeline on the bundled samples, offline, from recorded LLM answers:
//! ingest and preflight, the three LLM stages with their parsing and checks, verification and
//! curation. Every stage leaves rejects with their own reasons, and nothing is lost.

use crate::util::{codegym, count, repo, sample_build, sql_rows};
use std::collections::BTreeSet;
use std::path::Path;

fn strings(rows: &[serde_json::Value], column: &str) -> BTreeSet<String> {
    rows.iter().map(|r| r[column].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn the_main_job_runs_the_whole_pipeline_offline_on_the_samples() {
    let data = sample_build();
    // Every problem that passed preflight became an environment or an environment-stage reject.
    let eligible = count(data, "SELECT count(*) AS n FROM problems WHERE preflight = 'pass'");
    assert_eq!(eligible, 29);
    let accounted = count(
        data,
        "SELECT count(*) AS n FROM problems p WHERE p.preflight = 'pass' AND (\
         EXISTS (SELECT 1 FROM environments e WHERE e.problem_id = p.problem_id) OR \
         EXISTS (SELECT 1 FROM rejects r WHERE r.stage = 'environment' AND r.entity_id = p.problem_id))",
    );
    assert_eq!(accounted, eligible, "every eligible problem ends in a table");

    let reasons = strings(&sql_rows(data, "SELECT DISTINCT stage || '/' || reason AS r FROM rejects"), "r");
    for expected in [
        "ingest/duplicate_question",
        "environment/env_unparseable",
        "extract/contract_failed",
        "extract/self_test_failed",
        "configs/config_not_json",
        "configs/config_wrong_env",
        "configs/config_duplicate",
        "oracle/solver_unparseable",
        "verify/oracle_failed",
    ] {
        assert!(reasons.contains(expected), "no {expected} reject in {reasons:?}");
    }

    let statuses = sql_rows(data, "SELECT source_id, status FROM environments ORDER BY source_id");
    let status = |id: &str| statuses.iter().find(|r| r["source_id"] == id).map(|r| r["status"].as_str().unwrap().to_string());
    assert_eq!(status("cgs_0005"), None, "unparseable answers make no environment");
    assert_eq!(status("cgs_0008").as_deref(), Some("contract_failed"), "a tool without a docstring");
    assert_eq!(status("cgs_0017").as_deref(), Some("self_test_failed"));
    assert_eq!(status("cgs_0011").as_deref(), Some("oracle_failed"), "reference logic that disagrees with the solution");
    assert_eq!(status("cgs_0001").as_deref(), Some("verified"), "the answer after the reasoning counts");
    assert_eq!(status("cgs_0007").as_deref(), Some("verified"), "an empty answer is right for an empty input");
    let verified = count(data, "SELECT count(*) AS n FROM environments WHERE status = 'verified'");
    assert_eq!(verified, 25, "{statuses:?}");

    // Configurations keep their difficulty band; the two samples are deduplicated.
    let bands = sql_rows(
        data,
        "SELECT difficulty, count(*) AS n FROM task_configs c JOIN environments e ON c.env_id = e.env_id \
         WHERE e.source_id = 'cgs_0001' GROUP BY difficulty ORDER BY difficulty",
    );
    assert_eq!(strings(&bands, "difficulty"), BTreeSet::from(["easy".into(), "hard".into(), "medium".into()]));
    let dupes = count(
        data,
        "SELECT count(*) AS n FROM (SELECT env_id, config FROM task_configs GROUP BY env_id, config HAVING count(*) > 1)",
    );
    assert_eq!(dupes, 0);
    let kept = count(data, "SELECT count(*) AS n FROM task_configs WHERE kept");
    assert!(kept >= 300, "kept {kept}");
    assert_eq!(
        count(
            data,
            "SELECT count(*) AS n FROM task_configs c JOIN environments e ON c.env_id = e.env_id WHERE e.source_id = 'cgs_0024' AND c.kept"
        ),
        0,
        "an environment with 3 tools is curated away"
    );

    // Solver candidates: one that never finishes fails its smoke test; one that reads the hidden
    // state fails every cell (it gets a `self` with `step` only) and is never the oracle.
    let candidates = sql_rows(
        data,
        "SELECT e.source_id, o.candidate, o.smoke_test FROM oracle_candidates o JOIN environments e ON o.env_id = e.env_id",
    );
    let smoke = |id: &str, k: i64| {
        candidates
            .iter()
            .find(|r| r["source_id"] == id && r["candidate"] == k)
            .map(|r| r["smoke_test"].as_str().unwrap().to_string())
    };
    assert!(smoke("cgs_0007", 3).unwrap().contains("time limit"), "{:?}", smoke("cgs_0007", 3));
    assert_eq!(smoke("cgs_0007", 1).as_deref(), Some("pass"));
    let cells_of = |id: &str, k: i64| {
        let query = format!(
            "SELECT count(*) AS n FROM oracle_runs r JOIN environments e ON r.env_id = e.env_id \
             WHERE e.source_id = '{id}' AND r.candidate = {k}"
        );
        count(data, &query)
    };
    assert_eq!(cells_of("cgs_0007", 3), 0, "a candidate that failed its smoke test runs no cell, even after the job resumed");
    assert_eq!(cells_of("cgs_0007", 1), 30);
    let cheater = sql_rows(
        data,
        "SELECT DISTINCT r.verdict, r.detail FROM oracle_runs r JOIN environments e ON r.env_id = e.env_id \
         WHERE e.source_id = 'cgs_0020' AND r.candidate = 1",
    );
    assert_eq!(cheater.len(), 1, "{cheater:?}");
    assert_eq!(cheater[0]["verdict"], "error");
    assert!(cheater[0]["detail"].as_str().unwrap().contains("may only call self.step"), "{cheater:?}");
    let chosen = sql_rows(data, "SELECT oracle_candidate FROM environments WHERE source_id = 'cgs_0020'");
    assert_ne!(chosen[0]["oracle_candidate"], 1);

    // Every LLM call was replayed from the recording and is in llm_calls.
    let calls = sql_rows(
        data,
        "SELECT stage, prompt_version, count(*) AS n, sum(CASE WHEN cached THEN 1 ELSE 0 END) AS cached, \
         count(latency_ms) AS timed, max(cardinality(responses)) AS choices FROM llm_calls GROUP BY stage, prompt_version ORDER BY stage",
    );
    let summary: Vec<(String, String, i64, i64, i64, i64)> = calls
        .iter()
        .map(|r| {
            let n = |c: &str| r[c].as_i64().unwrap();
            (
                r["stage"].as_str().unwrap().into(),
                r["prompt_version"].as_str().unwrap().into(),
                n("n"),
                n("cached"),
                n("timed"),
                n("choices"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("configs".into(), "configs.v1".into(), 26, 26, 0, 2),
            ("environment".into(), "environment.v1".into(), 29, 29, 0, 1),
            ("oracle".into(), "oracle.v1".into(), 26, 26, 0, 3),
        ]
    );
    let leaks = count(
        data,
        "SELECT count(*) AS n FROM llm_calls WHERE stage = 'oracle' AND \
         (prompt LIKE '%Example Output%' OR prompt LIKE '%get_ref_answer%' OR prompt LIKE '%gymnasium%')",
    );
    assert_eq!(leaks, 0, "oracle prompts show the agent's view only, never the environment's source");
    let runs = sql_rows(data, "SELECT llm_requests, stage_stats FROM runs WHERE command = 'build'");
    assert_eq!(runs[0]["llm_requests"], 81);
}

#[test]
fn tables_are_readable_by_pyarrow_as_they_are() {
    let probe = std::process::Command::new("python3").args(["-c", "import pyarrow"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: python3 has no pyarrow");
        return;
    }
    let data = sample_build();
    let script = "import sys, pyarrow.dataset as ds\nfor t in sys.argv[2:]:\n    print(t, ds.dataset(sys.argv[1] + '/' + t, format='parquet').count_rows())\n";
    let tables = [
        "problems",
        "llm_calls",
        "environments",
        "task_configs",
        "oracle_candidates",
        "oracle_runs",
        "tool_call_stats",
        "rejects",
    ];
    let output = std::process::Command::new("python3").arg("-c").arg(script).arg(data).args(tables).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for table in tables {
        let sql_count = count(data, &format!("SELECT count(*) AS n FROM {table}"));
        assert!(stdout.contains(&format!("{table} {sql_count}\n")), "{table}: pyarrow saw {stdout}");
    }
}

/// Every table file of `data` but the run log, as bytes (timings excluded: `oracle_runs` holds
/// `duration_ms`).
fn deterministic_tables(data: &Path) -> Vec<(String, Vec<u8>)> {
    let tables = ["problems", "llm_calls", "environments", "task_configs", "oracle_candidates", "tool_call_stats", "rejects"];
    let mut files: Vec<(String, Vec<u8>)> = tables.iter().flat_map(|table| table_files(data, table)).collect();
    files.sort();
    files
}

/// The files of one table folder, by name.
fn table_files(data: &Path, table: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(data.join(table))
        .unwrap_or_else(|e| panic!("{table}: {e}"))
        .map(|entry| {
            let path = entry.unwrap().path();
            (format!("{table}/{}", path.file_name().unwrap().to_string_lossy()), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_build_killed_again_and_again_resumes_at_once_and_ends_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("build");
    let args = ["build", "--data", data.to_str().unwrap(), "--threads", "1"];
    // kill -9 at several points (each run resumes what the last one left, then dies in turn).
    for (run, delay_ms) in [700u64, 3000, 9000].into_iter().enumerate() {
        let log = dir.path().join(format!("run-{run}.stderr"));
        let mut child = codegym().current_dir(repo()).args(args).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(!stderr.contains("waiting for shard"), "run {run} waited for a dead process's lease:\n{stderr}");
    }
    let output = codegym().current_dir(repo()).args(args).output().unwrap();
    crate::util::assert_success(&output, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("waiting for shard"), "{stderr}");
    let with_split = |data: &Path| {
        let mut tables = deterministic_tables(data);
        tables.extend(table_files(data, "splits"));
        tables.extend(table_files(data, "near_duplicates"));
        tables
    };
    assert!(with_split(&data) == with_split(sample_build()), "the tables differ from an uninterrupted build's");
}

#[test]
fn a_second_build_asks_nothing_again_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("build");
    std::process::Command::new("cp").arg("-r").arg(sample_build()).arg(&data).status().unwrap();
    let before = deterministic_tables(&data);
    let output =
        codegym().current_dir(repo()).args(["build", "--data", data.to_str().unwrap(), "--threads", "1"]).output().unwrap();
    crate::util::assert_success(&output, &["build"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("0 environments from 0 problems") && stderr.contains("0 LLM calls"), "{stderr}");
    assert!(before == deterministic_tables(&data), "a build with nothing to do rewrites nothing differently");
}

#[test]
fn a_request_missing_from_the_recording_is_an_error_naming_problem_and_stage() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let row = serde_json::json!({
        "question_id": "new_0001",
        "question": "Write a function `double(x)` that returns twice `x`.",
        "solution": "def double(x):\n    return 2 * x\n",
        "test": "from solution import double\n\ndef test_double():\n    assert double(4) == 8\n",
    });
    std::fs::write(&corpus, format!("{row}\n")).unwrap();
    let replay = format!("replay:{}", repo().join("data-samples/llm/recorded").display());
    let data = dir.path().join("data");
    let args = ["build", "--corpus", corpus.to_str().unwrap(), "--llm", &replay, "--data", data.to_str().unwrap()];
    let output = codegym().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no recorded response for the environment request of new_0001"), "{stderr}");
}
