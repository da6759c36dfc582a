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

/// Reads every table of DIR with DuckDB by glob (`DIR/<table>/*.parquet`) as a view of that name,
/// prints `<table> <rows> <columns>` for each, then runs every named query over the views.
const DUCKDB_OVER_GLOBS: &str = r#"
import pathlib, sys, duckdb
data, queries, tables = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
con = duckdb.connect()
for table in tables:
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}/*.parquet')")
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    columns = len(con.execute(f"DESCRIBE {table}").fetchall())
    print(table, rows, columns)
for query in sorted(queries.glob("*.sql")):
    try:
        con.execute(query.read_text()).fetchall()
    except Exception as e:
        sys.exit(f"{query.name}: {e}")
"#;

/// Every table folder holds a Parquet file (a zero-row one with the table's
/// columns when the table is empty), so DuckDB reads every table by glob with the rows and columns
/// `codegym sql` sees, and every named query runs in DuckDB over those globs: after the sample
/// build, and after a bare ingest.
#[test]
fn duckdb_reads_every_table_by_glob_and_runs_every_named_query() {
    let Some(python) = crate::util::test_python(&["duckdb"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ingested = dir.path().join("ingested");
    let corpus = repo().join("data-samples/problems.parquet");
    crate::util::run_ok_status(&[
        "ingest",
        "--corpus",
        corpus.to_str().unwrap(),
        "--data",
        ingested.to_str().unwrap(),
        "--no-preflight",
    ]);
    let tables: Vec<&str> = codegym::dataset::Table::ALL.iter().map(|t| t.name()).collect();
    for data in [crate::util::sample_build(), ingested.as_path()] {
        let output = std::process::Command::new(&python)
            .arg("-c")
            .arg(DUCKDB_OVER_GLOBS)
            .arg(data)
            .arg(repo().join("queries"))
            .args(&tables)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {stdout}\n{}", data.display(), String::from_utf8_lossy(&output.stderr));
        for table in &tables {
            let rows = crate::util::count(data, &format!("SELECT count(*) AS n FROM {table}"));
            let columns = crate::util::count(
                data,
                &format!("SELECT count(*) AS n FROM information_schema.columns WHERE table_name = '{table}'"),
            );
            assert!(stdout.lines().any(|l| l == format!("{table} {rows} {columns}")), "{table}: DuckDB saw {stdout}");
        }
    }
}

/// A SQL typo is one error in words (not DataFusion's debug form, not twice),
/// with a hint.
#[test]
fn a_sql_typo_is_one_error_in_words_with_a_hint() {
    let dir = sample_dataset();
    let output = codegym().args(["sql", "--data", dir.path().to_str().unwrap(), "SELEC * FROM environments"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: the SQL does not parse: Expected: an SQL statement, found: SELEC"), "{stderr}");
    assert_eq!(stderr.matches("Expected:").count(), 1, "{stderr}");
    assert!(!stderr.contains("ParserError") && stderr.contains("hint: "), "{stderr}");
    assert!(output.stdout.is_empty());
    // A query that parses but cannot run says so once, in words, with a hint too.
    let output =
        codegym().args(["sql", "--data", dir.path().to_str().unwrap(), "SELECT nope FROM environments"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.starts_with("error: the SQL cannot run: No field named nope."), "{stderr}");
    assert_eq!(stderr.matches("No field named").count(), 1, "{stderr}");
    assert!(stderr.contains("hint: ") && !stderr.contains("Caused by"), "{stderr}");
}

/// `sql` takes `--threads` and `--quiet`: the result on stdout either way, a
/// row count on stderr unless quiet.
#[test]
fn sql_takes_threads_and_quiet() {
    let dir = sample_dataset();
    let data = dir.path().to_str().unwrap();
    let query = "SELECT count(*) AS n FROM environments";
    let output = codegym().args(["sql", "--data", data, "--format", "csv", "--threads", "1", query]).output().unwrap();
    crate::util::assert_success(&output, &["sql"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n\n6\n");
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("sql: 1 rows"), "{}", String::from_utf8_lossy(&output.stderr));
    let output = codegym().args(["sql", "--data", data, "--format", "csv", "--quiet", "--threads", "2", query]).output().unwrap();
    crate::util::assert_success(&output, &["sql"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n\n6\n");
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// A SQL file that starts with a byte order mark runs.
#[test]
fn a_sql_file_with_a_byte_order_mark_runs() {
    let dir = sample_dataset();
    let file = dir.path().join("bom.sql");
    std::fs::write(&file, "\u{feff}SELECT count(*) AS n FROM environments").unwrap();
    let out = run_ok(&["sql", "--data", dir.path().to_str().unwrap(), "--format", "csv", "--file", file.to_str().unwrap()]);
    assert_eq!(out, "n\n6\n");
}
