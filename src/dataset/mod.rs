//! The dataset: a folder or an object-store prefix holding one folder of Parquet files per table.
//!
//! This module owns the sharded layout (`DIR/<table>/part-NNNN.parquet`, one base file per virtual
//! shard with rows, parts appended beside it by `serve --record` ([`parts`]), a zero-row
//! `part-empty.parquet` in a table with none, and `manifest.json`; see [`layout`]), where the files live ([`store`]: a local folder
//! or `s3://`, `gs://`, `az://`), leases on shards for concurrent writers ([`lease`]), the table
//! catalogue ([`Table`]), the column types (read from `schemas/<table>.json`, the single source of
//! truth, by [`schema`]), and the two directions of conversion between serde row structs and
//! Parquet ([`writer`], [`reader`]). It knows nothing about SQL (that is `query`) or about what the
//! pipeline stages put in the rows, beyond which column roots a row when migrating old datasets
//! ([`migrate`]); stages hand it `#[derive(Serialize)]` structs whose field names are the column
//! names, one shard at a time.
//!
//! Guarantees:
//! - a shard's file is replaced whole (a rename locally, a single PUT remotely), so a crash
//!   leaves the old or the new file, never a torn one; an appended part is created once under a
//!   name of its own and never replaced;
//! - rows are deduplicated by the table's key (first occurrence wins) and sorted by it (except
//!   where their order means something), and the Parquet writer is configured without
//!   timestamps, so the same rows give byte-identical files;
//! - the schema version ([`SCHEMA_VERSION`]) is stored in every file's key-value metadata under
//!   [`SCHEMA_VERSION_KEY`], and in the manifest.

mod error;
pub mod layout;
pub mod lease;
mod migrate;
pub mod parts;
pub mod reader;
pub mod schema;
mod store;
pub mod writer;

use std::fmt;
use std::str::FromStr;

pub use error::DatasetError;
pub use layout::{DEFAULT_SHARDS, Dataset, EMPTY_PART, Manifest, ShardSelection, shard_of};
pub use parts::{Appender, Compacted, Compaction};
pub use reader::{TableScan, read_file_batches, read_parquet_rows, read_rows_file};
pub use schema::{ColumnSpec, ColumnType, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TableSpec};
pub use store::{bytes_written, local_path};
pub use writer::{Order, SHARD_COLUMN, WriteSummary, rows_to_batch};

/// A table of the dataset. Its [`name`](Table::name) is both the folder name under the data
/// directory and the SQL table name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per source problem (`problems`).
    Problems,
    /// One row per LLM request, live or replayed (`llm_calls`).
    LlmCalls,
    /// One row per environment candidate (`environments`).
    Environments,
    /// One row per (environment, configuration) (`task_configs`).
    TaskConfigs,
    /// One row per oracle candidate of an environment (`oracle_candidates`).
    OracleCandidates,
    /// One row per (oracle candidate, configuration) run (`oracle_runs`).
    OracleRuns,
    /// One row per (configuration, tool) for the chosen oracle (`tool_call_stats`).
    ToolCallStats,
    /// One row per run of an environment's exploit battery (`battery_runs`).
    BatteryRuns,
    /// One row per item a stage dropped (`rejects`).
    Rejects,
    /// One row per run of the engine (`runs`).
    Runs,
    /// One row per environment with near-duplicates across problems (`near_duplicates`).
    NearDuplicates,
    /// One row per environment: its side of the train/validation split (`splits`).
    Splits,
    /// One row per step of an episode `codegym serve --record` served (`episodes`).
    Episodes,
}

impl Table {
    /// Every table, in pipeline order.
    pub const ALL: [Table; 13] = [
        Table::Problems,
        Table::LlmCalls,
        Table::Environments,
        Table::TaskConfigs,
        Table::OracleCandidates,
        Table::OracleRuns,
        Table::ToolCallStats,
        Table::BatteryRuns,
        Table::Rejects,
        Table::Runs,
        Table::NearDuplicates,
        Table::Splits,
        Table::Episodes,
    ];

    /// The snake_case table name: the folder name and the SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Problems => "problems",
            Table::LlmCalls => "llm_calls",
            Table::Environments => "environments",
            Table::TaskConfigs => "task_configs",
            Table::OracleCandidates => "oracle_candidates",
            Table::OracleRuns => "oracle_runs",
            Table::ToolCallStats => "tool_call_stats",
            Table::BatteryRuns => "battery_runs",
            Table::Rejects => "rejects",
            Table::Runs => "runs",
            Table::NearDuplicates => "near_duplicates",
            Table::Splits => "splits",
            Table::Episodes => "episodes",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Table`] from a name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table `{name}`; the tables are: {}", table_names().join(", "))]
pub struct UnknownTable {
    /// The name that was given.
    pub name: String,
}

fn table_names() -> Vec<&'static str> {
    Table::ALL.iter().map(|t| t.name()).collect()
}

impl FromStr for Table {
    type Err = UnknownTable;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| UnknownTable { name: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Table::ALL {
            assert_eq!(t.name().parse::<Table>().unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
    }

    #[test]
    fn unknown_name_lists_tables() {
        let err = "problem".parse::<Table>().unwrap_err().to_string();
        assert!(err.contains("`problem`"), "{err}");
        assert!(err.contains("problems, llm_calls, environments"), "{err}");
        assert!(err.contains("runs"), "{err}");
    }
}
