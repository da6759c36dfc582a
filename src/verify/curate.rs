//! Curation (stage 8): which configurations are kept, from what the tables hold. A pure function
//! of a configuration's stored columns and its environment's, recomputed for every configuration
//! of a shard on every run (the near-duplicate groups and the split need every shard: they are
//! `finalize`'s).

use super::reasons::Filter;
use super::{VERIFIED, VerifySettings};
use crate::tables::{EnvironmentRow, TaskConfigRow};
use std::collections::BTreeMap;

/// Configurations that passed the reference-answer check (it ran, the answer is short enough and
/// JSON): the ones an oracle must pass.
pub(super) fn checked<'a>(configs: &[&'a TaskConfigRow]) -> Vec<&'a TaskConfigRow> {
    let unchecked = |c: &TaskConfigRow| stored_filter(c).is_some_and(Filter::unchecked);
    configs.iter().copied().filter(|c| c.ref_answer.is_some() && !unchecked(c)).collect()
}

/// The configuration's stored filter reason, when it is one of ours.
fn stored_filter(config: &TaskConfigRow) -> Option<Filter> {
    config.filter_reason.as_deref().and_then(|r| r.parse().ok())
}

pub(super) fn curate_all(envs: &[EnvironmentRow], configs: &mut [TaskConfigRow], settings: &VerifySettings) {
    let by_id: BTreeMap<&str, &EnvironmentRow> = envs.iter().map(|e| (e.env_id.as_str(), e)).collect();
    for config in configs.iter_mut() {
        if let Some(env) = by_id.get(config.env_id.as_str()) {
            curate(config, env, settings);
        }
    }
}

/// The curation filters (stage 8), from what the tables hold: the cells' own findings, then the
/// oracle call range, the environment's status and tool count, independent agreement (when
/// required), the reference model's pass rate.
/// A pure function of stored columns, so changing a threshold (`--hard`) re-curates every
/// configuration without running anything.
pub(crate) fn curate(config: &mut TaskConfigRow, env: &EnvironmentRow, settings: &VerifySettings) {
    let from_cells = stored_filter(config).filter(|f| f.found_in_cells());
    let filter = from_cells.or_else(|| {
        let calls = config.oracle_calls.unwrap_or(0);
        if config.oracle_passed != Some(true) {
            Some(Filter::OracleNotRun)
        } else if calls < settings.min_calls {
            Some(Filter::OracleCallsBelowMin)
        } else if calls > settings.max_calls {
            Some(Filter::OracleCallsAboveMax)
        } else if env.status != VERIFIED {
            Some(Filter::EnvironmentNotVerified)
        } else if env.tool_count < settings.min_tools {
            Some(Filter::TooFewTools)
        } else if settings.require_independent && config.independent_pass != Some(true) {
            Some(Filter::NotIndependent)
        } else if config.reference_pass_rate.is_some_and(|rate| rate > settings.max_reference_pass_rate) {
            Some(Filter::ReferenceModelSolves)
        } else {
            None
        }
    });
    config.filter_reason = filter.map(|f| f.as_str().to_string());
    config.kept = filter.is_none();
}
