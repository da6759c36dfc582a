//! Ingest's spill: the new problems of each shard, in corpus order, kept in a local temporary file
//! per shard (Arrow IPC) while the corpus streams by, so that memory holds one small batch per
//! shard rather than the corpus; each shard is then merged with what the dataset holds, one at a
//! time.

use super::ProblemBatch;
use crate::dataset::DatasetError;
use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

/// Rows buffered per shard before they go to its file.
const FLUSH_ROWS: usize = 256;

/// A shard's rows not yet in its file, and the file once it exists.
type Open = (ProblemBatch, Option<StreamWriter<BufWriter<File>>>);

pub(super) struct Spill {
    dir: tempfile::TempDir,
    open: BTreeMap<u32, Open>,
}

impl Spill {
    pub(super) fn new() -> Result<Spill, DatasetError> {
        let dir = tempfile::tempdir().map_err(|e| DatasetError::io(std::env::temp_dir(), e))?;
        Ok(Spill { dir, open: BTreeMap::new() })
    }

    fn path(&self, shard: u32) -> PathBuf {
        self.dir.path().join(format!("shard-{shard:04}.arrows"))
    }

    /// The batch that collects `shard`'s next rows.
    pub(super) fn batch(&mut self, shard: u32) -> &mut ProblemBatch {
        &mut self.open.entry(shard).or_insert_with(|| (ProblemBatch::new(), None)).0
    }

    /// Moves `shard`'s buffered rows to its file when there are enough of them (or `force`).
    pub(super) fn flush(&mut self, shard: u32, force: bool) -> Result<(), DatasetError> {
        let path = self.path(shard);
        let Some((batch, writer)) = self.open.get_mut(&shard) else { return Ok(()) };
        if batch.rows == 0 || (!force && batch.rows < FLUSH_ROWS) {
            return Ok(());
        }
        let rows = batch.finish();
        if writer.is_none() {
            let file = File::create(&path).map_err(|e| DatasetError::io(&path, e))?;
            *writer = Some(
                StreamWriter::try_new(BufWriter::new(file), &rows.schema()).map_err(|e| DatasetError::arrow("problems", e))?,
            );
        }
        writer.as_mut().expect("opened above").write(&rows).map_err(|e| DatasetError::arrow("problems", e))
    }

    /// The shards that have rows.
    pub(super) fn shards(&self) -> Vec<u32> {
        self.open.keys().copied().collect()
    }

    /// `shard`'s rows, in the order they came, closing its file.
    pub(super) fn take(&mut self, shard: u32) -> Result<Vec<RecordBatch>, DatasetError> {
        self.flush(shard, true)?;
        let Some((_, Some(mut writer))) = self.open.remove(&shard) else { return Ok(Vec::new()) };
        writer.finish().map_err(|e| DatasetError::arrow("problems", e))?;
        drop(writer);
        let path = self.path(shard);
        let file = File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
        let reader = StreamReader::try_new(BufReader::new(file), None).map_err(|e| DatasetError::arrow("problems", e))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| DatasetError::arrow("problems", e))?;
        let _ = std::fs::remove_file(&path);
        Ok(batches)
    }
}
