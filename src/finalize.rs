//! `codegym finalize`: the steps that need every shard, after the shard-wise stages: the
//! near-duplicate groups of environments across problems, and the train/validation split by those
//! groups. Their results live in small tables of their own (`near_duplicates`, `splits`), so
//! finalize never rewrites the large tables; a split once assigned stays the same in later
//! nightlies, and no group of near-duplicates ever spans both sides: a newcomer that would join
//! groups on both sides is held out (`held_out`, with a `near_duplicate_across_splits` reject),
//! and a dataset whose split is already broken is refused. It refuses to run while a shard is leased or has unfinished work, and says which.

use crate::dataset::{Dataset, DatasetError, Table};
use crate::near_duplicates::{self, Candidate, NearDuplicateSettings};
use crate::reasons::Reason;
use crate::tables::{RejectRow, Split};
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
    #[error(
        "the split is broken: near-duplicates sit on both sides ({pairs})\n  hint: an earlier codegym assigned them; export with --split train or --split validation knowing this, or delete the dataset's `splits` folder and run `codegym finalize` to assign every environment again"
    )]
    SplitCrossed { pairs: String },
}

/// What finalize found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FinalizeSummary {
    pub environments: usize,
    /// Environments with a near-duplicate among other problems' environments.
    pub near_duplicates: usize,
    pub groups: usize,
    pub validation: usize,
    /// Environments held out of both splits (near-duplicates of groups on both sides).
    pub held_out: usize,
    /// Shards whose `near_duplicates` or `splits` file changed.
    pub shards_written: usize,
}

/// The `rejects.stage` of what finalize holds out.
const STAGE: &str = "finalize";

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

/// Checks that no shard is leased or unfinished, then groups near-duplicates and places every
/// environment on the split, holding out newcomers that would make a group cross it.
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
    let links = near_duplicates::links(&candidates, settings.threshold);
    let assigned: HashMap<String, Split> =
        data.read_table::<SplitRow>(Table::Splits)?.into_iter().map(|row| (row.env_id, row.split)).collect();
    let placement = near_duplicates::place(&candidates, &links, &assigned, settings.validation_share)
        .map_err(|crossing| FinalizeError::SplitCrossed { pairs: describe(&candidates, &crossing.0) })?;
    // The invariant over the whole dataset, as it will be written.
    let crossing = near_duplicates::crossings(&links, &placement.sides);
    if !crossing.is_empty() {
        return Err(FinalizeError::SplitCrossed { pairs: describe(&candidates, &crossing) });
    }
    let groups = &placement.representatives;
    let mut in_group: HashMap<usize, usize> = HashMap::new();
    for &group in groups {
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
        splits.entry(shard).or_default().push(SplitRow { env_id: candidate.env_id.clone(), split: placement.sides[i] });
    }
    let count = |side: Split| placement.sides.iter().filter(|s| **s == side).count();
    let mut summary = FinalizeSummary {
        environments: candidates.len(),
        near_duplicates: near.values().map(Vec::len).sum(),
        groups: in_group.values().filter(|&&n| n > 1).count(),
        validation: count(Split::Validation),
        held_out: count(Split::HeldOut),
        shards_written: 0,
    };
    hold_out(data, &candidates, &shard_of, &placement.held_out)?;
    let shards: BTreeSet<u32> = shard_of.iter().copied().chain(data.shards_with(Table::NearDuplicates)?).collect();
    for shard in shards {
        let changed_near = write_if_changed(data, Table::NearDuplicates, shard, near.remove(&shard).unwrap_or_default())?;
        let changed_splits = write_if_changed(data, Table::Splits, shard, splits.remove(&shard).unwrap_or_default())?;
        summary.shards_written += usize::from(changed_near || changed_splits);
    }
    Ok(summary)
}

/// Records why each newly held-out environment is out of both splits, naming the two groups.
fn hold_out(
    data: &Dataset,
    candidates: &[Candidate],
    shard_of: &[u32],
    held: &[(usize, usize, usize)],
) -> Result<(), DatasetError> {
    let mut rejects: BTreeMap<u32, Vec<RejectRow>> = BTreeMap::new();
    for &(c, train, validation) in held {
        rejects.entry(shard_of[c]).or_default().push(RejectRow {
            stage: STAGE.into(),
            entity_id: candidates[c].env_id.clone(),
            source_id: Some(candidates[c].source_id.clone()),
            reason: Reason::NearDuplicateAcrossSplits.as_str().into(),
            detail: Some(format!(
                "a near-duplicate of the train group of {} and of the validation group of {}; held out of both splits and never exported",
                candidates[train].env_id, candidates[validation].env_id
            )),
        });
    }
    for (shard, rows) in rejects {
        data.upsert_shard(Table::Rejects, shard, &rows)?;
    }
    Ok(())
}

/// `a (train) ~ b (validation)` for each crossing pair, the first few.
fn describe(candidates: &[Candidate], pairs: &[(usize, usize)]) -> String {
    let mut text: Vec<String> = pairs
        .iter()
        .take(5)
        .map(|&(train, validation)| {
            format!("{} (train) ~ {} (validation)", candidates[train].env_id, candidates[validation].env_id)
        })
        .collect();
    if pairs.len() > 5 {
        text.push(format!("and {} more", pairs.len() - 5));
    }
    text.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::EnvironmentRow;

    /// Three task texts over nightlies: `b` and `c` are near-duplicates of `abc` (a newer
    /// environment that holds both), not of each other.
    fn text(parts: &[&str]) -> String {
        let core = (0..80).map(|i| format!("w{i}"));
        let own = parts.iter().flat_map(|p| (0..10).map(move |i| format!("{p}{i}")));
        core.chain(own).collect::<Vec<_>>().join(" ")
    }

    fn add(data: &Dataset, env_id: &str, task_text: String) {
        let mut row = EnvironmentRow::pending(env_id.into(), "test".into(), env_id.into(), "Env".into(), "pass".into());
        row.task_text = Some(task_text);
        row.status = Reason::Verified.as_str().into();
        data.upsert_shard(Table::Environments, data.shard_of(env_id), &[row]).unwrap();
    }

    fn sides(data: &Dataset) -> BTreeMap<String, Split> {
        data.read_table::<SplitRow>(Table::Splits).unwrap().into_iter().map(|r| (r.env_id, r.split)).collect()
    }

    #[test]
    fn a_newcomer_bridging_both_splits_is_held_out_with_a_reject_and_nothing_moves() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        let settings = |share| NearDuplicateSettings { validation_share: share, ..Default::default() };
        // Nightly 1: A goes to validation. Nightly 2: B, not a near-duplicate of A, to train.
        add(&data, "A", text(&["a", "x"]));
        finalize(&data, settings(1.0)).unwrap();
        add(&data, "B", text(&["b", "y"]));
        finalize(&data, settings(0.0)).unwrap();
        assert_eq!(sides(&data), BTreeMap::from([("A".into(), Split::Validation), ("B".into(), Split::Train)]));
        // Nightly 3: C is a near-duplicate of both.
        add(&data, "C", text(&["a", "b"]));
        let summary = finalize(&data, settings(0.1)).unwrap();
        assert_eq!(summary.held_out, 1);
        let expected =
            BTreeMap::from([("A".into(), Split::Validation), ("B".into(), Split::Train), ("C".into(), Split::HeldOut)]);
        assert_eq!(sides(&data), expected);
        let rejects = data.read_table::<RejectRow>(Table::Rejects).unwrap();
        assert_eq!(rejects.len(), 1);
        assert_eq!((rejects[0].entity_id.as_str(), rejects[0].reason.as_str()), ("C", "near_duplicate_across_splits"));
        let detail = rejects[0].detail.as_deref().unwrap();
        assert!(detail.contains("train group of B") && detail.contains("validation group of A"), "{detail}");
        assert!(data.read_table::<NearDuplicateRow>(Table::NearDuplicates).unwrap().is_empty(), "C joins no group");
        // Later nightlies change nothing.
        finalize(&data, settings(0.1)).unwrap();
        assert_eq!(sides(&data), expected);
        assert_eq!(data.read_table::<RejectRow>(Table::Rejects).unwrap().len(), 1);
    }

    #[test]
    fn a_split_broken_before_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        add(&data, "A", text(&["a"]));
        add(&data, "B", text(&["a"]));
        for (env, split) in [("A", Split::Validation), ("B", Split::Train)] {
            let row = SplitRow { env_id: env.into(), split };
            data.upsert_shard(Table::Splits, data.shard_of(env), &[row]).unwrap();
        }
        let err = finalize(&data, NearDuplicateSettings::default()).unwrap_err().to_string();
        assert!(err.contains("B (train) ~ A (validation)"), "{err}");
    }
}
