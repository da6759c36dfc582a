//! The `runs` table: one row per command that changed a dataset (what ran, with which arguments,
//! how many sandbox jobs, per-stage counts, when and for how long). Unlike every other table it
//! records wall-clock facts, so it is the one table that differs between identical runs.

use crate::dataset::{Dataset, DatasetError, Table};
use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Serialize)]
struct RunRow {
    run_id: String,
    command: String,
    codegym_version: String,
    arguments: String,
    llm_requests: i64,
    sandbox_jobs: i64,
    stage_stats: String,
    /// Milliseconds since the Unix epoch (the column is a UTC timestamp).
    started_at: i64,
    duration_ms: i64,
}

/// A run being recorded: started when created, written by [`RunLog::finish`].
pub struct RunLog {
    command: String,
    started: Instant,
    started_at: SystemTime,
    jobs_before: u64,
    llm_requests: u64,
    stages: serde_json::Map<String, serde_json::Value>,
}

impl RunLog {
    pub fn start(command: &str) -> RunLog {
        RunLog {
            command: command.to_string(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            jobs_before: crate::sandbox::counters().jobs_run,
            llm_requests: 0,
            stages: serde_json::Map::new(),
        }
    }

    /// Records one stage's counts (any JSON object).
    pub fn stage(&mut self, name: &str, stats: serde_json::Value) {
        self.stages.insert(name.to_string(), stats);
    }

    /// Counts LLM requests this run made (live or replayed).
    pub fn llm_requests(&mut self, requests: u64) {
        self.llm_requests += requests;
    }

    /// Appends the run to `data`'s `runs` table (in the shard its id falls in).
    pub fn finish(self, data: &Dataset) -> Result<(), DatasetError> {
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let since_epoch = self.started_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let row = RunRow {
            run_id: crate::ids::content_id("run", &[&self.command, &rfc3339(self.started_at), &arguments.join("\u{1f}")]),
            command: self.command,
            codegym_version: env!("CARGO_PKG_VERSION").to_string(),
            arguments: serde_json::to_string(&arguments).expect("strings serialize"),
            llm_requests: self.llm_requests as i64,
            sandbox_jobs: (crate::sandbox::counters().jobs_run - self.jobs_before) as i64,
            stage_stats: serde_json::Value::Object(self.stages).to_string(),
            started_at: since_epoch.as_millis() as i64,
            duration_ms: self.started.elapsed().as_millis() as i64,
        };
        // Processes working on other shards record their runs too: take the lease of the one this
        // row falls in, so that no two writes of it race.
        let shard = data.shard_of(&row.run_id);
        data.each_leased(&[shard], "run log", |shard| {
            data.upsert_shard(Table::Runs, shard, std::slice::from_ref(&row)).map(|_| ())
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, rest) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
    use std::time::Duration;

    #[test]
    fn a_run_records_its_start_as_a_utc_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        RunLog::start("verify").finish(&data).unwrap();
        let batches = data.read_batches(Table::Runs).unwrap();
        let started = batches[0].column_by_name("started_at").unwrap();
        assert_eq!(started.data_type(), &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())));
        let at = started.as_primitive::<TimestampMillisecondType>().value(0);
        assert!((before..before + 60_000).contains(&at), "{at} is not the run's start ({before})");
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_107_045_250)), "2025-11-25T21:44:05.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
