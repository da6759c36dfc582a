//! The hackability audit: what the exploit battery tried on a dataset's environments and what it
//! caught, by attack class, summed from the `battery_runs` table. `bench stages` prints it and the
//! hf card publishes it, so every build says how it was attacked.

use super::reasons::{AttackClass, RunVerdict};
use crate::dataset::{Dataset, DatasetError, Table};
use arrow::array::AsArray;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// One attack class's runs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClassTally {
    pub runs: u64,
    /// Environments it was tried on.
    pub environments: BTreeSet<String>,
    /// Runs that caught a defect, and the environments they caught.
    pub caught_runs: u64,
    pub caught: BTreeSet<String>,
    /// Runs that accepted a documented equivalence of the answer.
    pub lenient_runs: u64,
    /// Runs that gave no evidence (they failed before they could be judged).
    pub no_evidence: u64,
    /// What it caught: runs per reason.
    pub reasons: BTreeMap<String, u64>,
}

/// The audit of a dataset, per attack class.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Audit {
    pub classes: BTreeMap<String, ClassTally>,
}

/// Sums `battery_runs`, reading only the columns it counts.
pub fn audit(data: &Dataset) -> Result<Audit, DatasetError> {
    let mut audit = Audit::default();
    for batch in data.scan(Table::BatteryRuns, &["env_id", "class", "verdict"], 8192)? {
        let batch = batch?;
        let (envs, classes, verdicts) =
            (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>(), batch.column(2).as_string::<i32>());
        for i in 0..batch.num_rows() {
            let tally = audit.classes.entry(classes.value(i).to_string()).or_default();
            let (env, verdict) = (envs.value(i), verdicts.value(i));
            tally.runs += 1;
            tally.environments.insert(env.to_string());
            if RunVerdict::is_catch(verdict) {
                tally.caught_runs += 1;
                tally.caught.insert(env.to_string());
                *tally.reasons.entry(verdict.to_string()).or_default() += 1;
            } else if verdict == RunVerdict::Lenient.as_str() {
                tally.lenient_runs += 1;
            } else if verdict == RunVerdict::NoEvidence.as_str() {
                tally.no_evidence += 1;
            }
        }
    }
    Ok(audit)
}

impl Audit {
    /// The classes in the battery's order (then any the table holds that this build does not know).
    fn ordered(&self) -> Vec<(&str, &ClassTally)> {
        let known = AttackClass::ALL.iter().filter_map(|c| self.classes.get_key_value(c.as_str()));
        let unknown = self.classes.iter().filter(|(name, _)| !AttackClass::ALL.iter().any(|c| c.as_str() == name.as_str()));
        known.chain(unknown).map(|(name, tally)| (name.as_str(), tally)).collect()
    }

    /// Environments the battery played, and those it caught, over all classes.
    pub fn environments(&self) -> (usize, usize) {
        let played: BTreeSet<&String> = self.classes.values().flat_map(|t| &t.environments).collect();
        let caught: BTreeSet<&String> = self.classes.values().flat_map(|t| &t.caught).collect();
        (played.len(), caught.len())
    }

    /// A Markdown table, one row per class.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| attack | runs | environments | runs that caught a defect | environments caught | what it caught | \
             lenient matches | no evidence |\n|---|---:|---:|---:|---:|---|---:|---:|\n",
        );
        for (class, tally) in self.ordered() {
            let _ = writeln!(
                out,
                "| `{class}` | {} | {} | {} | {} | {} | {} | {} |",
                tally.runs,
                tally.environments.len(),
                tally.caught_runs,
                tally.caught.len(),
                reasons(tally, "`", "none"),
                tally.lenient_runs,
                tally.no_evidence
            );
        }
        out
    }

    /// Plain lines, one per class, for a terminal.
    pub fn lines(&self) -> Vec<String> {
        self.ordered()
            .into_iter()
            .map(|(class, tally)| {
                format!(
                    "{class:<20} {:>6} runs on {:>4} environments; caught {} runs on {} environments ({})",
                    tally.runs,
                    tally.environments.len(),
                    tally.caught_runs,
                    tally.caught.len(),
                    reasons(tally, "", "nothing")
                )
            })
            .collect()
    }
}

/// "reason x runs, ..." of a class, each reason between `quote`s; `none` when it caught nothing.
fn reasons(tally: &ClassTally, quote: &str, none: &str) -> String {
    if tally.reasons.is_empty() {
        return none.to_string();
    }
    let parts: Vec<String> = tally.reasons.iter().map(|(reason, runs)| format!("{quote}{reason}{quote} x{runs}")).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::BatteryRunRow;

    fn run(env: &str, run: i32, class: AttackClass, verdict: &str) -> BatteryRunRow {
        BatteryRunRow {
            env_id: env.into(),
            run,
            config_id: format!("{env}-c"),
            class: class.as_str().into(),
            policy: "p".into(),
            actions: "[]".into(),
            from_reset: true,
            final_reward: Some(0.0),
            verdict: verdict.into(),
            detail: None,
        }
    }

    #[test]
    fn the_audit_counts_runs_and_environments_caught_per_class() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), None).unwrap();
        let rows = vec![
            run("a", 0, AttackClass::SpecialAnswer, "reward_hackable"),
            run("a", 1, AttackClass::SpecialAnswer, "reward_hackable"),
            run("a", 2, AttackClass::SpecialAnswer, "lenient_matching"),
            run("b", 0, AttackClass::SpecialAnswer, "held"),
            run("b", 1, AttackClass::ServeReplay, "no_evidence"),
        ];
        data.upsert(Table::BatteryRuns, rows, |r| data.shard_of(&r.env_id)).unwrap();
        let audit = audit(&data).unwrap();
        let special = &audit.classes["special_answer"];
        assert_eq!((special.runs, special.environments.len(), special.caught_runs, special.caught.len()), (4, 2, 2, 1));
        assert_eq!((special.lenient_runs, special.reasons["reward_hackable"]), (1, 2));
        assert_eq!(audit.classes["serve_replay"].no_evidence, 1);
        assert_eq!(audit.environments(), (2, 1));
        let table = audit.markdown();
        assert!(table.contains("| `special_answer` | 4 | 2 | 2 | 1 | `reward_hackable` x2 | 1 | 0 |"), "{table}");
        assert!(audit.lines()[1].starts_with("serve_replay"), "{:?}", audit.lines());
    }
}
