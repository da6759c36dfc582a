//! The sharded dataset at work: N shard processes plus `finalize` build what one process builds,
//! `finalize` waits for every shard, a dataset in the single-file layout is migrated on first use,
//! an unknown URL scheme is refused, and a dataset on S3 (a local S3-compatible server started by
//! the test) builds, verifies and answers SQL like a local one.

use crate::util::{codegym, dataset, import_release, repo, run_ok, sample_build, sql_rows, table_bytes, test_python};
use codegym::dataset::Table;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tables a rebuild must reproduce byte for byte (`runs` and `oracle_runs` hold timings).
const DETERMINISTIC: [&str; 10] = [
    "problems",
    "llm_calls",
    "environments",
    "task_configs",
    "oracle_candidates",
    "tool_call_stats",
    "rejects",
    "near_duplicates",
    "splits",
    "llm",
];

#[test]
fn three_shard_processes_and_finalize_build_what_one_process_builds() {
    let single = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sharded");
    let children: Vec<Child> = (0..3)
        .map(|i| {
            codegym()
                .current_dir(repo())
                .args(["build", "--quiet", "--data", data.to_str().unwrap(), "--shard", &format!("{i}/3")])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a shard process failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    run_ok(&["finalize", "--data", data.to_str().unwrap()]);
    for table in DETERMINISTIC {
        assert!(table_bytes(single, table) == table_bytes(&data, table), "{table} differs from the single-process build");
    }
    let shards = sql_rows(&data, "SELECT count(DISTINCT shard) AS n FROM environments");
    assert!(shards[0]["n"].as_i64().unwrap() > 3, "environments spread over shards: {shards:?}");
}

#[test]
fn finalize_waits_for_every_shard_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
    let output = codegym().args(["finalize", "--data", data.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unfinished work (environments awaiting verification)") && stderr.contains("shard(s)"), "{stderr}");
    run_ok(&["verify", "--data", data.to_str().unwrap()]);
    let handle = dataset(&data);
    let _lease = handle.lease(5, &|_| {}).unwrap();
    let output = codegym().args(["finalize", "--data", data.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shard(s) 5 are leased"), "{stderr}");
}

#[test]
fn an_unknown_scheme_is_an_error_and_never_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = codegym().current_dir(dir.path()).args(["verify", "--data", "ftp://bucket/data"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("unknown scheme `ftp://`") && stderr.contains("s3://"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was written locally");
}

#[test]
fn a_dataset_in_the_single_file_layout_is_migrated_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
    run_ok(&["verify", "--data", data.to_str().unwrap()]);
    let before = sql_rows(&data, "SELECT env_id, status FROM environments ORDER BY env_id");
    let splits = sql_rows(&data, "SELECT env_id, split FROM splits ORDER BY env_id");
    to_single_file_layout(&data);
    assert!(!data.join("manifest.json").exists());
    let after = sql_rows(&data, "SELECT env_id, status FROM environments ORDER BY env_id");
    assert_eq!(after, before, "every row is still there after the migration");
    assert_eq!(sql_rows(&data, "SELECT env_id, split FROM splits ORDER BY env_id"), splits, "the split as assigned stays");
    assert!(data.join("manifest.json").is_file());
    assert_eq!(sql_rows(&data, "SELECT count(*) AS n FROM rejects WHERE reason = 'duplicate_config'")[0]["n"], 0);
    assert_eq!(
        sql_rows(&data, "SELECT count(*) AS n FROM rejects WHERE reason = 'config_duplicate'")[0]["n"],
        1,
        "old spellings are rewritten"
    );
    assert!(!data.join("environments/part-00000.parquet").exists());
}

/// Rewrites a dataset the way the previous release laid it out: one `part-00000.parquet` per table
/// without the `shard` column, the split and near-duplicate groups as environment columns, the
/// old spelling of a reason, no manifest.
fn to_single_file_layout(data: &Path) {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use std::sync::Arc;
    let handle = dataset(data);
    let splits: std::collections::HashMap<String, String> = sql_rows(data, "SELECT env_id, split FROM splits")
        .into_iter()
        .map(|r| (r["env_id"].as_str().unwrap().to_string(), r["split"].as_str().unwrap().to_string()))
        .collect();
    for table in Table::ALL {
        let batches = handle.read_batches(table).unwrap();
        std::fs::remove_dir_all(data.join(table.name())).ok();
        if batches.is_empty() || matches!(table, Table::Splits | Table::NearDuplicates) {
            continue;
        }
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.remove_column(b.schema().index_of("shard").unwrap());
                if table == Table::Environments {
                    let ids = b.column_by_name("env_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
                    let split: StringArray = ids.iter().map(|id| id.and_then(|id| splits.get(id).cloned())).collect();
                    let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
                    fields.push(Arc::new(arrow::datatypes::Field::new("split", arrow::datatypes::DataType::Utf8, true)));
                    let mut columns = b.columns().to_vec();
                    columns.push(Arc::new(split) as ArrayRef);
                    b = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
                }
                b
            })
            .collect();
        std::fs::create_dir_all(data.join(table.name())).unwrap();
        let file = std::fs::File::create(data.join(table.name()).join("part-00000.parquet")).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.close().unwrap();
    }
    // One reject in the old spelling.
    let rejects = data.join("rejects");
    std::fs::create_dir_all(&rejects).unwrap();
    let schema = Arc::new(arrow::datatypes::Schema::new(
        ["stage", "entity_id", "reason"]
            .map(|n| arrow::datatypes::Field::new(n, arrow::datatypes::DataType::Utf8, false))
            .to_vec(),
    ));
    let columns: Vec<ArrayRef> =
        ["import", "c0ffee", "duplicate_config"].map(|v| Arc::new(StringArray::from(vec![v])) as ArrayRef).to_vec();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(rejects.join("part-00000.parquet")).unwrap(), schema, None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    std::fs::remove_file(data.join("manifest.json")).unwrap();
}

/// A local S3-compatible server (moto), stopped when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_s3(python: &str) -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the S3 server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let create = format!(
        "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='codegym')",
        server.endpoint
    );
    let made = Command::new(python).args(["-c", &create]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    server
}

#[test]
fn a_dataset_on_s3_imports_verifies_and_answers_sql_as_a_local_one() {
    let Some(python) = test_python(&["moto.server", "boto3"]) else { return };
    let server = start_s3(&python);
    let s3 = |args: &[&str]| {
        let output = codegym()
            .args(args)
            .env("AWS_ENDPOINT_URL", &server.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap();
        crate::util::assert_success(&output, args);
        String::from_utf8(output.stdout).unwrap()
    };
    let release = repo().join("data-samples/codegym");
    let (envs, tasks) = (release.join("envs.jsonl"), release.join("tasks.jsonl"));
    let url = "s3://codegym/nightly/data";
    s3(&["import-codegym", "--envs", envs.to_str().unwrap(), "--tasks", tasks.to_str().unwrap(), "--data", url]);
    s3(&["verify", "--data", url]);
    let query = "SELECT env_name, status FROM environments ORDER BY env_name";
    let remote = s3(&["sql", "--data", url, "--format", "csv", query]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data");
    import_release(&release, "jsonl", &local);
    run_ok(&["verify", "--data", local.to_str().unwrap()]);
    assert_eq!(remote, run_ok(&["sql", "--data", local.to_str().unwrap(), "--format", "csv", query]));
    assert!(remote.lines().count() > 5, "{remote}");
    // An export reads the dataset where it is, and writes what it writes from the local copy.
    let (from_s3, from_local) = (dir.path().join("from-s3"), dir.path().join("from-local"));
    s3(&["export", "--data", url, "--format", "hf", "--out", from_s3.to_str().unwrap()]);
    run_ok(&["export", "--data", local.to_str().unwrap(), "--format", "hf", "--out", from_local.to_str().unwrap()]);
    let rows = |out: &Path| std::fs::read(out.join("data/train-00000-of-00001.parquet")).unwrap();
    assert_eq!(rows(&from_s3), rows(&from_local), "the same rows, byte for byte");
}
