//! Curation (stage 8): which configurations are kept, from what the tables hold, and the
//! near-duplicate groups and train/validation split of the environments. A pure function of
//! stored columns, recomputed for every configuration on every run.

use super::VerifySettings;
use crate::tables::{EnvironmentRow, TaskConfigRow};
use std::collections::BTreeMap;

/// Configurations that passed the reference-answer check (it ran, the answer is short enough and
/// JSON): the ones an oracle must pass.
pub(super) fn checked<'a>(configs: &[&'a TaskConfigRow]) -> Vec<&'a TaskConfigRow> {
    let ref_failed = |c: &TaskConfigRow| c.filter_reason.as_deref().is_some_and(|r| r.starts_with("ref_answer"));
    configs.iter().copied().filter(|c| c.ref_answer.is_some() && !ref_failed(c)).collect()
}

pub(super) fn curate_all(envs: &mut [EnvironmentRow], configs: &mut [TaskConfigRow], settings: &VerifySettings) {
    crate::near_duplicates::assign(envs, settings.near_duplicates);
    let by_id: BTreeMap<&str, &EnvironmentRow> = envs.iter().map(|e| (e.env_id.as_str(), e)).collect();
    for config in configs.iter_mut() {
        if let Some(env) = by_id.get(config.env_id.as_str()) {
            curate(config, env, settings);
        }
    }
}

/// Reasons `record_config` derives from a configuration's own cells; curation keeps them.
fn is_cell_reason(reason: &str) -> bool {
    reason.starts_with("ref_answer")
        || reason.starts_with("answer_in_")
        || (reason.starts_with("oracle_") && !reason.starts_with("oracle_calls"))
}

/// The curation filters (stage 8), from what the tables hold: the cells' own findings, then the
/// oracle call range, the environment's status and tool count, the reference model's pass rate.
/// A pure function of stored columns, so changing a threshold (`--hard`) re-curates every
/// configuration without running anything.
pub(crate) fn curate(config: &mut TaskConfigRow, env: &EnvironmentRow, settings: &VerifySettings) {
    let cell_reason = config.filter_reason.take().filter(|r| is_cell_reason(r));
    config.filter_reason = cell_reason.or_else(|| {
        let calls = config.oracle_calls.unwrap_or(0);
        let reason = if config.oracle_passed != Some(true) {
            "oracle_not_run"
        } else if calls < settings.min_calls {
            "oracle_calls_below_min"
        } else if calls > settings.max_calls {
            "oracle_calls_above_max"
        } else if env.status != "verified" {
            "environment_not_verified"
        } else if env.tool_count < settings.min_tools {
            "too_few_tools"
        } else if config.reference_pass_rate.is_some_and(|rate| rate > settings.max_reference_pass_rate) {
            "reference_model_solves"
        } else {
            return None;
        };
        Some(reason.to_string())
    });
    config.kept = config.filter_reason.is_none();
}
