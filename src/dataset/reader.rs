//! Reading tables and arbitrary Parquet files back into Arrow batches or serde rows.
//!
//! Owns the read side of the layout: which files of a table folder count (every `*.parquet` whose
//! name does not start with a dot, so a writer's leftover `.part-*.parquet.tmp` is never read), in
//! which order (by file name), and the conversion of Arrow batches to serde rows. Rows go through
//! the Arrow JSON writer and then serde, so nested struct, list and map columns deserialize into
//! nested serde structs, `Vec`s, maps or `serde_json::Value`; or, for tables too large to hold,
//! [`scan_table`] streams chosen columns batch by batch. It does not write (see `writer`) and knows
//! nothing about SQL.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::json::LineDelimitedWriter;
use arrow::json::writer::WriterBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::de::DeserializeOwned;

use super::schema::{conform, conform_to};
use super::{DatasetError, Table};

/// Rows per Arrow batch when reading.
const READ_BATCH_ROWS: usize = 8192;

/// The Parquet files of `table` under the data directory `dir`, sorted by name; empty when the
/// table folder does not exist. Dotfiles and files not ending in `.parquet` are skipped.
pub fn table_files(dir: &Path, table: Table) -> Result<Vec<PathBuf>, DatasetError> {
    let table_dir = table.dir(dir);
    let entries = match fs::read_dir(&table_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DatasetError::io(&table_dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DatasetError::io(&table_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every Parquet file of `table` as batches with exactly the table's schema (columns
/// matched by name and cast, missing nullable columns filled with nulls, unknown columns
/// dropped). A missing table folder gives no batches.
pub fn read_batches(dir: &Path, table: Table) -> Result<Vec<RecordBatch>, DatasetError> {
    let mut out = Vec::new();
    for path in table_files(dir, table)? {
        for batch in read_file_batches(&path)? {
            let batch = conform(table, &batch, true)
                .map_err(|e| DatasetError::schema(table.name(), format!("`{}`: {e}", path.display())))?;
            out.push(batch);
        }
    }
    Ok(out)
}

/// Streams `table` in batches of at most `batch_rows` rows holding only `columns` (in that
/// order, with the table's types; a nullable column a file lacks reads as nulls), file by file
/// in [`table_files`] order. Only the named columns are decoded, and at most one batch per file
/// is held, so a scan's memory is bounded by the batch, not by the table.
pub fn scan_table(dir: &Path, table: Table, columns: &[&str], batch_rows: usize) -> Result<TableScan, DatasetError> {
    let schema = table.projected_schema(columns).map_err(|e| DatasetError::schema(table.name(), e))?;
    let files = table_files(dir, table)?;
    Ok(TableScan { table, schema, batch_rows: batch_rows.max(1), files: files.into_iter(), current: None })
}

/// The batches of a [`scan_table`], in order.
pub struct TableScan {
    table: Table,
    schema: arrow::datatypes::SchemaRef,
    batch_rows: usize,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
}

impl TableScan {
    /// Opens `path` decoding only the scanned columns the file has.
    fn open(&self, path: &Path) -> Result<ParquetRecordBatchReader, DatasetError> {
        let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DatasetError::parquet(path, e))?;
        let roots: Vec<usize> = self.schema.fields().iter().filter_map(|f| builder.schema().index_of(f.name()).ok()).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder.with_projection(mask).with_batch_size(self.batch_rows).build().map_err(|e| DatasetError::parquet(path, e))
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
            let path = self.files.next()?;
            match self.open(&path) {
                Ok(reader) => self.current = Some((path, reader)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Reads every row of `table` into `R`, whose field names are column names (fields may be a
/// subset of the columns; nullable columns map to `Option`). A missing table folder gives an
/// empty `Vec`. Rows come in file order, which is key order for files this crate wrote.
pub fn read_table<R: DeserializeOwned>(dir: &Path, table: Table) -> Result<Vec<R>, DatasetError> {
    let mut rows = Vec::new();
    for path in table_files(dir, table)? {
        let batches = read_file_batches(&path)?;
        let batches = batches
            .iter()
            .map(|b| {
                conform(table, b, true).map_err(|e| DatasetError::schema(table.name(), format!("`{}`: {e}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        batches_to_rows(&path, &batches, &mut rows)?;
    }
    Ok(rows)
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
            let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
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
    use crate::dataset::write_table;

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

    #[test]
    fn missing_table_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Stat> = read_table(dir.path(), Table::ToolCallStats).unwrap();
        assert!(rows.is_empty());
        assert!(read_batches(dir.path(), Table::ToolCallStats).unwrap().is_empty());
    }

    #[test]
    fn leftover_tmp_and_dotfiles_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![stat("c1", "add", 2), stat("c1", "done", 1)];
        let summary = write_table(dir.path(), Table::ToolCallStats, &rows).unwrap();
        let table_dir = summary.path.parent().unwrap();
        // A crash mid-write leaves a half-written temporary file behind.
        fs::write(table_dir.join(".part-00000.parquet.tmp"), b"PAR1 torn").unwrap();
        fs::write(table_dir.join(".hidden.parquet"), b"not parquet").unwrap();
        fs::write(table_dir.join("notes.txt"), b"hello").unwrap();
        let back: Vec<Stat> = read_table(dir.path(), Table::ToolCallStats).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn scans_stream_projected_batches_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Stat> = (0..25).map(|i| stat(&format!("c{i:02}"), "t", i)).collect();
        write_table(dir.path(), Table::ToolCallStats, &rows).unwrap();
        let table_dir = Table::ToolCallStats.dir(dir.path());
        // A second shard written by an older version, without the `calls` column.
        fs::copy(table_dir.join("part-00000.parquet"), table_dir.join("part-00001.parquet")).unwrap();
        let batches: Vec<RecordBatch> =
            scan_table(dir.path(), Table::ToolCallStats, &["tool", "config_id"], 10).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [10, 10, 5, 10, 10, 5]);
        let names: Vec<&str> = batches[0].schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["tool", "config_id"], "the columns asked for, in that order");
        let err = scan_table(dir.path(), Table::ToolCallStats, &["nope"], 10).err().unwrap().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn scans_fill_missing_nullable_columns_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        // An environments file from before `tool_schemas` existed.
        let schema = Arc::new(Schema::new(vec![Field::new("env_id", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["e1"])) as ArrayRef]).unwrap();
        let table_dir = Table::Environments.dir(dir.path());
        fs::create_dir_all(&table_dir).unwrap();
        let mut writer = ArrowWriter::try_new(File::create(table_dir.join("part-00000.parquet")).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let batches: Vec<RecordBatch> = scan_table(dir.path(), Table::Environments, &["env_id", "tool_schemas"], 8)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
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
        write_table(dir.path(), Table::ToolCallStats, &[stat("c", "x", 1)]).unwrap();
        let back: Vec<ToolOnly> = read_table(dir.path(), Table::ToolCallStats).unwrap();
        assert_eq!(back[0].tool, "x");
    }

    #[test]
    fn corrupt_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let table_dir = Table::Runs.dir(dir.path());
        fs::create_dir_all(&table_dir).unwrap();
        fs::write(table_dir.join("part-00000.parquet"), b"garbage").unwrap();
        let err = read_batches(dir.path(), Table::Runs).unwrap_err().to_string();
        assert!(err.contains("part-00000.parquet"), "{err}");
    }

    #[test]
    fn decode_error_names_file_and_row() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            calls: String,
        }
        let dir = tempfile::tempdir().unwrap();
        write_table(dir.path(), Table::ToolCallStats, &[stat("c", "x", 1)]).unwrap();
        let err = read_table::<Wrong>(dir.path(), Table::ToolCallStats).unwrap_err().to_string();
        assert!(err.contains("part-00000.parquet") && err.contains("row 0"), "{err}");
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
