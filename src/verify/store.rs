//! The tables verification keeps besides `environments` and `task_configs`: read once, updated
//! per chunk of environments, rewritten whole (each write is atomic per table).

use super::STAGE;
use super::record::Tables;
use crate::dataset::{self, DatasetError, Table};
use crate::tables::{EnvironmentRow, OracleCandidateRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};
use std::path::Path;

/// The tables verification writes besides `environments` and `task_configs`, as stored.
pub(super) struct Stored {
    pub(super) candidates: Vec<OracleCandidateRow>,
    pub(super) oracle_runs: Vec<OracleRunRow>,
    tool_calls: Vec<ToolCallStatRow>,
    rejects: Vec<RejectRow>,
}

impl Stored {
    pub(super) fn read(data: &Path) -> Result<Stored, DatasetError> {
        Ok(Stored {
            candidates: dataset::read_table(data, Table::OracleCandidates)?,
            oracle_runs: dataset::read_table(data, Table::OracleRuns)?,
            tool_calls: dataset::read_table(data, Table::ToolCallStats)?,
            rejects: dataset::read_table(data, Table::Rejects)?,
        })
    }

    /// Replaces everything verification recorded about `env_ids` with `fresh`.
    pub(super) fn replace<'a>(&mut self, env_ids: impl Iterator<Item = &'a str>, fresh: Tables) {
        let envs: std::collections::HashSet<&str> = env_ids.collect();
        let entities: std::collections::HashSet<&str> =
            self.oracle_runs.iter().filter(|r| envs.contains(r.env_id.as_str())).map(|r| r.config_id.as_str()).collect();
        let stale =
            |r: &RejectRow| r.stage == STAGE && (envs.contains(r.entity_id.as_str()) || entities.contains(r.entity_id.as_str()));
        self.rejects.retain(|r| !stale(r));
        self.oracle_runs.retain(|r| !envs.contains(r.env_id.as_str()));
        self.tool_calls.retain(|r| !envs.contains(r.env_id.as_str()));
        self.oracle_runs.extend(fresh.oracle_runs);
        self.tool_calls.extend(fresh.tool_calls);
        self.rejects.extend(fresh.rejects);
    }

    /// Records the smoke test of each (environment, candidate): "pass" or why not.
    pub(super) fn record_smoke_tests(&mut self, results: Vec<(String, i32, String)>) {
        for (env_id, candidate, verdict) in results {
            if let Some(row) = self.candidates.iter_mut().find(|c| c.env_id == env_id && c.candidate == candidate) {
                row.smoke_test = Some(verdict);
            }
        }
    }

    pub(super) fn write(&self, data: &Path, envs: &[EnvironmentRow], configs: &[TaskConfigRow]) -> Result<(), DatasetError> {
        if !self.candidates.is_empty() {
            dataset::write_table(data, Table::OracleCandidates, &self.candidates)?;
        }
        dataset::write_table(data, Table::OracleRuns, &self.oracle_runs)?;
        dataset::write_table(data, Table::ToolCallStats, &self.tool_calls)?;
        dataset::write_table(data, Table::Rejects, &self.rejects)?;
        dataset::write_table(data, Table::TaskConfigs, configs)?;
        dataset::write_table(data, Table::Environments, envs)?;
        Ok(())
    }
}
