//! Migration of a dataset in the earlier single-file layout (`<table>/part-00000.parquet`, no
//! manifest, no `shard` column) to the sharded one, on first use: every row gets the shard the
//! stages would have given it (a problem's from its normalised question, what derives from a
//! problem or an environment inherits its shard), the environments' near-duplicate groups and
//! split move to their own tables (the split as assigned stays), and old spellings of reasons are
//! rewritten. New files are written first, then the manifest, then the old files are removed, so
//! a migration killed at any point is done again, whole, on the next use.
//!
//! A sharded dataset of the previous schema version is upgraded on first use too
//! ([`upgrade_schema`]): the files whose columns changed type are rewritten with the current types,
//! then the manifest says the current version.

use super::store::Store;
use super::{Dataset, DatasetError, Manifest, Order, Table, layout, reader};
use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use std::collections::{BTreeMap, HashMap};

const LEGACY_PART: &str = "part-00000.parquet";

/// Reasons spelled differently before reasons were one enum per column.
const RENAMED_REASONS: [(&str, &str); 1] = [("duplicate_config", "config_duplicate")];

/// The schema version [`upgrade_schema`] upgrades from.
const PREVIOUS_SCHEMA_VERSION: &str = "2";

/// Whether a dataset's files are of the previous schema version.
pub(crate) fn is_previous_schema(manifest: &Manifest) -> bool {
    manifest.schema_version == PREVIOUS_SCHEMA_VERSION
}

/// Rewrites the tables whose columns changed type since the previous schema version (`runs`:
/// `started_at`, RFC 3339 text, is a timestamp), shard by shard, each under its lease so that a
/// run recorded meanwhile is kept. The reader casts a file's columns to the current types, so
/// rewriting is reading and writing back; a file already rewritten comes out the same, and an
/// upgrade killed midway is finished by the next one. The caller then writes the manifest.
pub(crate) fn upgrade_schema(dataset: &Dataset) -> Result<(), DatasetError> {
    dataset.each_leased(&dataset.shards_with(Table::Runs)?, "schema upgrade", |shard| {
        let batches = dataset.read_shard_batches(Table::Runs, shard)?;
        dataset.write_shard_batches(Table::Runs, shard, &batches, Order::Key).map(|_| ())
    })
}

/// Whether the store holds tables in the single-file layout.
pub(crate) fn is_single_file_layout(store: &Store) -> Result<bool, DatasetError> {
    for table in Table::ALL {
        if store.list(table.name())?.iter().any(|n| n == LEGACY_PART) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes single-file tables a finished migration left behind (it was killed before the end).
pub(crate) fn remove_leftovers(store: &Store) -> Result<(), DatasetError> {
    for table in Table::ALL {
        store.delete(&format!("{}/{LEGACY_PART}", table.name()))?;
    }
    Ok(())
}

/// The rows of a single-file table, as stored (unknown columns kept).
fn legacy(store: &Store, table: Table) -> Result<Vec<RecordBatch>, DatasetError> {
    let relative = format!("{}/{LEGACY_PART}", table.name());
    let Some(bytes) = store.get(&relative)? else { return Ok(Vec::new()) };
    reader::raw_batches(bytes, &store.describe(&relative))
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    match batch.column_by_name(column) {
        Some(array) => {
            let array = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).expect("text columns cast to text");
            let array: &StringArray = array.as_string();
            (0..array.len()).map(|i| (!array.is_null(i)).then(|| array.value(i).to_string())).collect()
        }
        None => vec![None; batch.num_rows()],
    }
}

/// How a table's row finds its shard (from the roots found so far), and the keys later tables'
/// rows may name as their root.
type Route<'a> = dyn Fn(&RecordBatch, usize, &HashMap<String, u32>) -> (u32, Vec<String>) + 'a;

/// Migrates the single-file tables in `store` into a new dataset of `shards` shards.
pub(crate) fn migrate(store: &Store, location: &str, shards: u32) -> Result<(), DatasetError> {
    let mut roots: HashMap<String, u32> = HashMap::new();
    let shard_of = |key: &str| layout::shard_of(key, shards);
    // Order matters: each table's rows find their root in the tables before it.
    let plan: [(Table, &Route); 9] = [
        (Table::Problems, &|b, i, _| {
            let question = strings(b, "question")[i].clone().unwrap_or_default();
            let id = strings(b, "problem_id")[i].clone().unwrap_or_default();
            (shard_of(&layout::question_key(&question)), vec![id])
        }),
        (Table::Environments, &|b, i, roots| {
            let env = strings(b, "env_id")[i].clone().unwrap_or_default();
            let root = strings(b, "problem_id")[i].as_ref().and_then(|p| roots.get(p).copied());
            (root.unwrap_or_else(|| shard_of(&env)), vec![env])
        }),
        (Table::TaskConfigs, &|b, i, roots| inherit(b, i, roots, "env_id", &["config_id"], &shard_of)),
        (Table::OracleCandidates, &|b, i, roots| inherit(b, i, roots, "env_id", &[], &shard_of)),
        (Table::OracleRuns, &|b, i, roots| inherit(b, i, roots, "env_id", &[], &shard_of)),
        (Table::ToolCallStats, &|b, i, roots| inherit(b, i, roots, "env_id", &[], &shard_of)),
        (Table::LlmCalls, &|b, i, roots| inherit(b, i, roots, "entity_id", &[], &shard_of)),
        (Table::Rejects, &|b, i, roots| inherit(b, i, roots, "entity_id", &[], &shard_of)),
        (Table::Runs, &|b, i, roots| inherit(b, i, roots, "run_id", &[], &shard_of)),
    ];
    let dataset = Dataset::for_migration(store, location, shards);
    for (table, route) in plan {
        let batches = legacy(store, table)?;
        let mut by_shard: BTreeMap<u32, Vec<RecordBatch>> = BTreeMap::new();
        for batch in &batches {
            let batch = rename_reasons(table, batch);
            let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for i in 0..batch.num_rows() {
                let (shard, keys) = route(&batch, i, &roots);
                rows.entry(shard).or_default().push(i as u32);
                roots.extend(keys.into_iter().map(|k| (k, shard)));
            }
            for (shard, indices) in rows {
                let taken = arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(indices))
                    .map_err(|e| DatasetError::arrow(table.name(), e))?;
                by_shard.entry(shard).or_default().push(taken);
            }
        }
        let order = if table == Table::Problems { Order::AsGiven } else { Order::Key };
        for (shard, batches) in by_shard {
            let known = batches.iter().map(|b| known_columns(table, b)).collect::<Result<Vec<_>, _>>()?;
            dataset.write_shard_batches(table, shard, &known, order)?;
        }
        if table == Table::Environments {
            migrate_groups(&dataset, &batches, &roots)?;
        }
    }
    layout::create_manifest(store, shards)?;
    remove_leftovers(store)
}

/// `batch` without the columns `table` no longer has (the environments' split, now a table).
fn known_columns(table: Table, batch: &RecordBatch) -> Result<RecordBatch, DatasetError> {
    let schema = table.schema();
    let keep: Vec<usize> =
        (0..batch.num_columns()).filter(|&i| schema.field_with_name(batch.schema().field(i).name()).is_ok()).collect();
    batch.project(&keep).map_err(|e| DatasetError::arrow(table.name(), e))
}

/// A row's shard from the root its `column` names (or a hash of that column's value), and the
/// keys in `own` that rows of later tables may name as their root.
fn inherit(
    batch: &RecordBatch,
    i: usize,
    roots: &HashMap<String, u32>,
    column: &str,
    own: &[&str],
    shard_of: &dyn Fn(&str) -> u32,
) -> (u32, Vec<String>) {
    let root = strings(batch, column)[i].clone().unwrap_or_default();
    let shard = roots.get(&root).copied().unwrap_or_else(|| shard_of(&root));
    (shard, own.iter().filter_map(|c| strings(batch, c)[i].clone()).collect())
}

/// Rewrites the old spellings of reasons in a `rejects` batch.
fn rename_reasons(table: Table, batch: &RecordBatch) -> RecordBatch {
    let Some(index) = batch.schema().index_of("reason").ok().filter(|_| table == Table::Rejects) else {
        return batch.clone();
    };
    let renamed: StringArray = strings(batch, "reason")
        .into_iter()
        .map(|r| r.map(|r| RENAMED_REASONS.iter().find(|(old, _)| *old == r).map_or(r.clone(), |(_, new)| new.to_string())))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[index] = std::sync::Arc::new(renamed);
    RecordBatch::try_new(batch.schema(), columns).expect("same schema, same length")
}

/// The near-duplicate groups and the split the single-file `environments` table carried, as rows
/// of their own tables.
fn migrate_groups(dataset: &Dataset, batches: &[RecordBatch], roots: &HashMap<String, u32>) -> Result<(), DatasetError> {
    #[derive(serde::Serialize)]
    struct Group {
        env_id: String,
        near_duplicate_of: String,
    }
    #[derive(serde::Serialize)]
    struct Split {
        env_id: String,
        split: String,
    }
    let mut groups: BTreeMap<u32, Vec<Group>> = BTreeMap::new();
    let mut splits: BTreeMap<u32, Vec<Split>> = BTreeMap::new();
    for batch in batches {
        let (envs, of, split) = (strings(batch, "env_id"), strings(batch, "near_duplicate_of"), strings(batch, "split"));
        for i in 0..batch.num_rows() {
            let Some(env) = envs[i].clone() else { continue };
            let shard = roots.get(&env).copied().unwrap_or(0);
            if let Some(of) = of[i].clone() {
                groups.entry(shard).or_default().push(Group { env_id: env.clone(), near_duplicate_of: of });
            }
            if let Some(split) = split[i].clone() {
                splits.entry(shard).or_default().push(Split { env_id: env, split });
            }
        }
    }
    for (shard, rows) in groups {
        dataset.write_shard(Table::NearDuplicates, shard, &rows)?;
    }
    for (shard, rows) in splits {
        dataset.write_shard(Table::Splits, shard, &rows)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    /// Writes `runs` rows as schema version 2 did (`started_at` as RFC 3339 text) into shard
    /// `shard` of the dataset at `dir`, and says version 2 in its manifest.
    fn write_version_2_runs(dir: &std::path::Path, shard: u32, started: &[&str]) {
        let fields: Vec<Field> = Table::Runs
            .schema()
            .fields()
            .iter()
            .map(|f| if f.name() == "started_at" { Field::new("started_at", DataType::Utf8, false) } else { f.as_ref().clone() })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let lines: String = started
            .iter()
            .enumerate()
            .map(|(i, at)| {
                format!(
                    r#"{{"run_id":"run{i}","command":"build","codegym_version":"0.1.0","arguments":"[]","llm_requests":0,"sandbox_jobs":0,"stage_stats":"{{}}","started_at":"{at}","duration_ms":5,"shard":{shard}}}"#
                ) + "\n"
            })
            .collect();
        let batch = arrow::json::ReaderBuilder::new(schema.clone()).build(lines.as_bytes()).unwrap().next().unwrap().unwrap();
        let path = dir.join(Dataset::part(Table::Runs, shard));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let manifest = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap().replace(&format!("\"{}\"", super::super::SCHEMA_VERSION), "\"2\"");
        std::fs::write(&manifest, text).unwrap();
    }

    #[test]
    fn runs_of_schema_version_2_get_timestamps_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap();
        Dataset::open(location, Some(4)).unwrap();
        write_version_2_runs(dir.path(), 3, &["2025-11-25T21:44:05.250Z", "2000-02-29T00:00:00.000Z"]);
        let data = Dataset::open_existing(location).unwrap();
        assert_eq!(data.manifest().schema_version, super::super::SCHEMA_VERSION);
        assert!(data.manifest().tables.values().all(|v| v == super::super::SCHEMA_VERSION));
        let bytes = std::fs::read(dir.path().join(Dataset::part(Table::Runs, 3))).unwrap();
        let batches = reader::raw_batches(bytes.into(), dir.path()).unwrap();
        let started = batches[0].column_by_name("started_at").unwrap();
        assert_eq!(started.data_type(), &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())));
        let started = started.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let mut values: Vec<i64> = (0..started.len()).map(|i| started.value(i)).collect();
        values.sort();
        assert_eq!(values, [951_782_400_000, 1_764_107_045_250]);
        let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
        assert!(!manifest.contains("\"2\""), "the manifest says the new version: {manifest}");
    }
}
