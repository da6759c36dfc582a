//! Why something did not make it, and what an environment's status is: one enum, one spelling per
//! value, for every `rejects.reason` and `environments.status` the stages write (ingest's row
//! reasons and verification's per-configuration filters and probe findings have enums of their
//! own in their modules). The spelling is what the tables hold; [`Reason::from_str`] reads it back.

use std::str::FromStr;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $spelling:literal,)*) => {
        /// A reject reason or an environment status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The spelling the tables hold.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $spelling,)*
                }
            }
        }
    };
}

reasons! {
    /// An environment not verified yet.
    Pending => "pending",
    /// An environment that passed every check.
    Verified => "verified",
    // Synthesis (stage 1): the environment answer.
    /// No complete `<task>` and `<env>` blocks.
    EnvUnparseable => "env_unparseable",
    /// The module does not parse.
    EnvSyntaxError => "env_syntax_error",
    /// No class defines `from_env_str`.
    EnvNoClass => "env_no_class",
    /// Several classes do.
    EnvAmbiguousClass => "env_ambiguous_class",
    // Stage 2 and verification: the module.
    /// The environment contract does not hold.
    ContractFailed => "contract_failed",
    /// The module's own self-tests fail.
    SelfTestFailed => "self_test_failed",
    /// The module needs what the sandbox's WASI build lacks (asyncio, threads, processes, sockets).
    UnsupportedInSandbox => "unsupported_in_sandbox",
    // Stage 3: configuration lines.
    /// A line whose options are not strict JSON.
    ConfigNotJson => "config_not_json",
    /// A line for another class.
    ConfigWrongEnv => "config_wrong_env",
    /// A configuration seen before (in another answer, or another row of a release).
    ConfigDuplicate => "config_duplicate",
    /// No usable configuration line at all.
    NoConfigs => "no_configs",
    // Stage 5: solver answers.
    /// No `def solve(self)` with a body.
    SolverUnparseable => "solver_unparseable",
    /// A solver seen before.
    SolverDuplicate => "solver_duplicate",
    // Any LLM stage.
    /// The endpoint kept failing (asked again on the next run).
    LlmFailed => "llm_failed",
    /// The endpoint refused the request (a 4xx).
    LlmRefused => "llm_refused",
    /// A replayed request that is not in the recording.
    LlmNotRecorded => "llm_not_recorded",
    /// Any other failure to get an answer.
    LlmFatal => "llm_fatal",
    // Import of a release.
    /// A row with an empty name or code.
    EmptyField => "empty_field",
    /// The same environment twice.
    DuplicateEnvironment => "duplicate_environment",
    /// Two different environments under one (source, name).
    ConflictingEnvironment => "conflicting_environment",
    /// A task whose `ability` is not `codegym_v1@SOURCE__ENV@JSON`.
    MalformedAbility => "malformed_ability",
    /// A task for an environment the release does not have.
    UnknownEnvironment => "unknown_environment",
    // Verification of an environment (stages 4 to 7).
    /// No configuration has a reference answer.
    RefAnswerFailed => "ref_answer_failed",
    /// Too few configurations have one (the survival rule).
    RefAnswerSurvival => "ref_answer_survival",
    /// No candidate passes every configuration.
    OracleFailed => "oracle_failed",
    /// The only candidates that pass do so over the environment's time budget.
    OracleBudgetExceeded => "oracle_budget_exceeded",
    /// A cell's verdict that its own trajectory contradicts.
    VerdictContradiction => "verdict_contradiction",
    /// The environment's own oracle needs a name that is not one of its documented tools.
    UndocumentedTool => "undocumented_tool",
    // Finalize.
    /// A new environment that is a near-duplicate of groups already on both sides of the split:
    /// held out of both, never exported.
    NearDuplicateAcrossSplits => "near_duplicate_across_splits",
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Reason, String> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown reason `{s}`"))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_reason_and_back() {
        let mut spellings: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(*reason));
        }
        spellings.sort();
        spellings.dedup();
        assert_eq!(spellings.len(), Reason::ALL.len());
        assert!("duplicate_config".parse::<Reason>().is_err(), "the old spelling is gone");
    }
}
