//! The parts every format's rows share: Arrow columns built straight from borrowed row values (no
//! per-row serde), the chat `prompt` column, the `reward_model` column, and [`ParquetFiles`], the
//! Parquet writer with the export's settings, row groups bounded in bytes and, for the `hf` format,
//! shards bounded in bytes.

use super::ExportError;
use super::source::ConfigRow;
use crate::tables::Split;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, NullArray, RecordBatch, StringArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `data_source` of every exported row.
/// The released rows' `answer`: the answer lives in the environment, not in the row.
pub(crate) const ANSWER: &str = "There is no answer";
/// Row groups are closed at this many bytes (Hugging Face's guidance for streaming readers).
pub(crate) const ROW_GROUP_BYTES: usize = 100 << 20;

pub(crate) fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

pub(crate) fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(crate) fn owned_strings(values: impl Iterator<Item = String>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(crate) fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

pub(crate) fn constant(value: &str, rows: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, rows)))
}

pub(crate) fn int64s(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

pub(crate) fn float64s(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}

pub(crate) fn booleans(value: bool, rows: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; rows]))
}

/// A struct column from `(field, column)` pairs.
pub(crate) fn structure(columns: Vec<(Field, ArrayRef)>) -> ArrayRef {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    Arc::new(StructArray::new(Fields::from(fields), arrays, None))
}

/// The type of a struct column built by [`structure`] from these fields.
pub(crate) fn struct_type(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

/// The message fields of the `prompt` column: `role`, `content`, and `name` where the format
/// carries it (the release names its messages `functions` and ``).
fn message_fields(named: bool) -> Vec<Field> {
    let mut fields = vec![utf8("role", false)];
    if named {
        fields.push(utf8("name", false));
    }
    fields.push(utf8("content", false));
    fields
}

/// The type of the `prompt` column.
pub(crate) fn prompt_type(named: bool) -> DataType {
    DataType::List(Arc::new(Field::new("item", struct_type(message_fields(named)), false)))
}

/// The `prompt` column: a system and a user message per row, from `(system, user)` pairs.
pub(crate) fn prompt_column(prompts: &[(&str, &str)], named: bool) -> ArrayRef {
    let rows = prompts.len();
    let roles = strings((0..rows).flat_map(|_| ["system", "user"]));
    let contents = strings(prompts.iter().flat_map(|(system, user)| [*system, *user]));
    let mut columns = vec![roles];
    if named {
        columns.push(strings((0..rows).flat_map(|_| ["functions", ""])));
    }
    columns.push(contents);
    let messages = StructArray::new(Fields::from(message_fields(named)), columns, None);
    let DataType::List(item) = prompt_type(named) else { unreachable!("prompt_type is a list") };
    Arc::new(ListArray::new(item, OffsetBuffer::from_lengths(std::iter::repeat_n(2, rows)), Arc::new(messages), None))
}

/// The fields of `reward_model`: `{style: "agent_env", ground_truth: null}` (the environment
/// grades, so there is no ground truth; the key is there because trainers look it up).
fn reward_fields() -> Vec<Field> {
    vec![utf8("style", false), Field::new("ground_truth", DataType::Null, true)]
}

pub(crate) fn reward_model_type() -> DataType {
    struct_type(reward_fields())
}

pub(crate) fn reward_model_column(rows: usize) -> ArrayRef {
    let columns: Vec<ArrayRef> = vec![constant("agent_env", rows), Arc::new(NullArray::new(rows))];
    Arc::new(StructArray::new(Fields::from(reward_fields()), columns, None))
}

/// One batch per split of `config_rows` (in row order within each), built by `build` from the
/// split's rows and their `(system, user)` messages.
pub(crate) fn batches_by_split(
    config_rows: &[ConfigRow<'_>],
    prompts: &[(&str, &str)],
    build: impl Fn(&[ConfigRow<'_>], &[(&str, &str)], Split) -> Result<RecordBatch, arrow::error::ArrowError>,
) -> Result<Vec<(Split, RecordBatch)>, ExportError> {
    let mut batches = Vec::new();
    for split in Split::ALL {
        let (rows, prompts): (Vec<ConfigRow<'_>>, Vec<(&str, &str)>) = config_rows
            .iter()
            .zip(prompts)
            .filter(|(row, _)| row.env.split == split)
            .map(|(row, prompt)| (row.clone(), *prompt))
            .unzip();
        if !rows.is_empty() {
            let batch =
                build(&rows, &prompts, split).map_err(|source| ExportError::Arrow { path: split.name().into(), source })?;
            batches.push((split, batch));
        }
    }
    Ok(batches)
}

/// The Parquet settings of every exported file: zstd; no dictionaries (the long texts are unique
/// per row and the short ones shrink to nothing under zstd anyway); statistics per column chunk
/// only, since nobody filters training rows by the min and max of a prompt.
pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// The in-memory size of `batch`'s data (what Hugging Face reports as `num_bytes`).
pub(crate) fn arrow_bytes(batch: &RecordBatch) -> u64 {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64).sum()
}

/// One logical Parquet output (a split) written as one file, or as shards of at most
/// `max_file_bytes` when that is set. Files are written under temporary names and get their
/// final names in [`ParquetFiles::finish`], when the number of shards is known.
pub(crate) struct ParquetFiles {
    dir: PathBuf,
    stem: String,
    schema: SchemaRef,
    max_file_bytes: Option<u64>,
    writer: Option<ArrowWriter<File>>,
    parts: Vec<PathBuf>,
    /// Rows in the open part.
    part_rows: u64,
    /// Rows and Arrow bytes written so far.
    pub rows: u64,
    pub arrow_bytes: u64,
}

impl ParquetFiles {
    /// Starts `dir/{stem}...`; a first (possibly empty) file is always written.
    pub(crate) fn create(dir: &Path, stem: &str, schema: SchemaRef, max_file_bytes: Option<u64>) -> Result<Self, ExportError> {
        std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
        let mut files = ParquetFiles {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            schema,
            max_file_bytes,
            writer: None,
            parts: Vec::new(),
            part_rows: 0,
            rows: 0,
            arrow_bytes: 0,
        };
        files.open_part()?;
        Ok(files)
    }

    fn open_part(&mut self) -> Result<(), ExportError> {
        let path = self.dir.join(format!(".{}.part-{}.tmp", self.stem, self.parts.len()));
        let file = File::create(&path).map_err(|e| ExportError::io(&path, e))?;
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(writer_properties()))
            .map_err(|source| ExportError::Parquet { path: path.clone(), source })?;
        self.parts.push(path);
        self.writer = Some(writer);
        self.part_rows = 0;
        Ok(())
    }

    fn close_part(&mut self) -> Result<(), ExportError> {
        if let Some(writer) = self.writer.take() {
            let path = self.parts.last().expect("an open writer has a part");
            writer.close().map_err(|source| ExportError::Parquet { path: path.clone(), source })?;
        }
        Ok(())
    }

    /// Appends `batch`, starting a new shard first when it would not fit in the current one.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = self.writer.as_ref().expect("open until finish");
        let (written, buffered) = (writer.bytes_written() as u64, writer.in_progress_size() as u64);
        if let Some(max) = self.max_file_bytes {
            let incoming = batch.get_array_memory_size() as u64;
            if written + buffered + incoming > max {
                if batch.num_rows() > 1 && incoming > max {
                    // Alone it does not fit a shard: halves may.
                    let half = batch.num_rows() / 2;
                    self.write(&batch.slice(0, half))?;
                    return self.write(&batch.slice(half, batch.num_rows() - half));
                }
                if self.part_rows > 0 {
                    self.close_part()?;
                    self.open_part()?;
                }
            }
        }
        let path = self.parts.last().expect("a part is open").clone();
        let writer = self.writer.as_mut().expect("open until finish");
        writer.write(batch).map_err(|source| ExportError::Parquet { path: path.clone(), source })?;
        if writer.in_progress_size() >= ROW_GROUP_BYTES {
            writer.flush().map_err(|source| ExportError::Parquet { path, source })?;
        }
        self.rows += batch.num_rows() as u64;
        self.part_rows += batch.num_rows() as u64;
        self.arrow_bytes += arrow_bytes(batch);
        Ok(())
    }

    /// Closes the last file and renames the parts to `name(i, n)` under the directory; returns
    /// the final paths.
    pub(crate) fn finish(mut self, name: impl Fn(usize, usize) -> String) -> Result<Vec<PathBuf>, ExportError> {
        self.close_part()?;
        let n = self.parts.len();
        let mut paths = Vec::with_capacity(n);
        for (i, part) in self.parts.iter().enumerate() {
            let path = self.dir.join(name(i, n));
            std::fs::rename(part, &path).map_err(|e| ExportError::io(&path, e))?;
            paths.push(path);
        }
        Ok(paths)
    }
}
