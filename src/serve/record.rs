//! `--record DIR`: every step of every served episode as a row of the `episodes` table (the
//! reset that starts an episode is its step 0), with the action, the observation the client got,
//! the step's verdict, reward, done flag and timing. Rows collect in memory and are merged into
//! the table by [`Recorder::flush`] (the server flushes every few seconds and when it stops);
//! each flush replaces the touched shards' files whole (rows of one episode share a shard), so
//! `codegym sql --data DIR` reads the table whole at any time. Each shard is merged under its
//! lease, so several servers recording into one dataset take turns and lose no row.

use crate::dataset::{Dataset, DatasetError, Table};
use serde::Serialize;
use std::collections::BTreeMap;
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

/// Collects rows and merges them into the `episodes` table of a dataset.
pub struct Recorder {
    data: Dataset,
    pending: Mutex<Vec<EpisodeRow>>,
    /// One flush at a time: each reads the table and writes it back.
    flushing: Mutex<()>,
}

impl Recorder {
    pub fn new(data: Dataset) -> Recorder {
        Recorder { data, pending: Mutex::new(Vec::new()), flushing: Mutex::new(()) }
    }

    pub fn push(&self, row: EpisodeRow) {
        self.pending.lock().unwrap().push(row);
    }

    /// Merges the rows collected so far into the table; returns how many. Rows that fail to be
    /// written are kept for the next flush.
    pub fn flush(&self) -> Result<usize, DatasetError> {
        let _one_at_a_time = self.flushing.lock().unwrap();
        let rows = std::mem::take(&mut *self.pending.lock().unwrap());
        if rows.is_empty() {
            return Ok(0);
        }
        let count = rows.len();
        if let Err(error) = self.merge(rows.clone()) {
            let mut pending = self.pending.lock().unwrap();
            let later = std::mem::replace(&mut *pending, rows);
            pending.extend(later);
            return Err(error);
        }
        Ok(count)
    }

    /// Merges `rows` shard by shard, each under its lease.
    fn merge(&self, rows: Vec<EpisodeRow>) -> Result<(), DatasetError> {
        let mut by_shard: BTreeMap<u32, Vec<EpisodeRow>> = BTreeMap::new();
        for row in rows {
            by_shard.entry(self.data.shard_of(&row.episode_id)).or_default().push(row);
        }
        let shards: Vec<u32> = by_shard.keys().copied().collect();
        self.data.each_leased(&shards, "serve --record", |shard| {
            self.data.upsert_shard(Table::Episodes, shard, &by_shard[&shard]).map(|_| ())
        })
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
    }

    #[test]
    fn flushes_merge_into_the_table() {
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
