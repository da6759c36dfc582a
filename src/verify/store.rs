//! The tables verification keeps besides `environments` and `task_configs`, for one shard: read
//! once, updated per chunk of environments, the shard's files rewritten whole (each write is
//! atomic per file).

use super::STAGE;
use super::record::Tables;
use crate::dataset::{Dataset, DatasetError, Table};
use crate::tables::{BatteryRunRow, EnvironmentRow, OracleCandidateRow, OracleRunRow, RejectRow, TaskConfigRow, ToolCallStatRow};

/// The tables verification writes besides `environments` and `task_configs`, as stored in one
/// shard.
pub(super) struct Stored {
    shard: u32,
    pub(super) candidates: Vec<OracleCandidateRow>,
    pub(super) oracle_runs: Vec<OracleRunRow>,
    tool_calls: Vec<ToolCallStatRow>,
    battery_runs: Vec<BatteryRunRow>,
    rejects: Vec<RejectRow>,
}

impl Stored {
    pub(super) fn read(data: &Dataset, shard: u32) -> Result<Stored, DatasetError> {
        Ok(Stored {
            shard,
            candidates: data.read_shard(Table::OracleCandidates, shard)?,
            oracle_runs: data.read_shard(Table::OracleRuns, shard)?,
            tool_calls: data.read_shard(Table::ToolCallStats, shard)?,
            battery_runs: data.read_shard(Table::BatteryRuns, shard)?,
            rejects: data.read_shard(Table::Rejects, shard)?,
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
        self.battery_runs.retain(|r| !envs.contains(r.env_id.as_str()));
        self.oracle_runs.extend(fresh.oracle_runs);
        self.tool_calls.extend(fresh.tool_calls);
        self.battery_runs.extend(fresh.battery_runs);
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

    /// Writes the shard's tables, environments last: their status is what a rerun looks at.
    pub(super) fn write(&self, data: &Dataset, envs: &[EnvironmentRow], configs: &[TaskConfigRow]) -> Result<(), DatasetError> {
        let shard = self.shard;
        data.write_shard(Table::OracleCandidates, shard, &self.candidates)?;
        data.write_shard(Table::OracleRuns, shard, &self.oracle_runs)?;
        data.write_shard(Table::ToolCallStats, shard, &self.tool_calls)?;
        data.write_shard(Table::BatteryRuns, shard, &self.battery_runs)?;
        data.write_shard(Table::Rejects, shard, &self.rejects)?;
        data.write_shard(Table::TaskConfigs, shard, configs)?;
        data.write_shard(Table::Environments, shard, envs)?;
        Ok(())
    }
}
