//! The sharded layout of a dataset, and the handle stages read and write it through.
//!
//! Every row belongs to one of a fixed number of virtual shards, stored in its `shard` column; each
//! table is a flat folder holding, per shard with rows, a base file `<table>/part-NNNN.parquet`,
//! replaced whole by every write of the shard (see `store`), and the parts appended to it since
//! (`part-NNNN-l<level>-<writer>-<seq>.parquet`, see [`super::parts`]; only `serve --record`
//! appends), so DuckDB, pyarrow, Polars, pandas and DataFusion read a table as one by glob. A
//! table with no rows at all holds one zero-row file instead ([`EMPTY_PART`]), so that every
//! table folder exists and a glob over it finds the table's schema. The shard count is chosen
//! when the dataset is created and recorded, with the
//! schema version, in `manifest.json` at the root, written once even when several processes
//! start together (a create-if-absent write). A dataset in the earlier single-file layout, or of
//! the previous schema version, is migrated on first use (`migrate`).
//!
//! Which shard a row belongs to is the stages' business (a problem's is a hash of its normalised
//! question, everything derived from a problem inherits it, an imported environment's is a hash
//! of its `env_id`): this module only offers [`Dataset::shard_of`] and stamps the column.

use super::parts::PartName;
use super::store::Store;
use super::{DatasetError, SCHEMA_VERSION, Table, reader, writer};
use arrow::array::RecordBatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Shards of a dataset created without `--shards`: enough that a shard of a corpus ten times the
/// paper's (a few million problems) fits in memory, few enough that a small dataset stays a
/// handful of files per table (only shards with rows have a file).
pub const DEFAULT_SHARDS: u32 = 64;
/// The most shards a dataset may have (part files are numbered with four digits).
pub const MAX_SHARDS: u32 = 10_000;
const MANIFEST: &str = "manifest.json";
/// The zero-row file (with the table's full schema) of a table that has no rows. Its name is no
/// shard's: readers that go shard by shard never see it, it holds no row that could shadow or
/// repeat a shard's, and a write that gives the table rows removes it, so which files a table
/// holds follows from its rows alone.
pub const EMPTY_PART: &str = "part-empty.parquet";
const FORMAT: &str = "codegym-dataset";
const LAYOUT_VERSION: u32 = 2;

/// `manifest.json`: what a reader needs to know before reading any table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub layout: u32,
    pub shards: u32,
    pub schema_version: String,
    /// Every table's schema version (all tables share one today).
    pub tables: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    fn new(shards: u32) -> Manifest {
        let tables = Table::ALL.iter().map(|t| (t.name().to_string(), SCHEMA_VERSION.to_string())).collect();
        Manifest { format: FORMAT.into(), layout: LAYOUT_VERSION, shards, schema_version: SCHEMA_VERSION.into(), tables }
    }
}

/// An open dataset: where it is and how it is sharded.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub(crate) store: Store,
    location: String,
    manifest: Manifest,
}

/// A process's share of the shards (`--shard i/N`: the shards whose number is i mod N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSelection {
    pub index: u32,
    pub count: u32,
}

impl Default for ShardSelection {
    fn default() -> Self {
        ShardSelection { index: 0, count: 1 }
    }
}

impl ShardSelection {
    pub fn includes(self, shard: u32) -> bool {
        shard % self.count == self.index
    }

    /// Whether this process handles every shard.
    pub fn is_all(self) -> bool {
        self.count == 1
    }
}

impl std::str::FromStr for ShardSelection {
    type Err = String;
    fn from_str(s: &str) -> Result<ShardSelection, String> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?)));
        match parsed {
            Some((index, count)) if count > 0 && index < count => Ok(ShardSelection { index, count }),
            _ => Err(format!("`{s}` is not a shard selection: expected i/N with 0 <= i < N (e.g. 0/4)")),
        }
    }
}

impl std::fmt::Display for ShardSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Dataset {
    /// Opens the dataset at `location` (a path or an `s3://`, `gs://`, `az://` URL), creating it with
    /// `shards` (or [`DEFAULT_SHARDS`]) when nothing is there yet, and migrating it when it is in
    /// the earlier single-file layout. A dataset keeps the shard count it was created with: asking
    /// for another is an error.
    pub fn open(location: &str, shards: Option<u32>) -> Result<Dataset, DatasetError> {
        let store = Store::open(location)?;
        if let Some(shards) = shards.filter(|&n| n == 0 || n > MAX_SHARDS) {
            return Err(DatasetError::Location {
                location: location.into(),
                detail: format!("{shards} shards: a dataset has 1 to {MAX_SHARDS}"),
            });
        }
        let (manifest, new) = match read_manifest(&store)? {
            Some(manifest) => {
                super::migrate::remove_leftovers(&store)?;
                (manifest, false)
            }
            None if super::migrate::is_single_file_layout(&store)? => {
                super::migrate::migrate(&store, location, shards.unwrap_or(DEFAULT_SHARDS))?;
                (read_manifest(&store)?.expect("migration writes the manifest"), true)
            }
            None => (create_manifest(&store, shards.unwrap_or(DEFAULT_SHARDS))?, true),
        };
        if let Some(asked) = shards.filter(|&n| n != manifest.shards) {
            return Err(DatasetError::Location {
                location: location.into(),
                detail: format!("the dataset has {} shards; it cannot be opened with {asked}", manifest.shards),
            });
        }
        let mut dataset = Dataset { store, location: location.trim_end_matches('/').to_string(), manifest };
        let upgrade = super::migrate::is_previous_schema(&dataset.manifest);
        if upgrade {
            super::migrate::upgrade_schema(&dataset)?;
            dataset.manifest = write_manifest(&dataset.store, Manifest::new(dataset.manifest.shards))?;
        }
        // A dataset written before every table had its folder gets them with its upgrade.
        if new || upgrade {
            dataset.ensure_table_files()?;
        }
        Ok(dataset)
    }

    /// Gives every table without a Parquet file its zero-row file ([`EMPTY_PART`]), and removes
    /// it from tables with rows: a new dataset has every table folder, so does one written before
    /// the zero-row files existed once a command has changed it, and a zero-row file that
    /// processes writing other shards at the same moment left beside rows is gone after the next
    /// command (`finalize`, after shard runs), so the files follow from the rows alone.
    pub fn ensure_table_files(&self) -> Result<(), DatasetError> {
        Table::ALL.into_iter().try_for_each(|table| self.tidy_empty_part(table))
    }

    /// Writes `table`'s zero-row file when the table has no Parquet file; removes it when the
    /// table has shard files.
    fn tidy_empty_part(&self, table: Table) -> Result<(), DatasetError> {
        let files = self.store.list(table.name())?;
        let empty_part = format!("{}/{EMPTY_PART}", table.name());
        let has_empty_part = files.iter().any(|name| name == EMPTY_PART);
        let has_rows = files.iter().any(|name| PartName::parse(name).is_some());
        if has_rows && has_empty_part {
            self.store.delete(&empty_part)?;
        } else if !has_rows && !files.iter().any(|name| name.ends_with(".parquet") && !name.starts_with('.')) {
            let empty = writer::encode(table, 0, &[], writer::Order::Key)?;
            self.store.put_if_absent(&empty_part, empty.bytes)?;
        }
        Ok(())
    }

    /// The dataset being migrated into, before it has its manifest.
    pub(crate) fn for_migration(store: &Store, location: &str, shards: u32) -> Dataset {
        Dataset { store: store.clone(), location: location.to_string(), manifest: Manifest::new(shards) }
    }

    /// Opens a dataset that must exist already (for commands that only read or update one).
    pub fn open_existing(location: &str) -> Result<Dataset, DatasetError> {
        let store = Store::open(location)?;
        if read_manifest(&store)?.is_none() && !super::migrate::is_single_file_layout(&store)? {
            return Err(DatasetError::NoDataset { location: location.into() });
        }
        Dataset::open(location, None)
    }

    /// The location as given: a path or a URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn shards(&self) -> u32 {
        self.manifest.shards
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shard of a row whose root key is `key` (the same on every machine).
    pub fn shard_of(&self, key: &str) -> u32 {
        shard_of(key, self.manifest.shards)
    }

    /// Every shard number this process handles under `selection`, in order.
    pub fn selected(&self, selection: ShardSelection) -> Vec<u32> {
        (0..self.shards()).filter(|&s| selection.includes(s)).collect()
    }

    /// The relative path of `table`'s file for `shard`.
    pub fn part(table: Table, shard: u32) -> String {
        format!("{}/part-{shard:04}.parquet", table.name())
    }

    /// Appends one whole line to `shard`'s text file at `relative` (see `store`), if this process
    /// still holds the shard's lease when it leased it.
    pub fn append_line(&self, shard: u32, relative: &str, line: &[u8]) -> Result<(), DatasetError> {
        self.check_lease(shard)?;
        self.store.append_line(relative, line)
    }

    /// The text files directly in the folder `relative` whose names end in `suffix`: (their path
    /// or URL, their text), by name.
    pub fn text_files(&self, relative: &str, suffix: &str) -> Result<Vec<(String, String)>, DatasetError> {
        let mut files = Vec::new();
        for name in self.store.list(relative)?.into_iter().filter(|n| n.ends_with(suffix) && !n.starts_with('.')) {
            let path = format!("{relative}/{name}");
            if let Some(bytes) = self.store.get(&path)? {
                files.push((self.store.describe(&path).display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        Ok(files)
    }

    /// The object store and URL of a dataset that is not local (for SQL to read it as it is).
    pub fn object_store(&self) -> Option<(std::sync::Arc<dyn object_store::ObjectStore>, &str)> {
        self.store.remote()
    }

    /// The shards of `table` that have a file.
    pub fn shards_with(&self, table: Table) -> Result<Vec<u32>, DatasetError> {
        let mut shards: Vec<u32> =
            self.store.list(table.name())?.iter().filter_map(|name| PartName::parse(name)).map(|p| p.shard).collect();
        shards.dedup();
        Ok(shards)
    }

    /// The files (relative paths) that hold `table`'s rows of `shard`: its base file and the
    /// parts appended to it (see [`super::parts`]), by name.
    pub fn shard_files(&self, table: Table, shard: u32) -> Result<Vec<String>, DatasetError> {
        let names = self.store.list(table.name())?;
        Ok(names
            .into_iter()
            .filter(|name| PartName::parse(name).is_some_and(|p| p.shard == shard))
            .map(|name| format!("{}/{name}", table.name()))
            .collect())
    }

    /// Every file (relative path) that holds rows of `table`, shard by shard.
    fn table_files(&self, table: Table) -> Result<Vec<String>, DatasetError> {
        let names = self.store.list(table.name())?;
        Ok(names
            .into_iter()
            .filter(|name| PartName::parse(name).is_some())
            .map(|name| format!("{}/{name}", table.name()))
            .collect())
    }

    /// The rows of `table` in the shards `selection` names, from the files' footers (no row is
    /// decoded): the total of a progress bar over them.
    pub fn row_count(&self, table: Table, selection: ShardSelection) -> Result<u64, DatasetError> {
        let mut rows = 0;
        for relative in self.table_files(table)? {
            let in_selection =
                PartName::parse(relative.rsplit('/').next().unwrap_or_default()).is_some_and(|p| selection.includes(p.shard));
            if let Some(bytes) = self.store.get(&relative)?.filter(|_| in_selection) {
                rows += reader::footer_rows(bytes, &self.store.describe(&relative))?;
            }
        }
        Ok(rows)
    }

    /// The rows of `table` in `shard` as Arrow batches with exactly the table's schema (none when
    /// the shard has no file).
    pub fn read_shard_batches(&self, table: Table, shard: u32) -> Result<Vec<RecordBatch>, DatasetError> {
        Ok(self.read_shard_files(table, shard)?.1)
    }

    /// `shard`'s files and their rows, read together. A file listed but gone before it is read
    /// was merged away, and the merge's result was written first: the shard is listed and read
    /// again, so no row is missed.
    pub(crate) fn read_shard_files(&self, table: Table, shard: u32) -> Result<(Vec<String>, Vec<RecordBatch>), DatasetError> {
        loop {
            let files = self.shard_files(table, shard)?;
            if let Some(batches) = self.read_files(table, &files)? {
                return Ok((files, batches));
            }
        }
    }

    /// The rows of `files` (relative paths of `table`'s files) as Arrow batches with exactly the
    /// table's schema; `None` when one of them is gone.
    pub(crate) fn read_files(&self, table: Table, files: &[String]) -> Result<Option<Vec<RecordBatch>>, DatasetError> {
        let mut batches = Vec::new();
        for relative in files {
            let Some(bytes) = self.store.get(relative)? else { return Ok(None) };
            batches.extend(reader::conformed_batches(table, bytes, &self.store.describe(relative))?);
        }
        Ok(Some(batches))
    }

    /// The rows of `table` in `shard`, as `R` (whose fields are a subset of the columns).
    pub fn read_shard<R: DeserializeOwned>(&self, table: Table, shard: u32) -> Result<Vec<R>, DatasetError> {
        let relative = Dataset::part(table, shard);
        let batches = self.read_shard_batches(table, shard)?;
        reader::rows(&self.store.describe(&relative), &batches)
    }

    /// Every row of `table`, shard by shard: for small tables and for tests (a stage reads one
    /// shard at a time).
    pub fn read_table<R: DeserializeOwned>(&self, table: Table) -> Result<Vec<R>, DatasetError> {
        let mut rows = Vec::new();
        for shard in self.shards_with(table)? {
            rows.extend(self.read_shard(table, shard)?);
        }
        Ok(rows)
    }

    /// Every batch of `table`, shard by shard.
    pub fn read_batches(&self, table: Table) -> Result<Vec<RecordBatch>, DatasetError> {
        let mut batches = Vec::new();
        for shard in self.shards_with(table)? {
            batches.extend(self.read_shard_batches(table, shard)?);
        }
        Ok(batches)
    }

    /// Streams `columns` of `table` in batches of at most `batch_rows` rows, shard by shard (see
    /// [`reader::TableScan`]): for tables too large to hold.
    pub fn scan(&self, table: Table, columns: &[&str], batch_rows: usize) -> Result<reader::TableScan, DatasetError> {
        reader::TableScan::new(table, columns, batch_rows, self.store.clone(), self.table_files(table)?)
    }

    /// Replaces `table`'s file for `shard` with `rows` (deduplicated by key, first occurrence
    /// wins, and sorted by it); no rows removes the file (see [`Dataset::write_shard_batches`]).
    pub fn write_shard<R: Serialize>(&self, table: Table, shard: u32, rows: &[R]) -> Result<writer::WriteSummary, DatasetError> {
        let batch = writer::rows_to_batch(table, rows)?;
        self.write_shard_batches(table, shard, &[batch], writer::Order::Key)
    }

    /// Replaces `table`'s files for `shard` (its base file and the parts appended so far) with
    /// one file of `batches`, in `order`; no rows removes them (and leaves the table its zero-row
    /// file when they were the last).
    pub fn write_shard_batches(
        &self,
        table: Table,
        shard: u32,
        batches: &[RecordBatch],
        order: writer::Order,
    ) -> Result<writer::WriteSummary, DatasetError> {
        let replaced = self.shard_files(table, shard)?;
        self.replace_shard(table, shard, batches, order, &replaced)
    }

    /// Writes `batches` as `shard`'s base file and then removes the appended parts among
    /// `replaced` (the files the batches were read from, or all of the shard's): a part appended
    /// since they were listed stays. A crash between the two leaves rows twice, never none, and
    /// the next merge of the shard keeps one of each key.
    pub(crate) fn replace_shard(
        &self,
        table: Table,
        shard: u32,
        batches: &[RecordBatch],
        order: writer::Order,
        replaced: &[String],
    ) -> Result<writer::WriteSummary, DatasetError> {
        let relative = Dataset::part(table, shard);
        let encoded = writer::encode(table, shard, batches, order)?;
        self.check_lease(shard)?;
        if encoded.rows == 0 {
            self.store.delete(&relative)?;
        } else {
            self.store.put(&relative, encoded.bytes.clone())?;
            self.store.delete(&format!("{}/{EMPTY_PART}", table.name()))?;
        }
        for part in replaced.iter().filter(|part| **part != relative) {
            self.store.delete(part)?;
        }
        if encoded.rows == 0 {
            self.tidy_empty_part(table)?;
        }
        Ok(writer::WriteSummary {
            table,
            path: self.store.describe(&relative),
            rows: encoded.rows,
            duplicates: encoded.duplicates,
            bytes: if encoded.rows == 0 { 0 } else { encoded.bytes.len() as u64 },
        })
    }

    /// Replaces `table`'s file for `shard` with `rows` in the order given (for a table whose row
    /// order means something).
    pub fn write_shard_in_order<R: Serialize>(
        &self,
        table: Table,
        shard: u32,
        rows: &[R],
    ) -> Result<writer::WriteSummary, DatasetError> {
        let batch = writer::rows_to_batch(table, rows)?;
        self.write_shard_batches(table, shard, &[batch], writer::Order::AsGiven)
    }

    /// Merges `rows` into `table`'s file for `shard`: a new row replaces the stored row with the
    /// same key, other stored rows are kept (their columns too, even ones `R` does not carry).
    pub fn upsert_shard<R: Serialize>(&self, table: Table, shard: u32, rows: &[R]) -> Result<writer::WriteSummary, DatasetError> {
        let (stored, batches) = self.read_shard_files(table, shard)?;
        let batches: Vec<RecordBatch> = std::iter::once(writer::rows_to_batch(table, rows)?).chain(batches).collect();
        self.replace_shard(table, shard, &batches, writer::Order::Key, &stored)
    }

    /// Merges `rows` into `table`, each into the shard `shard` gives it.
    pub fn upsert<R: Serialize>(&self, table: Table, rows: Vec<R>, shard: impl Fn(&R) -> u32) -> Result<(), DatasetError> {
        let mut by_shard: std::collections::BTreeMap<u32, Vec<R>> = std::collections::BTreeMap::new();
        for row in rows {
            by_shard.entry(shard(&row)).or_default().push(row);
        }
        for (shard, rows) in by_shard {
            self.upsert_shard(table, shard, &rows)?;
        }
        Ok(())
    }
}

/// The root key of a problem: its question with runs of whitespace folded, the key exact
/// deduplication uses, so repeated questions meet in one shard.
pub fn question_key(question: &str) -> String {
    question.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The shard of `key` among `shards`.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    // Setting up a derive-key hasher hashes its context: ingest (a shard per row) clones one.
    static HASHER: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key("codegym shard v1"));
    let hash = HASHER.clone().update(key.as_bytes()).finalize();
    (u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) % u64::from(shards)) as u32
}

fn read_manifest(store: &Store) -> Result<Option<Manifest>, DatasetError> {
    let Some(bytes) = store.get(MANIFEST)? else { return Ok(None) };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| DatasetError::decode(store.describe(MANIFEST), format!("not a dataset manifest: {e}")))?;
    if manifest.format != FORMAT || manifest.layout != LAYOUT_VERSION {
        return Err(DatasetError::decode(
            store.describe(MANIFEST),
            format!("layout {} of `{}`; this codegym reads layout {LAYOUT_VERSION}", manifest.layout, manifest.format),
        ));
    }
    Ok(Some(manifest))
}

/// Replaces the manifest (after a schema upgrade, which every process makes the same).
fn write_manifest(store: &Store, manifest: Manifest) -> Result<Manifest, DatasetError> {
    store.put(MANIFEST, serde_json::to_vec_pretty(&manifest).expect("the manifest serializes").into())?;
    Ok(manifest)
}

/// Writes the manifest of a new dataset once: when several processes create the dataset together,
/// one write wins and every process reads it.
pub(crate) fn create_manifest(store: &Store, shards: u32) -> Result<Manifest, DatasetError> {
    let manifest = Manifest::new(shards);
    let bytes = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    store.put_if_absent(MANIFEST, bytes.into())?;
    Ok(read_manifest(store)?.expect("just written, or written by another process"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_a_stable_function_of_the_key() {
        assert_eq!(shard_of("question", 64), shard_of("question", 64));
        assert!(shard_of("question", 64) < 64);
        assert_eq!(shard_of("anything", 1), 0);
        let spread: std::collections::HashSet<u32> = (0..1000).map(|i| shard_of(&i.to_string(), 16)).collect();
        assert_eq!(spread.len(), 16);
        // Shards are stored: the function must never change.
        let derived = blake3::derive_key("codegym shard v1", b"question");
        assert_eq!(shard_of("question", 64) as u64, u64::from_le_bytes(derived[..8].try_into().unwrap()) % 64);
    }

    #[test]
    fn selections_parse_and_partition_the_shards() {
        let selection: ShardSelection = "1/3".parse().unwrap();
        assert!(selection.includes(4) && !selection.includes(3));
        assert!("3/3".parse::<ShardSelection>().is_err());
        assert!("x".parse::<ShardSelection>().unwrap_err().contains("i/N"));
    }

    #[test]
    fn a_table_without_rows_holds_one_zero_row_file_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().join("d").to_str().unwrap(), Some(4)).unwrap();
        let files = |table: Table| data.store.list(table.name()).unwrap();
        for table in Table::ALL {
            assert_eq!(files(table), [EMPTY_PART], "{table}");
            assert!(data.shards_with(table).unwrap().is_empty(), "the zero-row file is no shard's");
            let batches =
                super::reader::raw_batches(data.store.get(&format!("{table}/{EMPTY_PART}")).unwrap().unwrap(), dir.path())
                    .unwrap();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        }
        let empty = std::fs::read(dir.path().join("d/rejects").join(EMPTY_PART)).unwrap();
        let row = crate::tables::RejectRow {
            stage: "ingest".into(),
            entity_id: "e1".into(),
            source_id: None,
            reason: "missing_field".into(),
            detail: None,
        };
        data.write_shard(Table::Rejects, 2, std::slice::from_ref(&row)).unwrap();
        assert_eq!(files(Table::Rejects), ["part-0002.parquet"], "rows replace the zero-row file");
        data.write_shard::<crate::tables::RejectRow>(Table::Rejects, 2, &[]).unwrap();
        assert_eq!(files(Table::Rejects), [EMPTY_PART], "the last rows gone, the zero-row file is back");
        assert_eq!(std::fs::read(dir.path().join("d/rejects").join(EMPTY_PART)).unwrap(), empty, "byte for byte");
        // One left beside rows by a write of another process at the same moment: the next command tidies it.
        data.write_shard(Table::Rejects, 1, std::slice::from_ref(&row)).unwrap();
        std::fs::write(dir.path().join("d/rejects").join(EMPTY_PART), &empty).unwrap();
        data.ensure_table_files().unwrap();
        assert_eq!(files(Table::Rejects), ["part-0001.parquet"]);
    }

    #[test]
    fn a_new_dataset_keeps_its_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("d");
        let location = location.to_str().unwrap();
        let dataset = Dataset::open(location, Some(8)).unwrap();
        assert_eq!(dataset.shards(), 8);
        assert_eq!(Dataset::open(location, None).unwrap().shards(), 8);
        let err = Dataset::open(location, Some(4)).unwrap_err().to_string();
        assert!(err.contains("has 8 shards"), "{err}");
        assert!(Dataset::open_existing(dir.path().join("none").to_str().unwrap()).is_err());
    }
}
