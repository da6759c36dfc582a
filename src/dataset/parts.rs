//! Appended parts: how a writer adds rows to a shard without rewriting what is there, and how the
//! parts are merged later.
//!
//! A shard's rows live in its base file `part-NNNN.parquet` (which the pipeline's stages write
//! whole) and in parts appended beside it, `part-NNNN-l<level>-<writer>-<seq>.parquet`: each
//! [`Appender`] draws a random writer id, numbers its parts, and creates every part under a name
//! nobody else uses (a create-if-absent write, so no file is ever replaced by an append). Appending
//! therefore needs no lease, costs only the new rows, and any number of processes append to one
//! dataset at once; readers (the shard readers, SQL, DuckDB by glob) read every file.
//!
//! Parts are merged under the shard's lease, and only the files listed under it are merged and
//! removed, so parts appended meanwhile are left alone:
//! - [`Compaction::Tiered`]: whenever [`FAN_IN`] parts of one level exist, they become one part of
//!   the next level. Every row is rewritten once per level, a logarithm of the shard's rows, and
//!   a shard holds at most `FAN_IN - 1` parts per level.
//! - [`Compaction::Full`]: the base file and every part become the new base file.
//!
//! The merged file is written before its inputs are removed: a reader in between (or after a
//! crash in between) sees those rows twice, never not at all, and the next merge keeps one row
//! per key. A shard reader that finds a listed file gone lists the shard again (the merged file
//! is there by then); a streaming [`Dataset::scan`] skips it, so a scan concurrent with a merge
//! may miss those rows (scans serve the pipeline's stages, which never read a recording).

use super::writer::{self, Order, WriteSummary};
use super::{Dataset, DatasetError, EMPTY_PART, Table};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Parts of one level merged into one of the next.
pub const FAN_IN: usize = 8;

/// What a file of a table's folder holds rows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartName {
    pub(crate) shard: u32,
    /// `None` for the base file; the merge level of an appended part.
    pub(crate) level: Option<u32>,
}

impl PartName {
    /// The shard and level of a part file name (`part-0042.parquet`,
    /// `part-0042-l0-1a2b3c4d5e6f7a8b-000003.parquet`); `None` for any other file.
    pub(crate) fn parse(name: &str) -> Option<PartName> {
        let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let (digits, appended) = match rest.split_once('-') {
            Some((digits, appended)) => (digits, Some(appended)),
            None => (rest, None),
        };
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let level = match appended {
            None => None,
            Some(appended) => {
                let mut fields = appended.split('-');
                let level = fields.next()?.strip_prefix('l')?.parse().ok()?;
                let (writer, seq) = (fields.next()?, fields.next()?);
                let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex(writer) || !hex(seq) || fields.next().is_some() {
                    return None;
                }
                Some(level)
            }
        };
        Some(PartName { shard: digits.parse().ok()?, level })
    }
}

/// One writer of appended parts: a random id and the number of its next part.
#[derive(Debug)]
pub struct Appender {
    writer: String,
    next: AtomicU64,
}

impl Default for Appender {
    fn default() -> Self {
        Appender::new()
    }
}

impl Appender {
    /// A writer whose id no other process draws (64 bits from the operating system's random
    /// source).
    pub fn new() -> Appender {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        Appender { writer: bytes.iter().map(|b| format!("{b:02x}")).collect(), next: AtomicU64::new(0) }
    }

    /// A name for a new part of `table`'s `shard` at `level`.
    fn name(&self, table: Table, shard: u32, level: u32) -> String {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}/part-{shard:04}-l{level}-{}-{seq:06x}.parquet", table.name(), self.writer)
    }
}

/// How [`Dataset::compact`] merges a shard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    /// Parts of a level, once there are [`FAN_IN`], into one of the next level.
    Tiered,
    /// The base file and every part into the base file.
    Full,
}

/// What [`Dataset::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compacted {
    /// Merged this many files (none when there was nothing to merge).
    Merged(usize),
    /// Another process holds the shard's lease (and may be merging it): left to it.
    Busy,
}

impl Dataset {
    /// Adds `rows` to `table`'s `shard` as a new part (deduplicated and sorted by key), leaving
    /// every existing file as it is. No rows writes nothing.
    pub fn append_shard<R: Serialize>(
        &self,
        table: Table,
        shard: u32,
        rows: &[R],
        appender: &Appender,
    ) -> Result<Option<WriteSummary>, DatasetError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let batch = writer::rows_to_batch(table, rows)?;
        self.add_part(table, shard, &[batch], 0, appender).map(Some)
    }

    /// Writes `batches` as a new part of `shard` at `level`.
    fn add_part(
        &self,
        table: Table,
        shard: u32,
        batches: &[arrow::array::RecordBatch],
        level: u32,
        appender: &Appender,
    ) -> Result<WriteSummary, DatasetError> {
        let encoded = writer::encode(table, shard, batches, Order::Key)?;
        let relative = loop {
            let relative = appender.name(table, shard, level);
            // Only a leftover of a writer that drew the same id could be there: take the next name.
            if self.store.put_if_absent(&relative, encoded.bytes.clone())? {
                break relative;
            }
        };
        crate::dataset::store::count_written(encoded.bytes.len());
        self.store.delete(&format!("{}/{EMPTY_PART}", table.name()))?;
        Ok(WriteSummary {
            table,
            path: self.store.describe(&relative),
            rows: encoded.rows,
            duplicates: encoded.duplicates,
            bytes: encoded.bytes.len() as u64,
        })
    }

    /// Merges `table`'s files of `shard` as `how` says, under the shard's lease; when another
    /// process holds the lease, leaves the shard to it. New parts are named by `appender`.
    pub fn compact(&self, table: Table, shard: u32, how: Compaction, appender: &Appender) -> Result<Compacted, DatasetError> {
        // Most calls find nothing to merge: they learn it from a listing, without the lease.
        if !self.has_work(table, shard, how)? {
            return Ok(Compacted::Merged(0));
        }
        let Some(_lease) = self.try_lease(shard)? else { return Ok(Compacted::Busy) };
        match how {
            Compaction::Full => {
                let (files, batches) = self.read_shard_files(table, shard)?;
                self.replace_shard(table, shard, &batches, Order::Key, &files)?;
                Ok(Compacted::Merged(files.len()))
            }
            Compaction::Tiered => {
                let mut merged = 0;
                while let Some((level, files)) = self.full_level(table, shard)? {
                    // Gone since listed: a whole write of the shard replaced it; look again.
                    let Some(batches) = self.read_files(table, &files)? else { continue };
                    self.check_lease(shard)?;
                    self.add_part(table, shard, &batches, level + 1, appender)?;
                    for file in &files {
                        self.store.delete(file)?;
                    }
                    merged += files.len();
                }
                Ok(Compacted::Merged(merged))
            }
        }
    }

    /// Whether merging `shard` as `how` says would merge anything.
    fn has_work(&self, table: Table, shard: u32, how: Compaction) -> Result<bool, DatasetError> {
        Ok(match how {
            Compaction::Full => self.shard_files(table, shard)?.iter().any(|file| *file != Dataset::part(table, shard)),
            Compaction::Tiered => self.full_level(table, shard)?.is_some(),
        })
    }

    /// The lowest level of `shard` with [`FAN_IN`] parts or more, and those parts.
    fn full_level(&self, table: Table, shard: u32) -> Result<Option<(u32, Vec<String>)>, DatasetError> {
        let mut by_level: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for file in self.shard_files(table, shard)? {
            if let Some(level) = PartName::parse(file.rsplit('/').next().unwrap_or_default()).and_then(|p| p.level) {
                by_level.entry(level).or_default().push(file);
            }
        }
        Ok(by_level.into_iter().find(|(_, files)| files.len() >= FAN_IN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Split {
        env_id: String,
        split: String,
    }

    fn split(i: usize) -> Split {
        Split { env_id: format!("e{i:04}"), split: "train".into() }
    }

    fn dataset(dir: &tempfile::TempDir) -> Dataset {
        Dataset::open(dir.path().to_str().unwrap(), Some(2)).unwrap()
    }

    fn files(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("splits"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_say_the_shard_and_level() {
        assert_eq!(PartName::parse("part-0042.parquet"), Some(PartName { shard: 42, level: None }));
        assert_eq!(PartName::parse("part-0042-l3-1a2b3c4d5e6f7a8b-00000f.parquet"), Some(PartName { shard: 42, level: Some(3) }));
        for other in
            ["part-00000.parquet", ".part-0042.parquet.1.tmp", EMPTY_PART, "part-0042-l3.parquet", "part-0042-lx-ab-01.parquet"]
        {
            assert_eq!(PartName::parse(other), None, "{other}");
        }
        let appender = Appender::new();
        let name = appender.name(Table::Splits, 7, 2);
        assert_eq!(PartName::parse(name.strip_prefix("splits/").unwrap()), Some(PartName { shard: 7, level: Some(2) }));
        assert_ne!(name, appender.name(Table::Splits, 7, 2), "every part gets a name of its own");
    }

    #[test]
    fn appends_add_files_and_leave_the_existing_ones_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        data.write_shard(Table::Splits, 1, &[split(0)]).unwrap();
        let appender = Appender::new();
        let mut seen: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        for i in 1..FAN_IN {
            data.append_shard(Table::Splits, 1, &[split(i)], &appender).unwrap();
            let now = files(&dir);
            assert_eq!(now.len(), i + 1, "one new file per append: {now:?}");
            for (name, bytes) in &seen {
                assert_eq!(&std::fs::read(dir.path().join("splits").join(name)).unwrap(), bytes, "{name} was rewritten");
            }
            for name in now {
                seen.entry(name.clone()).or_insert_with(|| std::fs::read(dir.path().join("splits").join(&name)).unwrap());
            }
        }
        let rows: Vec<Split> = data.read_shard(Table::Splits, 1).unwrap();
        assert_eq!(rows.len(), FAN_IN, "the base file and every part read as the shard");
        assert_eq!(data.shards_with(Table::Splits).unwrap(), [1]);
        assert_eq!(data.row_count(Table::Splits, Default::default()).unwrap(), FAN_IN as u64);
    }

    #[test]
    fn tiered_compaction_bounds_the_parts_and_full_compaction_leaves_the_base_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let appender = Appender::new();
        let appends = FAN_IN * FAN_IN + 3;
        for i in 0..appends {
            data.append_shard(Table::Splits, 0, &[split(i)], &appender).unwrap();
            data.compact(Table::Splits, 0, Compaction::Tiered, &appender).unwrap();
            assert!(files(&dir).len() < 2 * FAN_IN, "{:?}", files(&dir));
        }
        let levels: Vec<Option<u32>> = files(&dir).iter().map(|f| PartName::parse(f).unwrap().level).collect();
        assert_eq!(levels, [Some(0), Some(0), Some(0), Some(2)], "64 parts became one of level 2; 3 wait");
        let rows: Vec<Split> = data.read_table(Table::Splits).unwrap();
        assert_eq!(rows.len(), appends);
        assert_eq!(data.compact(Table::Splits, 0, Compaction::Full, &appender).unwrap(), Compacted::Merged(4));
        assert_eq!(files(&dir), ["part-0000.parquet"]);
        let mut after: Vec<Split> = data.read_table(Table::Splits).unwrap();
        after.sort_by(|a, b| a.env_id.cmp(&b.env_id));
        assert_eq!(after, (0..appends).map(split).collect::<Vec<_>>());
        assert_eq!(data.compact(Table::Splits, 0, Compaction::Full, &appender).unwrap(), Compacted::Merged(0));
    }

    #[test]
    fn a_shard_leased_elsewhere_is_left_to_its_holder_and_a_whole_write_replaces_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(&dir);
        let appender = Appender::new();
        for i in 0..FAN_IN {
            data.append_shard(Table::Splits, 1, &[split(i)], &appender).unwrap();
        }
        let lease = data.lease(1, &|_| {}).unwrap();
        let other = data.clone();
        let busy = std::thread::spawn(move || other.compact(Table::Splits, 1, Compaction::Tiered, &Appender::new()).unwrap());
        // The lease is this process's, taken on this thread: the other thread sees it held.
        assert_eq!(busy.join().unwrap(), Compacted::Busy);
        drop(lease);
        assert_eq!(files(&dir).len(), FAN_IN);
        data.write_shard(Table::Splits, 1, &[split(99)]).unwrap();
        assert_eq!(files(&dir), ["part-0001.parquet"], "a whole write of the shard replaces its parts");
    }
}
