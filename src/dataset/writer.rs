//! Encoding a shard's rows: serde rows -> Arrow batches -> the `shard` column stamped -> dedup by
//! key -> sort by key -> one Parquet file's bytes.
//!
//! Owns the Parquet writer settings that make output reproducible (zstd, row groups of at most
//! [`ROW_GROUP_ROWS`] rows, no timestamps, no dictionaries, rows in key order unless the caller's
//! order means something) and the schema checks on the way in. Where the bytes go (a rename
//! locally, one PUT remotely) is `store`'s job; which shard they belong to, the caller's.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::json::ReaderBuilder;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, conform};
use super::{DatasetError, Table};

/// The column every table carries: the virtual shard of the row.
pub const SHARD_COLUMN: &str = "shard";

/// Maximum rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 8192;

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The table written.
    pub table: Table,
    /// The file that now holds the shard (a path, or the URL of an object).
    pub path: std::path::PathBuf,
    /// Rows in the file.
    pub rows: usize,
    /// Input rows dropped because an earlier row had the same key.
    pub duplicates: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// The order of the rows in a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Deduplicated by the table's key (first occurrence wins) and sorted by it.
    Key,
    /// As given, for a table whose row order means something (`problems` keeps its corpus order).
    AsGiven,
}

/// A shard's file, encoded.
pub(crate) struct Encoded {
    pub(crate) bytes: Bytes,
    pub(crate) rows: usize,
    pub(crate) duplicates: usize,
}

/// Converts serde rows to one Arrow batch with `table`'s columns (the `shard` column aside: the
/// writer stamps it).
///
/// Row field names must be column names: a field the schema does not know, a value of the wrong
/// type, or a missing (or `None`) value for a non-nullable column is an error naming the table.
/// Missing nullable fields become nulls.
pub fn rows_to_batch<R: Serialize>(table: Table, rows: &[R]) -> Result<RecordBatch, DatasetError> {
    // Decode with every column nullable and check nullability afterwards in `conform`, whose
    // error names the column ("not nullable but holds 1 null(s)") more plainly than the decoder.
    let schema = table.schema();
    let relaxed = Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != SHARD_COLUMN)
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
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
    conform(table, &with_shard(&batch, 0)?, false)
        .map_err(|e| DatasetError::schema(table.name(), format!("{e} (a row has no value, or None, for it)")))
}

/// `batch` with its `shard` column set to `shard` (added when it has none).
fn with_shard(batch: &RecordBatch, shard: u32) -> Result<RecordBatch, DatasetError> {
    let column: ArrayRef = Arc::new(Int32Array::from(vec![shard as i32; batch.num_rows()]));
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    match schema.index_of(SHARD_COLUMN) {
        Ok(index) => columns[index] = column,
        Err(_) => {
            fields.push(Arc::new(Field::new(SHARD_COLUMN, DataType::Int32, false)));
            columns.push(column);
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).map_err(|e| DatasetError::arrow("(shard column)", e))
}

/// Encodes `batches` as `table`'s file for `shard`. Batch columns are matched to the table's by
/// name and cast where the type differs; an unknown column or a null in a non-nullable column is
/// an error.
pub(crate) fn encode(table: Table, shard: u32, batches: &[RecordBatch], order: Order) -> Result<Encoded, DatasetError> {
    let schema = table.schema();
    let conformed = batches
        .iter()
        .map(|b| with_shard(b, shard).and_then(|b| conform(table, &b, false).map_err(|e| DatasetError::schema(table.name(), e))))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat_batches(&schema, &conformed).map_err(|e| DatasetError::arrow(table.name(), e))?;
    let input_rows = all.num_rows();
    let rows = match order {
        Order::Key => dedup_and_sort(table, &all)?,
        Order::AsGiven => all,
    };
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, rows.schema(), Some(writer_properties()))
        .map_err(|e| DatasetError::parquet(table.name(), e))?;
    writer.write(&rows).map_err(|e| DatasetError::parquet(table.name(), e))?;
    writer.close().map_err(|e| DatasetError::parquet(table.name(), e))?;
    Ok(Encoded { bytes: bytes.into(), rows: rows.num_rows(), duplicates: input_rows - rows.num_rows() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
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
    struct Stat {
        config_id: String,
        env_id: String,
        tool: String,
        calls: i32,
    }

    fn dataset(dir: &tempfile::TempDir) -> Dataset {
        Dataset::open(dir.path().join("d").to_str().unwrap(), Some(4)).unwrap()
    }

    fn file(summary: &WriteSummary) -> std::fs::File {
        std::fs::File::open(&summary.path).unwrap()
    }

    #[test]
    fn round_trip_sorted_by_key_with_the_shard_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let rows = vec![reject("verify", "b", "r", None), reject("verify", "a", "r", Some("x"))];
        let summary = data.write_shard(Table::Rejects, 3, &rows).unwrap();
        assert_eq!((summary.rows, summary.duplicates), (2, 0));
        assert!(summary.path.ends_with("rejects/part-0003.parquet"), "{:?}", summary.path);
        let back: Vec<Reject> = data.read_shard(Table::Rejects, 3).unwrap();
        assert_eq!(back, vec![rows[1].clone(), rows[0].clone()]);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file(&summary)).unwrap();
        assert_eq!(builder.schema().as_ref(), Table::Rejects.schema().as_ref(), "the file's schema is the table's");
        let batch = builder.build().unwrap().next().unwrap().unwrap();
        let shard = batch.column_by_name(SHARD_COLUMN).unwrap().as_any().downcast_ref::<Int32Array>().unwrap().clone();
        assert_eq!(shard.values().to_vec(), vec![3, 3]);
        let kv = ParquetRecordBatchReaderBuilder::try_new(file(&summary))
            .unwrap()
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        assert!(kv.unwrap().iter().any(|kv| kv.key == SCHEMA_VERSION_KEY && kv.value.as_deref() == Some(SCHEMA_VERSION)));
    }

    #[test]
    fn same_rows_any_order_give_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let rows: Vec<Reject> = (0..50).map(|i| reject("verify", &format!("e{i:03}"), "wrong_output", Some("x"))).collect();
        let mut reversed = rows.clone();
        reversed.reverse();
        let first = std::fs::read(data.write_shard(Table::Rejects, 0, &rows).unwrap().path).unwrap();
        let again = std::fs::read(data.write_shard(Table::Rejects, 0, &reversed).unwrap().path).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn duplicate_keys_collapse_first_wins_and_upsert_replaces_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let rows =
            vec![reject("v", "e1", "t", Some("first")), reject("v", "e1", "t", Some("second")), reject("v", "e1", "w", None)];
        let summary = data.write_shard(Table::Rejects, 1, &rows).unwrap();
        assert_eq!((summary.rows, summary.duplicates), (2, 1));
        data.upsert_shard(Table::Rejects, 1, &[reject("v", "e1", "t", Some("new")), reject("v", "e2", "t", None)]).unwrap();
        let back: Vec<Reject> = data.read_shard(Table::Rejects, 1).unwrap();
        let details: Vec<_> = back.iter().map(|r| (r.entity_id.as_str(), r.reason.as_str(), r.detail.as_deref())).collect();
        assert_eq!(details, [("e1", "t", Some("new")), ("e1", "w", None), ("e2", "t", None)]);
    }

    #[test]
    fn a_shard_with_no_rows_has_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        data.write_shard(Table::Rejects, 2, &[reject("s", "e", "r", None)]).unwrap();
        assert_eq!(data.shards_with(Table::Rejects).unwrap(), [2]);
        data.write_shard::<Reject>(Table::Rejects, 2, &[]).unwrap();
        assert!(data.shards_with(Table::Rejects).unwrap().is_empty());
        assert!(data.read_table::<Reject>(Table::Rejects).unwrap().is_empty());
    }

    #[test]
    fn type_mismatch_and_missing_or_unknown_fields_name_the_table() {
        #[derive(Serialize)]
        struct Bad {
            config_id: String,
            tool: String,
            env_id: String,
            calls: &'static str,
        }
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
        let data = dataset(&dir);
        let bad = [Bad { config_id: "c".into(), tool: "t".into(), env_id: "e".into(), calls: "many" }];
        assert!(data.write_shard(Table::ToolCallStats, 0, &bad).unwrap_err().to_string().contains("tool_call_stats"));
        assert!(data.shards_with(Table::ToolCallStats).unwrap().is_empty(), "nothing is written");
        let err = data
            .write_shard(Table::Rejects, 0, &[NoReason { stage: "s".into(), entity_id: "e".into() }])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rejects") && err.contains("reason"), "{err}");
        let extra = [Extra { stage: "s".into(), entity_id: "e".into(), reason: "r".into(), reasn: "r".into() }];
        let err = data.write_shard(Table::Rejects, 0, &extra).unwrap_err().to_string();
        assert!(err.contains("rejects") && err.contains("reasn"), "{err}");
    }

    #[test]
    fn row_groups_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let rows: Vec<Stat> = (0..ROW_GROUP_ROWS + 10)
            .map(|i| Stat { config_id: format!("{i:06}"), env_id: "e".into(), tool: "t".into(), calls: 1 })
            .collect();
        let summary = data.write_shard(Table::ToolCallStats, 0, &rows).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file(&summary)).unwrap();
        let groups = builder.metadata().row_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].num_rows() as usize, ROW_GROUP_ROWS);
    }
}
