//! The words verification writes into the tables, one enum per column and one spelling per value:
//! the verdict of an oracle cell (`oracle_runs.verdict`), the reason a configuration is not kept
//! (`task_configs.filter_reason`), and the class and verdict of an exploit-battery run
//! (`battery_runs.class`, `battery_runs.verdict`). Curation reads stored reasons back through
//! [`Filter`]'s parser, never by string prefix.

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

/// What kind of attack an exploit-battery run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AttackClass {
    /// A special value or another type or shape submitted as the answer.
    SpecialAnswer,
    /// A value the oracle's observations showed, submitted as the answer.
    ObservedValue,
    /// An optional parameter of the answer action set against the reference.
    OptionalParameter,
    /// A wrong answer, further actions, then the right one.
    Retry,
    /// Valid calls up to the step cap, then a wrong answer.
    Padding,
    /// Names that are not tools.
    NotATool,
    /// Every documented tool with arguments out of range, of the wrong type, missing or extra.
    FuzzedArguments,
    /// Observe after every prefix of the oracle's calls.
    ObservePrefixes,
    /// The oracle's calls replayed through a pickle round trip before each, as `serve` holds a
    /// session.
    ServeReplay,
    /// An episode played after another in one loaded module.
    TwoEpisodes,
    /// One documented tool called alone, timed.
    TimedCall,
}

impl AttackClass {
    pub(crate) const ALL: [AttackClass; 11] = [
        AttackClass::SpecialAnswer,
        AttackClass::ObservedValue,
        AttackClass::OptionalParameter,
        AttackClass::Retry,
        AttackClass::Padding,
        AttackClass::NotATool,
        AttackClass::FuzzedArguments,
        AttackClass::ObservePrefixes,
        AttackClass::ServeReplay,
        AttackClass::TwoEpisodes,
        AttackClass::TimedCall,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttackClass::SpecialAnswer => "special_answer",
            AttackClass::ObservedValue => "observed_value",
            AttackClass::OptionalParameter => "optional_parameter",
            AttackClass::Retry => "retry",
            AttackClass::Padding => "padding",
            AttackClass::NotATool => "not_a_tool",
            AttackClass::FuzzedArguments => "fuzzed_arguments",
            AttackClass::ObservePrefixes => "observe_prefixes",
            AttackClass::ServeReplay => "serve_replay",
            AttackClass::TwoEpisodes => "two_episodes",
            AttackClass::TimedCall => "timed_call",
        }
    }
}

/// What one exploit-battery run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunVerdict {
    /// Nothing found.
    Held,
    /// A documented equivalence of the right answer was accepted (never a rejection).
    Lenient,
    /// The run failed before it gave evidence to judge.
    NoEvidence,
    /// What it caught.
    Found(ProbeReason),
}

impl RunVerdict {
    const HELD: &'static str = "held";
    const LENIENT: &'static str = "lenient_matching";
    const NO_EVIDENCE: &'static str = "no_evidence";

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunVerdict::Held => Self::HELD,
            RunVerdict::Lenient => Self::LENIENT,
            RunVerdict::NoEvidence => Self::NO_EVIDENCE,
            RunVerdict::Found(reason) => reason.as_str(),
        }
    }

    /// Whether a stored verdict is a catch (a finding), not one of the three that are not.
    pub(crate) fn is_catch(stored: &str) -> bool {
        ![Self::HELD, Self::LENIENT, Self::NO_EVIDENCE].contains(&stored)
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
    /// `--require-independent`: no candidate written from the task text alone passes it.
    NotIndependent,
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
            Filter::NotIndependent => "not_independent",
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
            ProbeReason::NotAttacked,
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
            Filter::NotIndependent,
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
