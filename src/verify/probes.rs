//! The anti-gaming probes' verdicts, drawn on the host from the evidence the harness gathered in
//! the sandbox (never from a verdict the guest reports): wrong or empty answers rewarded (right
//! after reset, and in the state where the oracle answered), the answer shown in what the agent
//! reads (per configuration, and across an environment's configurations), an oracle that reads
//! hidden state, behaviour that changes with the interpreter's hash secret or date, and probes
//! that could not run (which fail closed). Pure functions; knows nothing of tables.

use crate::harness::{OBSERVATION_LIMIT, OracleRun, Played, ProbeEvidence, Submission, TRAJECTORY_LIMIT};

/// Why a probe flagged a configuration or an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ProbeReason {
    WrongAnswerRewarded,
    EmptyAnswerRewarded,
    AnswerInTaskText,
    AnswerInToolDocs,
    AnswerInObserve,
    OracleReadsState,
    NondeterministicTrajectory,
    ProbeFailed,
    /// The battery: a policy without the right answer earned reward 1.
    RewardHackable,
    /// After `Done`, the message and the reward a trainer reads disagree.
    RewardInconsistent,
    /// The answer shows somewhere the agent can see before its own calls showed it.
    AnswerLeaked,
    /// A session held as pickled state (as `codegym serve` holds one) is not the live one.
    NotServable,
    /// The state pickles to more than the cap.
    StateTooLarge,
    /// A documented tool is slower than the per-call budget.
    SlowTool,
    /// An episode after another in the same loaded module differs from a fresh one.
    StateAcrossEpisodes,
    /// Evidence that does not answer what the host sent.
    Tampered,
    /// The exploit battery could not play a single configuration: nothing vouches for it.
    NotAttacked,
}

impl ProbeReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProbeReason::WrongAnswerRewarded => "wrong_answer_rewarded",
            ProbeReason::EmptyAnswerRewarded => "empty_answer_rewarded",
            ProbeReason::AnswerInTaskText => "answer_in_task_text",
            ProbeReason::AnswerInToolDocs => "answer_in_tool_docs",
            ProbeReason::AnswerInObserve => "answer_in_observe",
            ProbeReason::OracleReadsState => "oracle_reads_state",
            ProbeReason::NondeterministicTrajectory => "nondeterministic_trajectory",
            ProbeReason::ProbeFailed => "probe_failed",
            ProbeReason::RewardHackable => "reward_hackable",
            ProbeReason::RewardInconsistent => "reward_inconsistent",
            ProbeReason::AnswerLeaked => "answer_leaked",
            ProbeReason::NotServable => "not_servable",
            ProbeReason::StateTooLarge => "state_too_large",
            ProbeReason::SlowTool => "slow_tool",
            ProbeReason::StateAcrossEpisodes => "state_across_episodes",
            ProbeReason::Tampered => "tampered",
            ProbeReason::NotAttacked => "not_attacked",
        }
    }

    /// Whether the finding means `codegym serve` cannot hold the environment's sessions as they
    /// are played live.
    pub(crate) fn decides_servability(self) -> bool {
        matches!(self, ProbeReason::NotServable | ProbeReason::StateTooLarge)
    }

    /// Whether the finding disqualifies the whole environment (it can be gamed, or it is not what
    /// it seems) rather than one configuration (this configuration's answer shows, or could not be
    /// checked).
    pub(crate) fn disqualifies_environment(self) -> bool {
        !matches!(
            self,
            ProbeReason::AnswerInTaskText
                | ProbeReason::AnswerInToolDocs
                | ProbeReason::AnswerInObserve
                | ProbeReason::ProbeFailed
        )
    }
}

/// One problem a probe found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) reason: ProbeReason,
    pub(crate) detail: String,
}

fn finding(reason: ProbeReason, detail: String) -> Finding {
    Finding { reason, detail }
}

/// Answers too common to mean anything when they show up in a text.
const COMMON_ANSWERS: [&str; 7] = ["true", "false", "yes", "no", "none", "null", "-1"];

/// The findings of a probe's evidence: submissions that were rewarded though wrong, and an oracle
/// that read hidden state. A probe that did not finish (`Err`, with its verdict) fails closed.
pub(crate) fn judge(evidence: &Result<ProbeEvidence, String>, task_text: &str) -> Vec<Finding> {
    let evidence = match evidence {
        Ok(evidence) => evidence,
        Err(failure) => return vec![finding(ProbeReason::ProbeFailed, format!("the probe could not run: {failure}"))],
    };
    let right: Option<serde_json::Value> = evidence.right.as_deref().and_then(|r| serde_json::from_str(r).ok());
    // An answer the task text says is the same (another letter case, surrounding spaces) is not wrong.
    let documented = |submission: &Submission| {
        let given = submission.answer.as_deref().and_then(|a| serde_json::from_str(a).ok());
        matches!((given, &right), (Some(given), Some(right)) if matches!(super::values::compare(&given, right, task_text), super::values::Match::Equivalent(_)))
    };
    let mut findings = Vec::new();
    let places = [("right after reset", &evidence.reset), ("where the oracle answered", &evidence.final_)];
    for (place, submissions) in places {
        for submission in submissions.iter().filter(|s| s.rewarded() && !documented(s)) {
            findings.push(rewarded(submission, place));
        }
    }
    findings.sort_by_key(|f| f.reason);
    findings.dedup_by_key(|f| f.reason);
    if !evidence.reads.is_empty() {
        let detail = format!("solve() read self.{}", evidence.reads.join(", self."));
        findings.push(finding(ProbeReason::OracleReadsState, detail));
    }
    findings
}

fn rewarded(submission: &Submission, place: &str) -> Finding {
    let answer = submission.answer.as_deref().unwrap_or("?");
    let reason = if answer == "\"\"" { ProbeReason::EmptyAnswerRewarded } else { ProbeReason::WrongAnswerRewarded };
    let message: String = submission.message.chars().take(200).collect();
    finding(reason, format!("Done({answer}) {place} returned {message:?}"))
}

/// Tokens of a text: runs of letters, digits and `_`, with a `.` between digits and a `-` before a
/// digit kept (`3.5`, `-2`); everything else separates. "...is 2758." has the token `2758`.
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let word = |i: usize| text[i..].chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_');
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let joins = match c {
            _ if c.is_alphanumeric() || c == '_' => true,
            '.' => start.is_some() && i > 0 && digit(i - 1) && digit(i + 1),
            '-' => start.is_none() && digit(i + 1) && (i == 0 || !word(i - 1)),
            _ => false,
        };
        match (joins, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&text[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Whether the tokens of `needle` appear, in order and contiguous, among those of `haystack`.
pub(crate) fn shows(needle: &str, haystack: &str) -> bool {
    let needle = tokens(needle);
    if needle.is_empty() {
        return false;
    }
    let haystack = tokens(haystack);
    haystack.windows(needle.len()).any(|window| window.iter().zip(&needle).all(|(a, b)| a.eq_ignore_ascii_case(b)))
}

/// Whether `text` shows the answer whose `str()` is `answer`: a number by value, however it is
/// written (`3:05` for 185, `36,837`), anything else by its words.
fn reads_answer(answer: &str, text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(answer) {
        Ok(number @ serde_json::Value::Number(_)) => super::values::shows(&number, answer, text),
        _ => shows(answer, text),
    }
}

/// One configuration's view of what the agent reads.
pub(crate) struct Seen<'a> {
    /// `str(answer)` of the reference answer.
    pub(crate) answer: &'a str,
    /// The configuration string, `EnvName@{json}`.
    pub(crate) config: &'a str,
    pub(crate) task_text: &'a str,
    pub(crate) tool_docs: &'a str,
    pub(crate) observe: Option<&'a str>,
}

/// Whether an answer is distinctive enough to count when it shows up in a text.
pub(super) fn distinctive(answer: &str) -> bool {
    answer.chars().count() > 2 && !COMMON_ANSWERS.contains(&answer.to_lowercase().as_str())
}

/// The answer leaks of one configuration. Short or common answers do not count, nor does an answer
/// that is part of the configuration's own input (the agent may be shown its input). In text shared
/// by every configuration (task text, tool docs) a match counts only when the configuration's input
/// shows there too: the worked example is this very configuration.
pub(crate) fn leaks(seen: &Seen) -> Vec<Finding> {
    let options = crate::naming::options(seen.config);
    if !distinctive(seen.answer) || shows(seen.answer, options) {
        return Vec::new();
    }
    let example_shown = |text: &str| input_values(options).iter().any(|value| shows(value, text));
    let texts = [
        (ProbeReason::AnswerInTaskText, seen.task_text, true),
        (ProbeReason::AnswerInToolDocs, seen.tool_docs, true),
        (ProbeReason::AnswerInObserve, seen.observe.unwrap_or(""), false),
    ];
    texts
        .into_iter()
        .filter(|(_, text, shared)| reads_answer(seen.answer, text) && (!shared || example_shown(text)))
        .map(|(reason, _, _)| finding(reason, format!("the reference answer {:?} appears in it", cut(seen.answer))))
        .collect()
}

/// Configurations (by position in `seen`) whose Observe shows their answer, when that holds for
/// most of an environment's configurations (at least three): Observe gives the answer away,
/// however short the answer or whatever its input.
pub(crate) fn observe_leaks(seen: &[Seen]) -> Vec<(usize, Finding)> {
    let shown: Vec<usize> =
        (0..seen.len()).filter(|&i| seen[i].observe.is_some_and(|observe| reads_answer(seen[i].answer, observe))).collect();
    let observed = seen.iter().filter(|s| s.observe.is_some()).count();
    if shown.len() < 3 || shown.len() * 2 <= observed {
        return Vec::new();
    }
    let count = shown.len();
    let detail = |i: usize| {
        format!(
            "Observe shows the reference answer {:?}, as it does for {count} of the environment's {observed} configurations",
            cut(seen[i].answer)
        )
    };
    shown.into_iter().map(|i| (i, finding(ProbeReason::AnswerInObserve, detail(i)))).collect()
}

/// The distinctive values of a configuration's options (strings of 3+ characters, numbers of 3+
/// digits), for telling a worked example from a text that lists possible answers.
fn input_values(options: &str) -> Vec<String> {
    fn walk(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, found)),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            serde_json::Value::String(s) if s.chars().count() >= 3 => found.push(s.clone()),
            serde_json::Value::Number(n) if n.to_string().trim_start_matches('-').len() >= 3 => found.push(n.to_string()),
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(options) {
        walk(&value, &mut found);
    }
    found
}

fn cut(text: &str) -> &str {
    cut_at(text, 100)
}

/// The first `chars` characters of `text`.
pub(super) fn cut_at(text: &str, chars: usize) -> &str {
    &text[..text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)]
}

/// The determinism check: the calls of the environment's own oracle on one configuration (played
/// in the primary interpreter) played again in the alternate one (another hash secret, another
/// date, a clock that moves, another seed) must show the same observations and earn the same
/// reward. The rerun replays the oracle's actions rather than the oracle: where the environment
/// strays, it shows at the first call that differs.
pub(crate) fn compare_replay(primary: &Result<OracleRun, String>, rerun: &Result<Played, String>) -> Option<Finding> {
    let Ok(primary) = primary else { return None };
    let detail = match rerun {
        Err(failure) => format!("the rerun failed where the first run did not: {failure}"),
        Ok(rerun) => {
            let calls = &primary.trajectory[..primary.trajectory.len().min(TRAJECTORY_LIMIT)];
            let seen = |observation: &str| cut_at(observation, OBSERVATION_LIMIT).to_string();
            let at = calls.iter().zip(&rerun.steps).position(|((_, a), b)| seen(a) != b.observation);
            let final_reward = rerun.steps.last().map(|s| s.reward);
            match at {
                Some(at) => format!(
                    "the runs differ at call {}: {:?} then {:?}",
                    at + 1,
                    cut(&calls[at].1),
                    cut(&rerun.steps[at].observation)
                ),
                None if calls.len() != rerun.steps.len() => {
                    format!("the runs make {} and {} calls", calls.len(), rerun.steps.len())
                }
                None if calls.len() == primary.trajectory.len() && final_reward != primary.reward => format!(
                    "the reward a trainer reads differs: {} then {}",
                    primary.reward.unwrap_or(0.0),
                    final_reward.unwrap_or(0.0)
                ),
                None => return None,
            }
        }
    };
    Some(finding(
        ProbeReason::NondeterministicTrajectory,
        format!("{detail} (reran with another string-hash secret, start date, clock and seed)"),
    ))
}

/// A pass whose reward, read as `codegym serve` reads it, is not 1: a trainer would get another
/// reward than the message says.
pub(crate) fn reward_read(run: &Result<OracleRun, String>) -> Option<Finding> {
    let run = run.as_ref().ok().filter(|run| run.passed && run.contradiction().is_none())?;
    let read = run.reward.filter(|&reward| reward != 1.0)?;
    let detail = format!("the oracle's answer got {:?}, but the reward a trainer reads is {read}", cut(&run.message));
    Some(finding(ProbeReason::RewardInconsistent, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(answer: &str, message: &str) -> Submission {
        Submission { answer: Some(answer.into()), message: message.into(), reward: None }
    }

    #[test]
    fn tokens_split_on_punctuation_and_keep_numbers_whole() {
        assert_eq!(tokens("The answer is 2758."), ["The", "answer", "is", "2758"]);
        assert_eq!(tokens("x=-3.5, y=[1,2]"), ["x", "-3.5", "y", "1", "2"]);
        assert_eq!(tokens("a-1 b_c"), ["a", "1", "b_c"]);
        assert!(shows("2758", "Observe: the maximum is 2758."));
        assert!(shows("[1, 2]", "best pair (1,2) found"));
        assert!(!shows("275", "the maximum is 2758"));
    }

    #[test]
    fn rewarded_wrong_answers_anywhere_are_findings() {
        let evidence = ProbeEvidence {
            reset: vec![submission("28", "reward=0")],
            final_: vec![submission("28", "Correct! reward=1"), submission("\"\"", "reward=1")],
            copy: "deepcopy".into(),
            ..Default::default()
        };
        let reasons: Vec<_> = judge(&Ok(evidence), "").iter().map(|f| f.reason).collect();
        assert_eq!(reasons, [ProbeReason::WrongAnswerRewarded, ProbeReason::EmptyAnswerRewarded]);
        let failed = judge(&Err("timeout: exceeded the time limit of 7000 ms".into()), "");
        assert_eq!(failed[0].reason, ProbeReason::ProbeFailed);
        assert!(failed[0].detail.contains("timeout"));
    }

    #[test]
    fn an_answer_in_observe_leaks_unless_it_is_the_input() {
        let seen = |answer, observe| Seen { answer, config: "XEnv@{\"n\": 1234}", task_text: "", tool_docs: "", observe };
        assert_eq!(leaks(&seen("2758", Some("the result is 2758.")))[0].reason, ProbeReason::AnswerInObserve);
        assert!(leaks(&seen("1234", Some("n is 1234"))).is_empty(), "the input itself");
        assert!(leaks(&seen("12", Some("12"))).is_empty(), "too short to count alone");
    }

    #[test]
    fn observe_showing_most_answers_leaks_however_short_they_are() {
        let configs = ["E@{\"a\": [1, 2]}", "E@{\"a\": [3]}", "E@{\"a\": [5, 6]}", "E@{\"a\": [7]}"];
        let answers = ["2", "3", "6", "9"];
        let observes = ["max so far 2", "max so far 3", "max so far 6", "nothing yet"];
        let seen: Vec<Seen> = (0..4)
            .map(|i| Seen { answer: answers[i], config: configs[i], task_text: "", tool_docs: "", observe: Some(observes[i]) })
            .collect();
        let leaked: Vec<usize> = observe_leaks(&seen).into_iter().map(|(i, _)| i).collect();
        assert_eq!(leaked, [0, 1, 2]);
        assert!(observe_leaks(&seen[..2]).is_empty(), "too few configurations to tell");
    }

    #[test]
    fn a_rerun_must_show_what_the_oracle_saw_and_read_the_same_reward() {
        let step = |observation: &str, reward: f64| crate::harness::PlayedStep {
            action: "{}".into(),
            observation: observation.into(),
            reward,
            done: false,
            refused: false,
        };
        let long = "x".repeat(OBSERVATION_LIMIT + 5);
        let primary = Ok(OracleRun {
            trajectory: vec![("{}".into(), "a".into()), ("{}".into(), long.clone())],
            reward: Some(1.0),
            ..Default::default()
        });
        let same = Played { steps: vec![step("a", 0.0), step(cut_at(&long, OBSERVATION_LIMIT), 1.0)] };
        assert_eq!(compare_replay(&primary, &Ok(same)), None, "observations are compared as far as the rerun keeps them");
        let strays = Played { steps: vec![step("b", 0.0), step(&long, 1.0)] };
        let found = compare_replay(&primary, &Ok(strays)).unwrap();
        assert_eq!(found.reason, ProbeReason::NondeterministicTrajectory);
        assert!(found.detail.contains("differ at call 1"), "{}", found.detail);
        let unpaid = Played { steps: vec![step("a", 0.0), step(cut_at(&long, OBSERVATION_LIMIT), 0.0)] };
        assert!(compare_replay(&primary, &Ok(unpaid)).unwrap().detail.contains("reward a trainer reads differs"));
        let short = Played { steps: vec![step("a", 0.0)] };
        assert!(compare_replay(&primary, &Ok(short)).unwrap().detail.contains("make 2 and 1 calls"));
        assert!(compare_replay(&primary, &Err("timeout".into())).unwrap().detail.contains("rerun failed"));
        assert_eq!(compare_replay(&Err("no run".into()), &Err("timeout".into())), None, "nothing to compare with");
    }
}
