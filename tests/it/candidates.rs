//! Oracle candidates: each is smoke-tested inside the module, then run on every configuration;
//! the oracle is the passing candidate with the fewest calls, and a candidate can rescue an
//! environment whose own `solve` is wrong.

use crate::util::{dataset, import_release, repo, run_ok, sql_rows};
use codegym::dataset::Table;
use codegym::tables::OracleCandidateRow;

const WRONG: &str =
    "import json\n\ndef solve(self):\n    return self.step(json.dumps({'name': 'Done', 'parameters': {'answer': 0}}))[1]\n";

/// The sample GridShortestPathEnv's own solve answers 0 when the target cannot be reached; this
/// one answers -1, as its reference does.
const FIXED: &str = r#"import json

def solve(self):
    def call(name, **parameters):
        return self.step(json.dumps({"name": name, "parameters": parameters}))[1]

    layout = json.loads(call("Observe"))
    start, target = layout["start"], layout["target"]
    call("MarkVisited", row=start[0], col=start[1], distance=0)
    call("Enqueue", row=start[0], col=start[1])
    moves = -1
    while True:
        front = call("Dequeue")
        if front == "EMPTY":
            break
        row, col = json.loads(front)
        here = int(call("GetDistance", row=row, col=col))
        if [row, col] == target:
            moves = here
            break
        for r, c in json.loads(call("GetNeighbors", row=row, col=col)):
            if call("IsVisited", row=r, col=c) == "false":
                call("MarkVisited", row=r, col=c, distance=here + 1)
                call("Enqueue", row=r, col=c)
    return call("Done", answer=moves)
"#;

#[test]
fn a_candidate_that_passes_everything_becomes_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
    let env = sql_rows(&data, "SELECT env_id FROM environments WHERE env_name = 'GridShortestPathEnv'");
    let env_id = env[0]["env_id"].as_str().unwrap().to_string();
    let candidate = |candidate: i32, solver: &str| OracleCandidateRow {
        env_id: env_id.clone(),
        candidate,
        solver: solver.into(),
        origin: Some("test".into()),
        smoke_test: None,
    };
    let handle = dataset(&data);
    let rows = vec![candidate(1, WRONG), candidate(2, FIXED)];
    handle.upsert(Table::OracleCandidates, rows, |c| handle.shard_of(&c.env_id)).unwrap();
    run_ok(&["verify", "--data", data.to_str().unwrap()]);

    let env = sql_rows(&data, &format!("SELECT status, oracle_candidate FROM environments WHERE env_id = '{env_id}'"));
    assert_eq!(env[0], serde_json::json!({"status": "verified", "oracle_candidate": 2}), "the fixed candidate rescues it");
    let smoke = sql_rows(&data, "SELECT candidate, smoke_test = 'pass' AS passed FROM oracle_candidates ORDER BY candidate");
    assert_eq!(
        smoke,
        vec![serde_json::json!({"candidate": 1, "passed": false}), serde_json::json!({"candidate": 2, "passed": true})]
    );
    let cells = sql_rows(
        &data,
        &format!(
            "SELECT candidate, sum(CASE WHEN verdict = 'pass' THEN 1 ELSE 0 END) AS passed, count(*) AS n FROM oracle_runs WHERE env_id = '{env_id}' GROUP BY candidate ORDER BY candidate"
        ),
    );
    assert_eq!(
        cells,
        vec![serde_json::json!({"candidate": 0, "passed": 5, "n": 8}), serde_json::json!({"candidate": 2, "passed": 8, "n": 8}),],
        "candidate 1 failed its smoke test: its cells are not run"
    );
    let configs = sql_rows(
        &data,
        &format!(
            "SELECT count(*) AS n FROM task_configs WHERE env_id = '{env_id}' AND oracle_passed AND oracle_trajectory IS NOT NULL"
        ),
    );
    assert_eq!(configs[0]["n"], 8, "every configuration carries the chosen oracle's trajectory");
}
