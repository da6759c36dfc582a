//! Preflight: runs each problem's reference solution against its own tests in the sandbox
//! (pytest-style test functions importing from `solution`; assert scripts in the solution's
//! namespace, HumanEval's `check(candidate)` called on the entry point; stdin/stdout pairs) and
//! records `problems.preflight` as `pass`, `fail`, `error`, `timeout` or `no_tests`.
//! Only problems still `pending` run, so a nightly build re-checks only what changed. Runs in
//! parallel in job-loop workers; the problem's modules never enter the interpreter's module table.

use crate::dataset::{Dataset, DatasetError, ShardSelection, Table};
use crate::sandbox::{ExecMode, Job, JobReporter, Limits, Sandbox, SandboxError, Verdict};
use crate::tables::ProblemRow;
use serde_json::json;
use std::collections::BTreeMap;

use super::ingest::PREFLIGHT_PENDING;

const PYTEST_STAND_IN: &str = include_str!("../harness/pytest.py");

/// Counts per preflight verdict.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PreflightSummary {
    pub verdicts: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn job(problem: &ProblemRow, limits: Limits) -> Job {
    let args = json!({
        "solution": problem.solution,
        "tests": problem.tests.clone().unwrap_or_default(),
        "test_kind": problem.test_kind.clone().unwrap_or_else(|| "none".into()),
        "entry_point": problem.entry_point,
        "pytest_source": PYTEST_STAND_IN,
    });
    Job { seed: crate::harness::seed_for(&problem.problem_id), ..Job::call("preflight", args, limits) }
}

/// The (verdict, detail) of one preflight job.
fn verdict(outcome: &crate::sandbox::JobOutcome) -> (String, Option<String>) {
    match (outcome.verdict, &outcome.result) {
        (Verdict::Ok, Some(result)) => {
            (result["verdict"].as_str().unwrap_or("error").to_string(), result["detail"].as_str().map(String::from))
        }
        (Verdict::Timeout, _) => ("timeout".into(), outcome.detail.clone()),
        _ => ("error".into(), outcome.detail.clone()),
    }
}

/// Preflights every `pending` problem of the shards `selection` names, shard by shard, and
/// rewrites the shards that had any.
pub fn preflight(
    sandbox: &Sandbox,
    data: &Dataset,
    selection: ShardSelection,
    limits: Limits,
    threads: usize,
    reporter: Option<&dyn JobReporter>,
) -> Result<PreflightSummary, PreflightError> {
    let mut summary = PreflightSummary::default();
    let shards: Vec<u32> = data.shards_with(Table::Problems)?.into_iter().filter(|&s| selection.includes(s)).collect();
    data.each_leased(&shards, "preflight", |shard| -> Result<(), PreflightError> {
        let mut problems: Vec<ProblemRow> = data.read_shard(Table::Problems, shard)?;
        let pending: Vec<usize> = (0..problems.len()).filter(|&i| problems[i].preflight == PREFLIGHT_PENDING).collect();
        if let Some(reporter) = reporter {
            reporter.on_skipped(problems.len() - pending.len());
        }
        if pending.is_empty() {
            return Ok(());
        }
        let jobs = pending.iter().map(|&i| job(&problems[i], limits)).collect();
        let outcomes = sandbox.run_jobs(jobs, ExecMode::default(), threads, reporter)?;
        for (&i, outcome) in pending.iter().zip(&outcomes) {
            let (verdict, detail) = verdict(outcome);
            *summary.verdicts.entry(verdict.clone()).or_default() += 1;
            problems[i].preflight = verdict;
            problems[i].preflight_detail = detail;
        }
        data.write_shard_in_order(Table::Problems, shard, &problems)?;
        Ok(())
    })?;
    Ok(summary)
}
