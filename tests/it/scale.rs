//! The sharded dataset at work: N shard processes plus `finalize` build what one process builds,
//! `finalize` waits for every shard, a dataset in the single-file layout is migrated on first use,
//! and an unknown URL scheme is refused. Datasets on object stores: `object_stores.rs`.

use crate::util::{codegym, dataset, import_release, repo, run_ok, sample_build, sql_rows, table_bytes};
use codegym::dataset::Table;
use std::path::Path;
use std::process::{Child, Stdio};

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
