//! `--record DIR`: every step of every served episode as a row of the `episodes` table (the
//! reset that starts an episode is its step 0), with the action, the observation the client got,
//! the step's verdict, reward, done flag and timing. Rows collect in memory and
//! [`Recorder::flush`] (the server flushes every few seconds) appends them to the table as new
//! part files (rows of one episode share a shard; see `dataset::parts`), so a flush costs its own
//! rows whatever the table holds, never rewrites a file, and `codegym sql --data DIR` or DuckDB
//! read the table whole at any time. Parts are merged as they pile up (tiered, under the shard's
//! lease) and into one file per shard when the server stops ([`Recorder::finish`]). Any number
//! of servers record into one dataset at once: their parts have names of their own, and a merge
//! takes only the files it listed under the lease.

use crate::dataset::{Appender, Compaction, Dataset, DatasetError, Table};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// One row of `episodes` (column docs in `schemas/episodes.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeRow {
    pub episode_id: String,
    pub step: i32,
    pub label: Option<String>,
    pub protocol: String,
    pub config_id: String,
    pub env_id: String,
    pub env_name: String,
    pub seed: i64,
    pub action: Option<String>,
    pub observation: String,
    pub verdict: String,
    pub detail: Option<String>,
    pub reward: f64,
    pub done: bool,
    pub duration_ms: i64,
    pub at_ms: i64,
}

/// Collects rows and appends them to the `episodes` table of a dataset.
pub struct Recorder {
    data: Dataset,
    appender: Appender,
    pending: Mutex<Vec<EpisodeRow>>,
    /// The shards this recorder has written, merged whole when it finishes; held by the flush
    /// running, so flushes take turns.
    written: Mutex<BTreeSet<u32>>,
}

impl Recorder {
    pub fn new(data: Dataset) -> Recorder {
        Recorder { data, appender: Appender::new(), pending: Mutex::new(Vec::new()), written: Mutex::new(BTreeSet::new()) }
    }

    pub fn push(&self, row: EpisodeRow) {
        self.pending.lock().unwrap().push(row);
    }

    /// Appends the rows collected so far to the table; returns how many. Rows that fail to be
    /// written are kept for the next flush.
    pub fn flush(&self) -> Result<usize, DatasetError> {
        let mut written = self.written.lock().unwrap();
        let rows = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut by_shard: BTreeMap<u32, Vec<EpisodeRow>> = BTreeMap::new();
        for row in rows {
            by_shard.entry(self.data.shard_of(&row.episode_id)).or_default().push(row);
        }
        let mut count = 0;
        while let Some((shard, rows)) = by_shard.pop_first() {
            if let Err(error) = self.data.append_shard(Table::Episodes, shard, &rows, &self.appender) {
                let mut pending = self.pending.lock().unwrap();
                let later = std::mem::replace(&mut *pending, rows);
                pending.extend(by_shard.into_values().flatten().chain(later));
                return Err(error);
            }
            count += rows.len();
            written.insert(shard);
            self.compact(shard, Compaction::Tiered);
        }
        Ok(count)
    }

    /// Flushes, then merges the files of every shard this recorder wrote into one (shards
    /// another process is merging at that moment are left to it); returns the rows flushed.
    pub fn finish(&self) -> Result<usize, DatasetError> {
        let count = self.flush()?;
        for &shard in self.written.lock().unwrap().iter() {
            self.compact(shard, Compaction::Full);
        }
        Ok(count)
    }

    /// Merges `shard`'s parts; a failure loses nothing (the parts stay), so it is only reported.
    fn compact(&self, shard: u32, how: Compaction) {
        if let Err(error) = self.data.compact(Table::Episodes, shard, how, &self.appender) {
            eprintln!("codegym serve: merging the recording's parts of shard {shard} failed (its rows are kept): {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(episode: &str, step: i32) -> EpisodeRow {
        EpisodeRow {
            episode_id: episode.into(),
            step,
            label: None,
            protocol: "openenv".into(),
            config_id: "c".into(),
            env_id: "e".into(),
            env_name: "XEnv".into(),
            seed: 7,
            action: (step > 0).then(|| r#"{"name": "Observe", "parameters": {}}"#.into()),
            observation: "o".into(),
            verdict: "ok".into(),
            detail: None,
            reward: 0.0,
            done: false,
            duration_ms: 1,
            at_ms: 2,
        }
    }

    #[test]
    fn two_recorders_on_one_dataset_lose_no_row() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(2)).unwrap();
        let servers = [Recorder::new(data.clone()), Recorder::new(data.clone())];
        std::thread::scope(|scope| {
            for (s, recorder) in servers.iter().enumerate() {
                scope.spawn(move || {
                    for i in 0..40 {
                        recorder.push(row(&format!("server{s}-episode{i}"), 0));
                        recorder.flush().unwrap();
                    }
                });
            }
        });
        assert_eq!(data.read_table::<serde_json::Value>(Table::Episodes).unwrap().len(), 80);
        for recorder in &servers {
            recorder.finish().unwrap();
        }
        assert_eq!(data.read_table::<serde_json::Value>(Table::Episodes).unwrap().len(), 80, "nothing lost in the merges");
    }

    #[test]
    fn flushes_append_files_and_never_rewrite_one_and_finishing_merges_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(1)).unwrap();
        let recorder = Recorder::new(data.clone());
        let table = dir.path().join("episodes");
        let files = || -> BTreeMap<String, Vec<u8>> {
            std::fs::read_dir(&table)
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
                .collect()
        };
        let mut before = files();
        for step in 0..crate::dataset::parts::FAN_IN as i32 - 1 {
            recorder.push(row("a", step));
            recorder.flush().unwrap();
            let after = files();
            for (name, bytes) in &before {
                assert!(name == crate::dataset::EMPTY_PART || after.get(name) == Some(bytes), "{name} was rewritten by a flush");
            }
            assert_eq!(after.len(), step as usize + 1, "one new file per flush: {:?}", after.keys());
            before = after;
        }
        recorder.push(row("a", 99));
        assert_eq!(recorder.finish().unwrap(), 1);
        assert_eq!(files().keys().collect::<Vec<_>>(), ["part-0000.parquet"], "finishing merges the parts");
        assert_eq!(data.read_table::<serde_json::Value>(Table::Episodes).unwrap().len(), crate::dataset::parts::FAN_IN);
    }

    #[test]
    fn flushes_add_to_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        let recorder = Recorder::new(data.clone());
        recorder.push(row("a", 0));
        recorder.push(row("a", 1));
        assert_eq!(recorder.flush().unwrap(), 2);
        assert_eq!(recorder.flush().unwrap(), 0);
        recorder.push(row("a", 2));
        recorder.push(row("b", 0));
        recorder.flush().unwrap();
        let rows: Vec<serde_json::Value> = data.read_table(Table::Episodes).unwrap();
        let mut keys: Vec<(String, i64)> =
            rows.iter().map(|r| (r["episode_id"].as_str().unwrap().to_string(), r["step"].as_i64().unwrap())).collect();
        keys.sort();
        assert_eq!(keys, [("a".into(), 0), ("a".into(), 1), ("a".into(), 2), ("b".into(), 0)]);
    }
}
