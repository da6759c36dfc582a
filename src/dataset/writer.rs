//! Writing tables: serde rows -> one Arrow batch -> dedup by key -> sort by key -> one Parquet file.
//!
//! Owns the write side of the layout described in the `dataset` module doc: the file name
//! (`part-00000.parquet`), the temporary-file-then-rename protocol, and the Parquet writer
//! settings that make output reproducible (zstd, row groups of at most [`ROW_GROUP_ROWS`] rows,
//! no timestamps, rows in key order). A write REPLACES the table; [`upsert_table`] is the
//! read-merge-write helper for callers that add to a table.
//!
//! One writer per table at a time: two processes writing the same table race on the temporary
//! file. The pipeline runs one process per data directory, so this is not locked.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::Schema;
use arrow::json::ReaderBuilder;
use arrow::row::{RowConverter, SortField};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, conform};
use super::{DatasetError, Table, reader};

/// The only file of a table for now (sharding into several parts is future work).
pub const PART_FILE: &str = "part-00000.parquet";

/// Maximum rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 8192;

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The table written.
    pub table: Table,
    /// The Parquet file that now holds the table.
    pub path: PathBuf,
    /// Rows in the file.
    pub rows: usize,
    /// Input rows dropped because an earlier row had the same key.
    pub duplicates: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Converts serde rows to one Arrow batch with `table`'s schema.
///
/// Row field names must be column names: a field the schema does not know, a value of the wrong
/// type, or a missing (or `None`) value for a non-nullable column is an error naming the table.
/// Missing nullable fields become nulls.
pub fn rows_to_batch<R: Serialize>(table: Table, rows: &[R]) -> Result<RecordBatch, DatasetError> {
    // Decode with every column nullable and check nullability afterwards in `conform`, whose
    // error names the column ("not nullable but holds 1 null(s)") more plainly than the decoder.
    let schema = table.schema();
    let relaxed = Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
        schema.metadata().clone(),
    ));
    let mut decoder = ReaderBuilder::new(relaxed.clone())
        .with_batch_size(rows.len().max(1))
        .with_strict_mode(true)
        .build_decoder()
        .map_err(|e| DatasetError::arrow(table.name(), e))?;
    decoder.serialize(rows).map_err(|e| DatasetError::arrow(table.name(), e))?;
    let batch =
        decoder.flush().map_err(|e| DatasetError::arrow(table.name(), e))?.unwrap_or_else(|| RecordBatch::new_empty(relaxed));
    conform(table, &batch, false)
        .map_err(|e| DatasetError::schema(table.name(), format!("{e} (a row has no value, or None, for it)")))
}

/// Replaces `table` under the data directory `dir` with `rows` (deduplicated by key, first
/// occurrence wins, and sorted by key). An empty `rows` writes an empty table, which SQL can
/// still query.
pub fn write_table<R: Serialize>(dir: &Path, table: Table, rows: &[R]) -> Result<WriteSummary, DatasetError> {
    let batch = rows_to_batch(table, rows)?;
    write_batches(dir, table, &[batch])
}

/// Replaces `table` with `rows` in the order given, unsorted: for a table whose row order
/// means something (`problems` keeps its corpus order).
pub fn write_table_in_order<R: Serialize>(dir: &Path, table: Table, rows: &[R]) -> Result<WriteSummary, DatasetError> {
    let mut writer = StreamWriter::create(dir, table)?;
    writer.write(&rows_to_batch(table, rows)?)?;
    writer.finish()
}

/// Merges `rows` into `table`: a new row replaces the stored row with the same key, other stored
/// rows are kept, and the union is written as by [`write_table`]. Stored rows are merged as Arrow
/// columns, so columns the row type does not carry survive.
pub fn upsert_table<R: Serialize>(dir: &Path, table: Table, rows: Vec<R>) -> Result<WriteSummary, DatasetError> {
    let mut batches = vec![rows_to_batch(table, &rows)?];
    drop(rows);
    batches.extend(reader::read_batches(dir, table)?);
    write_batches(dir, table, &batches)
}

/// Replaces `table` with the rows of `batches`, as [`write_table`] does. Batch columns are matched
/// to the table's columns by name and cast where the type differs; an unknown column or a null in
/// a non-nullable column is an error.
pub fn write_batches(dir: &Path, table: Table, batches: &[RecordBatch]) -> Result<WriteSummary, DatasetError> {
    let schema = table.schema();
    let conformed = batches
        .iter()
        .map(|b| conform(table, b, false).map_err(|e| DatasetError::schema(table.name(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat_batches(&schema, &conformed).map_err(|e| DatasetError::arrow(table.name(), e))?;
    let input_rows = all.num_rows();
    let sorted = dedup_and_sort(table, &all)?;

    let table_dir = table.dir(dir);
    fs::create_dir_all(&table_dir).map_err(|e| DatasetError::io(&table_dir, e))?;
    let path = table_dir.join(PART_FILE);
    let tmp = table_dir.join(format!(".{PART_FILE}.tmp"));
    let result = write_parquet(&tmp, &sorted).and_then(|()| fs::rename(&tmp, &path).map_err(|e| DatasetError::io(&path, e)));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable; directories cannot be opened for sync on every platform, and the
    // file itself is already synced, so a failure here is not worth failing the write.
    if let Ok(d) = File::open(&table_dir) {
        let _ = d.sync_all();
    }
    let bytes = fs::metadata(&path).map_err(|e| DatasetError::io(&path, e))?.len();
    Ok(WriteSummary { table, path, rows: sorted.num_rows(), duplicates: input_rows - sorted.num_rows(), bytes })
}

/// Sorts `batch` by `table`'s key and keeps the first input row of each key.
fn dedup_and_sort(table: Table, batch: &RecordBatch) -> Result<RecordBatch, DatasetError> {
    let arrow_err = |e| DatasetError::arrow(table.name(), e);
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for k in table.key() {
        let (i, field) = schema
            .column_with_name(k)
            .ok_or_else(|| DatasetError::schema(table.name(), format!("key column `{k}` is missing")))?;
        fields.push(SortField::new(field.data_type().clone()));
        columns.push(batch.column(i).clone());
    }
    let converter = RowConverter::new(fields).map_err(arrow_err)?;
    let keys = converter.convert_columns(&columns).map_err(arrow_err)?;
    let n = u32::try_from(batch.num_rows())
        .map_err(|_| DatasetError::schema(table.name(), "more than 2^32 rows in one write; split the table"))?;
    let mut order: Vec<u32> = (0..n).collect();
    // Stable sort: among equal keys the first input row comes first and survives the dedup.
    order.sort_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
    order.dedup_by(|later, earlier| keys.row(*later as usize) == keys.row(*earlier as usize));
    take_record_batch(batch, &UInt32Array::from(order)).map_err(arrow_err)
}

/// Shared by every table. Dictionary encoding is off: most of our bytes are long unique texts
/// (questions, solutions, environment code), where a dictionary is pure overhead, and zstd already
/// shrinks the repeated short values (status, source) to almost nothing.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]))
        .build()
}

/// Writes `batch` to `path` (created or truncated) and syncs it.
fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), DatasetError> {
    let file = File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(writer_properties())).map_err(|e| DatasetError::parquet(path, e))?;
    writer.write(batch).map_err(|e| DatasetError::parquet(path, e))?;
    let file = writer.into_inner().map_err(|e| DatasetError::parquet(path, e))?;
    file.sync_all().map_err(|e| DatasetError::io(path, e))
}

/// Streams batches into a table's file for writers whose rows do not fit in memory (ingest of a
/// large corpus). Rows keep the order they are written in (no sort, no dedup: the caller
/// deduplicates as it streams). The file appears under its final name only on [`finish`]; a
/// writer dropped unfinished leaves the table as it was.
///
/// [`finish`]: StreamWriter::finish
pub struct StreamWriter {
    table: Table,
    tmp: PathBuf,
    path: PathBuf,
    writer: Option<ArrowWriter<File>>,
    rows: usize,
}

impl StreamWriter {
    /// Starts replacing `table` under `dir`.
    pub fn create(dir: &Path, table: Table) -> Result<StreamWriter, DatasetError> {
        let table_dir = table.dir(dir);
        fs::create_dir_all(&table_dir).map_err(|e| DatasetError::io(&table_dir, e))?;
        let path = table_dir.join(PART_FILE);
        let tmp = table_dir.join(format!(".{PART_FILE}.stream.tmp"));
        let file = File::create(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        let writer =
            ArrowWriter::try_new(file, table.schema(), Some(writer_properties())).map_err(|e| DatasetError::parquet(&tmp, e))?;
        Ok(StreamWriter { table, tmp, path, writer: Some(writer), rows: 0 })
    }

    /// Appends a batch (columns matched to the table's by name, as in [`write_batches`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        let conformed = conform(self.table, batch, false).map_err(|e| DatasetError::schema(self.table.name(), e))?;
        let writer = self.writer.as_mut().expect("writer is open until finish");
        writer.write(&conformed).map_err(|e| DatasetError::parquet(&self.tmp, e))?;
        self.rows += conformed.num_rows();
        Ok(())
    }

    /// Closes the file, syncs it and renames it into place, replacing the table.
    pub fn finish(mut self) -> Result<WriteSummary, DatasetError> {
        let writer = self.writer.take().expect("finish runs once");
        let file = writer.into_inner().map_err(|e| DatasetError::parquet(&self.tmp, e))?;
        file.sync_all().map_err(|e| DatasetError::io(&self.tmp, e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| DatasetError::io(&self.path, e))?;
        let bytes = fs::metadata(&self.path).map_err(|e| DatasetError::io(&self.path, e))?.len();
        Ok(WriteSummary { table: self.table, path: self.path.clone(), rows: self.rows, duplicates: 0, bytes })
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{read_batches, read_table};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Reject {
        stage: String,
        entity_id: String,
        source_id: Option<String>,
        reason: String,
        detail: Option<String>,
    }

    fn reject(stage: &str, entity: &str, reason: &str, detail: Option<&str>) -> Reject {
        Reject {
            stage: stage.into(),
            entity_id: entity.into(),
            source_id: None,
            reason: reason.into(),
            detail: detail.map(Into::into),
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Env {
        env_id: String,
        problem_id: Option<String>,
        source: String,
        source_id: String,
        env_name: String,
        task_text: Option<String>,
        env_code: String,
        tool_count: i32,
        tools: Vec<String>,
        tool_docs: String,
        status: String,
        status_detail: Option<String>,
        oracle_candidate: Option<i32>,
    }

    fn env(id: &str, tools: &[&str]) -> Env {
        Env {
            env_id: id.into(),
            problem_id: Some(format!("p-{id}")),
            source: "synth".into(),
            source_id: format!("s-{id}"),
            env_name: "Adder".into(),
            task_text: None,
            env_code: "class Adder: pass".into(),
            tool_count: tools.len() as i32,
            tools: tools.iter().map(|t| t.to_string()).collect(),
            tool_docs: "add(a, b)".into(),
            status: "verified".into(),
            status_detail: None,
            oracle_candidate: Some(0),
        }
    }

    #[test]
    fn round_trip_with_lists_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![env("b", &["add", "done"]), env("a", &[])];
        let summary = write_table(dir.path(), Table::Environments, &rows).unwrap();
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.duplicates, 0);
        assert_eq!(summary.path, dir.path().join("environments").join(PART_FILE));
        let back: Vec<Env> = read_table(dir.path(), Table::Environments).unwrap();
        // Sorted by key.
        assert_eq!(back, vec![rows[1].clone(), rows[0].clone()]);
    }

    #[test]
    fn same_rows_any_order_give_identical_bytes() {
        let dir1 = tempfile::tempdir().unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let rows: Vec<Reject> = (0..50).map(|i| reject("verify", &format!("e{i:03}"), "wrong_output", Some("x"))).collect();
        let mut reversed = rows.clone();
        reversed.reverse();
        let s1 = write_table(dir1.path(), Table::Rejects, &rows).unwrap();
        let s2 = write_table(dir2.path(), Table::Rejects, &reversed).unwrap();
        assert_eq!(fs::read(&s1.path).unwrap(), fs::read(&s2.path).unwrap());
        // Rewriting in place gives the same bytes too.
        let again = write_table(dir1.path(), Table::Rejects, &reversed).unwrap();
        assert_eq!(fs::read(&again.path).unwrap(), fs::read(&s2.path).unwrap());
    }

    #[test]
    fn duplicate_keys_collapse_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            reject("verify", "e1", "timeout", Some("first")),
            reject("verify", "e1", "timeout", Some("second")),
            reject("verify", "e1", "wrong_output", None),
        ];
        let summary = write_table(dir.path(), Table::Rejects, &rows).unwrap();
        assert_eq!((summary.rows, summary.duplicates), (2, 1));
        let back: Vec<Reject> = read_table(dir.path(), Table::Rejects).unwrap();
        assert_eq!(back, vec![rows[0].clone(), rows[2].clone()]);
    }

    #[test]
    fn file_schema_is_the_table_schema() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write_table(dir.path(), Table::Environments, &[env("a", &["t"])]).unwrap();
        let file = File::open(&summary.path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let expected = Table::Environments.schema();
        assert_eq!(builder.schema().as_ref(), expected.as_ref());
        let kv = builder.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|kv| kv.key == SCHEMA_VERSION_KEY && kv.value.as_deref() == Some(SCHEMA_VERSION)));
    }

    #[test]
    fn every_table_can_be_written_empty() {
        let dir = tempfile::tempdir().unwrap();
        for t in Table::ALL {
            let summary = write_table::<Reject>(dir.path(), t, &[]).unwrap();
            assert_eq!(summary.rows, 0);
            let batches = read_batches(dir.path(), t).unwrap();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        }
    }

    #[test]
    fn upsert_replaces_by_key() {
        let dir = tempfile::tempdir().unwrap();
        write_table(dir.path(), Table::Rejects, &[reject("a", "1", "r", Some("old")), reject("a", "2", "r", Some("kept"))])
            .unwrap();
        let summary =
            upsert_table(dir.path(), Table::Rejects, vec![reject("a", "1", "r", Some("new")), reject("a", "3", "r", None)])
                .unwrap();
        assert_eq!((summary.rows, summary.duplicates), (3, 1));
        let back: Vec<Reject> = read_table(dir.path(), Table::Rejects).unwrap();
        let details: Vec<_> = back.iter().map(|r| r.detail.as_deref()).collect();
        assert_eq!(details, [Some("new"), Some("kept"), None]);
    }

    #[test]
    fn upsert_into_missing_table_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        upsert_table(dir.path(), Table::Rejects, vec![reject("a", "1", "r", None)]).unwrap();
        let back: Vec<Reject> = read_table(dir.path(), Table::Rejects).unwrap();
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn type_mismatch_names_the_table() {
        #[derive(Serialize)]
        struct Bad {
            config_id: String,
            tool: String,
            env_id: String,
            calls: &'static str,
        }
        let dir = tempfile::tempdir().unwrap();
        let rows = [Bad { config_id: "c".into(), tool: "t".into(), env_id: "e".into(), calls: "many" }];
        let err = write_table(dir.path(), Table::ToolCallStats, &rows).unwrap_err().to_string();
        assert!(err.contains("tool_call_stats"), "{err}");
        assert!(!dir.path().join("tool_call_stats").join(PART_FILE).exists());
    }

    #[test]
    fn missing_required_and_unknown_fields_are_errors() {
        #[derive(Serialize)]
        struct NoReason {
            stage: String,
            entity_id: String,
        }
        #[derive(Serialize)]
        struct Extra {
            stage: String,
            entity_id: String,
            reason: String,
            reasn: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let err = write_table(dir.path(), Table::Rejects, &[NoReason { stage: "s".into(), entity_id: "e".into() }])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rejects") && err.contains("reason"), "{err}");
        let err = write_table(
            dir.path(),
            Table::Rejects,
            &[Extra { stage: "s".into(), entity_id: "e".into(), reason: "r".into(), reasn: "r".into() }],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rejects") && err.contains("reasn"), "{err}");
    }

    #[test]
    fn row_groups_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Reject> = (0..ROW_GROUP_ROWS + 10).map(|i| reject("s", &format!("{i:06}"), "r", None)).collect();
        let summary = write_table(dir.path(), Table::Rejects, &rows).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&summary.path).unwrap()).unwrap();
        let groups = builder.metadata().row_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].num_rows() as usize, ROW_GROUP_ROWS);
    }
}
