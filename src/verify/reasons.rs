//! The words verification writes into the tables, one enum per column and one spelling per value:
//! the verdict of an oracle cell (`oracle_runs.verdict`) and the reason a configuration is not
//! kept (`task_configs.filter_reason`). Curation reads stored reasons back through [`Filter`]'s
//! parser, never by string prefix.

use super::probes::ProbeReason;
use crate::sandbox::Verdict;
use std::str::FromStr;

/// How one oracle cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CellVerdict {
    Pass,
    Wrong,
    Error,
    Timeout,
    Memory,
    OutputLimit,
    /// The harness reported a pass its own trajectory contradicts.
    Contradiction,
}

impl CellVerdict {
    pub(crate) const ALL: [CellVerdict; 7] = [
        CellVerdict::Pass,
        CellVerdict::Wrong,
        CellVerdict::Error,
        CellVerdict::Timeout,
        CellVerdict::Memory,
        CellVerdict::OutputLimit,
        CellVerdict::Contradiction,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CellVerdict::Pass => "pass",
            CellVerdict::Wrong => "wrong",
            CellVerdict::Error => "error",
            CellVerdict::Timeout => "timeout",
            CellVerdict::Memory => "memory",
            CellVerdict::OutputLimit => "output_limit",
            CellVerdict::Contradiction => "contradiction",
        }
    }

    /// The verdict of a cell from how its step ended and what it returned.
    pub(crate) fn of(result: &Result<crate::harness::OracleRun, String>, verdict: Verdict) -> CellVerdict {
        match (verdict, result) {
            (Verdict::Ok, Ok(run)) if run.error.is_some() => CellVerdict::Error,
            (Verdict::Ok, Ok(run)) if run.contradiction().is_some() => CellVerdict::Contradiction,
            (Verdict::Ok, Ok(run)) if run.passed => CellVerdict::Pass,
            (Verdict::Ok, Ok(_)) => CellVerdict::Wrong,
            (Verdict::Timeout, _) => CellVerdict::Timeout,
            (Verdict::Memory, _) => CellVerdict::Memory,
            (Verdict::OutputLimit, _) => CellVerdict::OutputLimit,
            _ => CellVerdict::Error,
        }
    }
}

/// Why a configuration is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// The configuration string is over the size cap: it never ran.
    ConfigTooLarge,
    RefAnswerFailed,
    RefAnswerTooLong,
    RefAnswerNotJson,
    /// A probe finding about this configuration (its answer shows, or its probe could not run).
    Probe(ProbeReason),
    /// The chosen oracle's cell on it did not pass.
    Oracle(CellVerdict),
    /// Curation: no oracle result.
    OracleNotRun,
    OracleCallsBelowMin,
    OracleCallsAboveMax,
    EnvironmentNotVerified,
    TooFewTools,
    ReferenceModelSolves,
}

impl Filter {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Filter::ConfigTooLarge => "config_too_large",
            Filter::RefAnswerFailed => "ref_answer_failed",
            Filter::RefAnswerTooLong => "ref_answer_too_long",
            Filter::RefAnswerNotJson => "ref_answer_not_json",
            Filter::Probe(reason) => reason.as_str(),
            Filter::Oracle(CellVerdict::Pass) => "oracle_pass",
            Filter::Oracle(CellVerdict::Wrong) => "oracle_wrong",
            Filter::Oracle(CellVerdict::Error) => "oracle_error",
            Filter::Oracle(CellVerdict::Timeout) => "oracle_timeout",
            Filter::Oracle(CellVerdict::Memory) => "oracle_memory",
            Filter::Oracle(CellVerdict::OutputLimit) => "oracle_output_limit",
            Filter::Oracle(CellVerdict::Contradiction) => "oracle_contradiction",
            Filter::OracleNotRun => "oracle_not_run",
            Filter::OracleCallsBelowMin => "oracle_calls_below_min",
            Filter::OracleCallsAboveMax => "oracle_calls_above_max",
            Filter::EnvironmentNotVerified => "environment_not_verified",
            Filter::TooFewTools => "too_few_tools",
            Filter::ReferenceModelSolves => "reference_model_solves",
        }
    }

    /// Whether verification found it in the configuration's own cells (curation keeps these and
    /// recomputes the others).
    pub(crate) fn found_in_cells(self) -> bool {
        matches!(
            self,
            Filter::ConfigTooLarge
                | Filter::RefAnswerFailed
                | Filter::RefAnswerTooLong
                | Filter::RefAnswerNotJson
                | Filter::Probe(_)
                | Filter::Oracle(_)
        )
    }

    /// Whether the configuration has no usable reference answer (an oracle need not pass it).
    pub(crate) fn unchecked(self) -> bool {
        matches!(self, Filter::ConfigTooLarge | Filter::RefAnswerFailed | Filter::RefAnswerTooLong | Filter::RefAnswerNotJson)
    }

    fn all() -> impl Iterator<Item = Filter> {
        let probes = [
            ProbeReason::WrongAnswerRewarded,
            ProbeReason::EmptyAnswerRewarded,
            ProbeReason::AnswerInTaskText,
            ProbeReason::AnswerInToolDocs,
            ProbeReason::AnswerInObserve,
            ProbeReason::OracleReadsState,
            ProbeReason::NondeterministicTrajectory,
            ProbeReason::ProbeFailed,
            ProbeReason::RewardHackable,
            ProbeReason::RewardInconsistent,
            ProbeReason::AnswerLeaked,
            ProbeReason::NotServable,
            ProbeReason::StateTooLarge,
            ProbeReason::SlowTool,
            ProbeReason::StateAcrossEpisodes,
            ProbeReason::Tampered,
        ];
        [
            Filter::ConfigTooLarge,
            Filter::RefAnswerFailed,
            Filter::RefAnswerTooLong,
            Filter::RefAnswerNotJson,
            Filter::OracleNotRun,
            Filter::OracleCallsBelowMin,
            Filter::OracleCallsAboveMax,
            Filter::EnvironmentNotVerified,
            Filter::TooFewTools,
            Filter::ReferenceModelSolves,
        ]
        .into_iter()
        .chain(probes.map(Filter::Probe))
        .chain(CellVerdict::ALL.map(Filter::Oracle))
    }
}

impl FromStr for Filter {
    type Err = String;
    fn from_str(s: &str) -> Result<Filter, String> {
        Filter::all().find(|f| f.as_str() == s).ok_or_else(|| format!("unknown filter reason `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_reason_round_trips_through_its_spelling() {
        let spellings: Vec<&str> = Filter::all().map(Filter::as_str).collect();
        let mut unique = spellings.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), spellings.len(), "one spelling per reason");
        for filter in Filter::all() {
            assert_eq!(filter.as_str().parse::<Filter>(), Ok(filter));
        }
        assert!("oracle_calls".parse::<Filter>().is_err());
    }
}
