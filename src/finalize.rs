//! `codegym finalize`: the steps that need every shard, after the shard-wise stages: the
//! near-duplicate groups of environments across problems, and the train/validation split by those
//! groups. Their results live in small tables of their own (`near_duplicates`, `splits`), so
//! finalize never rewrites the large tables; a split once assigned stays the same in later
//! nightlies. It refuses to run while a shard is leased or has unfinished work, and says which.

use crate::dataset::{Dataset, DatasetError, Table};
use crate::near_duplicates::{self, Candidate, NearDuplicateSettings};
use crate::tables::Split;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(
        "shard(s) {shards} are leased (by {owners})\n  hint: wait for the processes working on them to finish, then run `codegym finalize` again"
    )]
    Leased { shards: String, owners: String },
    #[error(
        "shard(s) {shards} have unfinished work ({what})\n  hint: run the shard processes (`--shard i/N`) to the end, then `codegym finalize`"
    )]
    Unfinished { shards: String, what: String },
}

/// What finalize found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FinalizeSummary {
    pub environments: usize,
    /// Environments with a near-duplicate among other problems' environments.
    pub near_duplicates: usize,
    pub groups: usize,
    pub validation: usize,
    /// Shards whose `near_duplicates` or `splits` file changed.
    pub shards_written: usize,
}

#[derive(Deserialize)]
struct EnvText {
    env_id: String,
    source_id: String,
    task_text: Option<String>,
    env_code: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NearDuplicateRow {
    env_id: String,
    near_duplicate_of: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SplitRow {
    env_id: String,
    split: Split,
}

#[derive(Deserialize)]
struct ProblemStatus {
    preflight: String,
}

/// Checks that no shard is leased or unfinished, then groups near-duplicates and assigns splits.
pub fn finalize(data: &Dataset, settings: NearDuplicateSettings) -> Result<FinalizeSummary, FinalizeError> {
    refuse_if_busy(data)?;
    let mut candidates = Vec::new();
    let mut shard_of: Vec<u32> = Vec::new();
    for shard in data.shards_with(Table::Environments)? {
        for env in data.read_shard::<EnvText>(Table::Environments, shard)? {
            let text = env.task_text.as_deref().filter(|t| !t.trim().is_empty()).unwrap_or(&env.env_code);
            candidates.push(Candidate {
                signature: near_duplicates::signature(text),
                env_id: env.env_id,
                source_id: env.source_id,
            });
            shard_of.push(shard);
        }
    }
    let groups = near_duplicates::groups(&candidates, settings.threshold);
    let assigned: HashMap<String, Split> =
        data.read_table::<SplitRow>(Table::Splits)?.into_iter().map(|row| (row.env_id, row.split)).collect();
    let sides = near_duplicates::splits(&candidates, &groups, &assigned, settings.validation_share);
    let mut in_group: HashMap<usize, usize> = HashMap::new();
    for &group in &groups {
        *in_group.entry(group).or_default() += 1;
    }
    let mut near: BTreeMap<u32, Vec<NearDuplicateRow>> = BTreeMap::new();
    let mut splits: BTreeMap<u32, Vec<SplitRow>> = BTreeMap::new();
    for (i, candidate) in candidates.iter().enumerate() {
        let shard = shard_of[i];
        if in_group[&groups[i]] > 1 {
            let of = candidates[groups[i]].env_id.clone();
            near.entry(shard).or_default().push(NearDuplicateRow { env_id: candidate.env_id.clone(), near_duplicate_of: of });
        }
        splits.entry(shard).or_default().push(SplitRow { env_id: candidate.env_id.clone(), split: sides[i] });
    }
    let mut summary = FinalizeSummary {
        environments: candidates.len(),
        near_duplicates: near.values().map(Vec::len).sum(),
        groups: in_group.values().filter(|&&n| n > 1).count(),
        validation: sides.iter().filter(|s| **s == Split::Validation).count(),
        shards_written: 0,
    };
    let shards: BTreeSet<u32> = shard_of.iter().copied().chain(data.shards_with(Table::NearDuplicates)?).collect();
    for shard in shards {
        let changed_near = write_if_changed(data, Table::NearDuplicates, shard, near.remove(&shard).unwrap_or_default())?;
        let changed_splits = write_if_changed(data, Table::Splits, shard, splits.remove(&shard).unwrap_or_default())?;
        summary.shards_written += usize::from(changed_near || changed_splits);
    }
    Ok(summary)
}

/// Writes `rows` as `table`'s file for `shard` unless it holds them already; whether it wrote.
fn write_if_changed<R>(data: &Dataset, table: Table, shard: u32, mut rows: Vec<R>) -> Result<bool, DatasetError>
where
    R: Serialize + serde::de::DeserializeOwned + PartialEq + HasEnv,
{
    rows.sort_by(|a, b| a.env_id().cmp(b.env_id()));
    if data.read_shard::<R>(table, shard)? == rows {
        return Ok(false);
    }
    data.write_shard(table, shard, &rows)?;
    Ok(true)
}

trait HasEnv {
    fn env_id(&self) -> &str;
}

impl HasEnv for NearDuplicateRow {
    fn env_id(&self) -> &str {
        &self.env_id
    }
}

impl HasEnv for SplitRow {
    fn env_id(&self) -> &str {
        &self.env_id
    }
}

/// Finalize needs every shard finished: none leased, no problem waiting for preflight, no
/// environment waiting for verification.
fn refuse_if_busy(data: &Dataset) -> Result<(), FinalizeError> {
    let leased = data.leased()?;
    if !leased.is_empty() {
        let shards = leased.iter().map(|h| h.shard.to_string()).collect::<Vec<_>>().join(", ");
        let owners: BTreeSet<&str> = leased.iter().map(|h| h.owner.as_str()).collect();
        return Err(FinalizeError::Leased { shards, owners: owners.into_iter().collect::<Vec<_>>().join(", ") });
    }
    let mut unfinished: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for shard in data.shards_with(Table::Problems)? {
        if data
            .read_shard::<ProblemStatus>(Table::Problems, shard)?
            .iter()
            .any(|p| p.preflight == crate::corpus::PREFLIGHT_PENDING)
        {
            unfinished.entry(shard).or_default().push("problems awaiting preflight");
        }
    }
    for shard in data.shards_with(Table::Environments)? {
        if data.read_shard::<EnvText>(Table::Environments, shard)?.iter().any(|e| e.status == crate::tables::ENV_PENDING) {
            unfinished.entry(shard).or_default().push("environments awaiting verification");
        }
    }
    if unfinished.is_empty() {
        return Ok(());
    }
    let shards = unfinished.keys().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let what: BTreeSet<&str> = unfinished.values().flatten().copied().collect();
    Err(FinalizeError::Unfinished { shards, what: what.into_iter().collect::<Vec<_>>().join("; ") })
}
