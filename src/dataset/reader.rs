//! Reading tables and arbitrary Parquet files back into Arrow batches or serde rows.
//!
//! Owns the decoding side of the layout: a table file's bytes to batches with exactly the
//! table's schema (columns matched by name and cast, missing nullable columns filled with nulls,
//! unknown columns dropped), and batches to serde rows. Rows go through the Arrow JSON writer and
//! then serde, so nested struct, list and map columns deserialize into nested serde structs,
//! `Vec`s, maps or `serde_json::Value`; or, for tables too large to hold, a [`TableScan`] streams
//! chosen columns batch by batch. Which files make a table is `layout`'s business; it does not
//! write (see `writer`) and knows nothing about SQL.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::json::LineDelimitedWriter;
use arrow::json::writer::WriterBuilder;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::de::DeserializeOwned;

use super::schema::{conform, conform_to};
use super::store::Store;
use super::{DatasetError, Table};

/// Rows per Arrow batch when reading.
const READ_BATCH_ROWS: usize = 8192;

/// The batches of a table file (`bytes`, read from `path`), conformed to `table`'s schema.
pub(crate) fn conformed_batches(table: Table, bytes: Bytes, path: &Path) -> Result<Vec<RecordBatch>, DatasetError> {
    raw_batches(bytes, path)?
        .iter()
        .map(|batch| {
            conform(table, batch, true).map_err(|e| DatasetError::schema(table.name(), format!("`{}`: {e}", path.display())))
        })
        .collect()
}

/// The batches of a Parquet file's `bytes` (read from `path`), as stored.
pub(crate) fn raw_batches(bytes: Bytes, path: &Path) -> Result<Vec<RecordBatch>, DatasetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| DatasetError::parquet(path, e))?
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| DatasetError::parquet(path, e))?;
    reader.map(|batch| batch.map_err(|e| DatasetError::parquet(path, e.into()))).collect()
}

/// The number of rows a Parquet file's `bytes` (read from `path`) hold, from its footer.
pub(crate) fn footer_rows(bytes: Bytes, path: &Path) -> Result<u64, DatasetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| DatasetError::parquet(path, e))?;
    Ok(u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// The rows of `batches` (read from `path`) as `R`.
pub(crate) fn rows<R: DeserializeOwned>(path: &Path, batches: &[RecordBatch]) -> Result<Vec<R>, DatasetError> {
    let mut out = Vec::new();
    batches_to_rows(path, batches, &mut out)?;
    Ok(out)
}

/// The batches of a table holding only some of its columns (in the order asked for, with the
/// table's types; a nullable column a file lacks reads as nulls), file by file in shard order;
/// made by `Dataset::scan`. Only the named columns are decoded and one shard file is held at a
/// time, so a scan's memory is bounded by a shard and a batch, not by the table.
pub struct TableScan {
    table: Table,
    schema: arrow::datatypes::SchemaRef,
    batch_rows: usize,
    store: Store,
    parts: std::vec::IntoIter<String>,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
}

impl TableScan {
    /// A scan of `columns` of `table` over the files `parts` (relative to `store`).
    pub(crate) fn new(
        table: Table,
        columns: &[&str],
        batch_rows: usize,
        store: Store,
        parts: Vec<String>,
    ) -> Result<TableScan, DatasetError> {
        let schema = table.projected_schema(columns).map_err(|e| DatasetError::schema(table.name(), e))?;
        Ok(TableScan { table, schema, batch_rows: batch_rows.max(1), store, parts: parts.into_iter(), current: None })
    }

    /// Opens the file `relative`, decoding only the scanned columns it has; `None` when it went
    /// away since the listing.
    fn open(&self, relative: &str) -> Result<Option<(PathBuf, ParquetRecordBatchReader)>, DatasetError> {
        let path = self.store.describe(relative);
        let Some(bytes) = self.store.get(relative)? else { return Ok(None) };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| DatasetError::parquet(&path, e))?;
        let roots: Vec<usize> = self.schema.fields().iter().filter_map(|f| builder.schema().index_of(f.name()).ok()).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| DatasetError::parquet(&path, e))?;
        Ok(Some((path, reader)))
    }
}

impl Iterator for TableScan {
    type Item = Result<RecordBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((path, reader)) = &mut self.current {
                match reader.next() {
                    Some(Ok(batch)) => {
                        let conformed = conform_to(self.table, self.schema.clone(), &batch, true)
                            .map_err(|e| DatasetError::schema(self.table.name(), format!("`{}`: {e}", path.display())));
                        return Some(conformed);
                    }
                    Some(Err(e)) => return Some(Err(DatasetError::parquet(path.clone(), e.into()))),
                    None => self.current = None,
                }
            }
            let relative = self.parts.next()?;
            match self.open(&relative) {
                Ok(opened) => self.current = opened,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Reads any Parquet file into rows of `R`: columns become fields by name, struct columns become
/// nested objects, list columns arrays, map columns objects, nulls `null` (so use `Option` or
/// `serde_json::Value` for anything that may be null). Errors name the file and the row.
pub fn read_parquet_rows<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>, DatasetError> {
    let batches = read_file_batches(path)?;
    let mut rows = Vec::new();
    batches_to_rows(path, &batches, &mut rows)?;
    Ok(rows)
}

/// Reads a Parquet file (as [`read_parquet_rows`]) or a JSON Lines file (`.jsonl`, `.json`: one
/// object per line, blank lines skipped) into rows of `R`. Errors name the file and the line.
pub fn read_rows_file<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>, DatasetError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "json") => {
            let text = crate::text_file::read(path).map_err(|e| DatasetError::io(path, e))?;
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(i, line)| {
                    serde_json::from_str(line).map_err(|e| DatasetError::decode(path, format!("line {}: {e}", i + 1)))
                })
                .collect()
        }
        _ => read_parquet_rows(path),
    }
}

/// Reads one Parquet file as Arrow batches, with the schema stored in the file.
pub fn read_file_batches(path: &Path) -> Result<Vec<RecordBatch>, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DatasetError::parquet(path, e))?
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| DatasetError::parquet(path, e))?;
    reader.map(|batch| batch.map_err(|e| DatasetError::parquet(path, e.into()))).collect()
}

/// Appends the rows of `batches` (read from `path`) to `out` as `R`.
fn batches_to_rows<R: DeserializeOwned>(path: &Path, batches: &[RecordBatch], out: &mut Vec<R>) -> Result<(), DatasetError> {
    let mut row = 0usize;
    let mut buf = Vec::new();
    for batch in batches {
        buf.clear();
        let mut writer: LineDelimitedWriter<&mut Vec<u8>> = WriterBuilder::new().with_explicit_nulls(true).build(&mut buf);
        writer
            .write(batch)
            .and_then(|()| writer.finish())
            .map_err(|e| DatasetError::decode(path, format!("cannot convert to JSON: {e}")))?;
        drop(writer);
        for value in serde_json::Deserializer::from_slice(&buf).into_iter::<R>() {
            let value = value.map_err(|e| DatasetError::decode(path, format!("row {row}: {e}")))?;
            out.push(value);
            row += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};
    use parquet::arrow::ArrowWriter;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::dataset::Dataset;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Stat {
        config_id: String,
        env_id: String,
        tool: String,
        calls: i32,
    }

    fn stat(config: &str, tool: &str, calls: i32) -> Stat {
        Stat { config_id: config.into(), env_id: "e".into(), tool: tool.into(), calls }
    }

    fn dataset(dir: &tempfile::TempDir) -> Dataset {
        Dataset::open(dir.path().to_str().unwrap(), Some(2)).unwrap()
    }

    #[test]
    fn missing_table_reads_empty_and_leftovers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        assert!(data.read_table::<Stat>(Table::ToolCallStats).unwrap().is_empty());
        let rows = vec![stat("c1", "add", 2), stat("c1", "done", 1)];
        let summary = data.write_shard(Table::ToolCallStats, 1, &rows).unwrap();
        let table_dir = summary.path.parent().unwrap();
        // A crash mid-write leaves a half-written temporary file behind.
        std::fs::write(table_dir.join(".part-0000.parquet.7.tmp"), b"PAR1 torn").unwrap();
        std::fs::write(table_dir.join("notes.txt"), b"hello").unwrap();
        assert_eq!(data.read_table::<Stat>(Table::ToolCallStats).unwrap(), rows);
    }

    #[test]
    fn scans_stream_projected_batches_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let rows: Vec<Stat> = (0..25).map(|i| stat(&format!("c{i:02}"), "t", i)).collect();
        data.write_shard(Table::ToolCallStats, 0, &rows).unwrap();
        data.write_shard(Table::ToolCallStats, 1, &rows).unwrap();
        let batches: Vec<RecordBatch> =
            data.scan(Table::ToolCallStats, &["tool", "config_id"], 10).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [10, 10, 5, 10, 10, 5]);
        let names: Vec<&str> = batches[0].schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["tool", "config_id"], "the columns asked for, in that order");
        let err = data.scan(Table::ToolCallStats, &["nope"], 10).err().unwrap().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn scans_fill_missing_nullable_columns_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        // An environments file from before `tool_schemas` existed.
        let schema = Arc::new(Schema::new(vec![Field::new("env_id", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["e1"])) as ArrayRef]).unwrap();
        let table_dir = dir.path().join(Table::Environments.name());
        std::fs::create_dir_all(&table_dir).unwrap();
        let mut writer = ArrowWriter::try_new(File::create(table_dir.join("part-0000.parquet")).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let batches: Vec<RecordBatch> =
            data.scan(Table::Environments, &["env_id", "tool_schemas"], 8).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches[0].num_rows(), 1);
        assert_eq!(batches[0].column(1).null_count(), 1);
    }

    #[test]
    fn subset_row_type_reads() {
        #[derive(Deserialize)]
        struct ToolOnly {
            tool: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        data.write_shard(Table::ToolCallStats, 0, &[stat("c", "x", 1)]).unwrap();
        let back: Vec<ToolOnly> = data.read_shard(Table::ToolCallStats, 0).unwrap();
        assert_eq!(back[0].tool, "x");
    }

    #[test]
    fn corrupt_files_and_undecodable_rows_name_the_file() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            calls: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        data.write_shard(Table::ToolCallStats, 0, &[stat("c", "x", 1)]).unwrap();
        let err = data.read_shard::<Wrong>(Table::ToolCallStats, 0).unwrap_err().to_string();
        assert!(err.contains("part-0000.parquet") && err.contains("row 0"), "{err}");
        std::fs::create_dir_all(dir.path().join("runs")).unwrap();
        std::fs::write(dir.path().join("runs/part-0001.parquet"), b"garbage").unwrap();
        let err = data.read_batches(Table::Runs).unwrap_err().to_string();
        assert!(err.contains("part-0001.parquet"), "{err}");
    }

    /// A file shaped like a released CodeGym table: a struct column, a list column, nulls.
    #[test]
    fn arbitrary_parquet_with_nested_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.parquet");

        let meta_fields =
            Fields::from(vec![Field::new("difficulty", DataType::Utf8, true), Field::new("calls", DataType::Int64, true)]);
        let meta = StructArray::new(
            meta_fields.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("easy"), None])) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(3), Some(7)])) as ArrayRef,
            ],
            None,
        );
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value("b");
        tags.append(true);
        tags.append(false);
        let tags: ArrayRef = Arc::new(tags.finish());
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("meta", DataType::Struct(meta_fields), true),
            Field::new("tags", tags.data_type().clone(), true),
        ]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["One", "Two"])), Arc::new(meta), tags])
                .unwrap();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        #[derive(Debug, Deserialize, PartialEq)]
        struct Meta {
            difficulty: Option<String>,
            calls: Option<i64>,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Task {
            name: String,
            meta: Meta,
            tags: Option<Vec<String>>,
        }
        let rows: Vec<Task> = read_parquet_rows(&path).unwrap();
        assert_eq!(
            rows,
            vec![
                Task {
                    name: "One".into(),
                    meta: Meta { difficulty: Some("easy".into()), calls: Some(3) },
                    tags: Some(vec!["a".into(), "b".into()]),
                },
                Task { name: "Two".into(), meta: Meta { difficulty: None, calls: Some(7) }, tags: None },
            ]
        );
        let values: Vec<BTreeMap<String, serde_json::Value>> = read_parquet_rows(&path).unwrap();
        assert_eq!(values[0]["meta"], serde_json::json!({"difficulty": "easy", "calls": 3}));
        assert_eq!(values[1]["tags"], serde_json::Value::Null);

        let err = read_parquet_rows::<Task>(&dir.path().join("nope.parquet")).unwrap_err().to_string();
        assert!(err.contains("nope.parquet"), "{err}");
    }
}
