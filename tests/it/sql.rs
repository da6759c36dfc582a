//! `codegym sql`: output formats, named queries, errors users can act on.

use crate::util::{codegym, import_release, repo, run_ok};

fn sample_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    import_release(&repo().join("data-samples/codegym"), "jsonl", dir.path());
    dir
}

#[test]
fn queries_print_as_table_csv_and_json_lines() {
    let dir = sample_dataset();
    let data = dir.path().to_str().unwrap();
    let query = "SELECT env_name, status FROM environments ORDER BY env_name LIMIT 2";
    let csv = run_ok(&["sql", "--data", data, "--format", "csv", query]);
    assert_eq!(csv.lines().next(), Some("env_name,status"));
    assert_eq!(csv.lines().count(), 3);
    let json = run_ok(&["sql", "--data", data, "--format", "json", query]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "pending");
    let table = run_ok(&["sql", "--data", data, query]);
    assert!(table.contains("| env_name"), "{table}");
}

#[test]
fn every_named_query_runs() {
    let dir = sample_dataset();
    for entry in std::fs::read_dir(repo().join("queries")).unwrap() {
        let path = entry.unwrap().path();
        run_ok(&["sql", "--data", dir.path().to_str().unwrap(), "--file", path.to_str().unwrap()]);
    }
}

#[test]
fn an_unknown_table_is_an_error_that_lists_the_tables() {
    let dir = sample_dataset();
    let output = codegym().args(["sql", "--data", dir.path().to_str().unwrap(), "SELECT * FROM enviroments"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enviroments") && stderr.contains("environments"), "{stderr}");
}
