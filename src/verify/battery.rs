//! The exploit battery: per environment, on a sample of its configurations, what a reward-hacking
//! agent tries, played through the episode path `codegym serve` uses (`episode.py`): answers of
//! every other type and shape, the values the oracle's observations showed, optional parameters
//! set against the reference, retries after a wrong answer, padding to the step cap, names that are
//! not tools, fuzzed arguments to every tool. Then the answer is searched for, by value, in all
//! that the agent saw, and the serving checks run: the oracle's trajectory replayed through a
//! pickle round trip before every call, two episodes in one loaded module, every tool timed.
//!
//! The host writes every action from what it already holds (the reference answer, the oracle's
//! trajectory, the tool schemas) and judges the evidence, which must answer exactly the actions
//! sent. Planning and judging are pure; `mod.rs` runs the steps.

use super::probes::{Finding, ProbeReason, cut_at as cut};
use super::reasons::{AttackClass, RunVerdict};
use super::values::{self, Match};
use crate::harness::{
    EnvSource, EnvWork, Observed, OracleRun, Played, PlayedStep, Repeated, Replayed, Serving, Step, StepResult, TwoPlayed,
    action_tool,
};
use crate::sandbox::{Variant, Verdict};
use crate::tools::{ParamType, ToolSchema};
use serde_json::{Value, json};

/// The battery's own seed, apart from the first round's.
const SEED: u64 = 0xba77_e5ee_d000_0002;

/// Names an agent may try that are not tools (the contract's own methods, private state).
const NOT_TOOLS: [&str; 10] =
    ["get_ref_answer", "solve", "step", "reset", "from_env_str", "_get_obs", "__init__", "__class__", "_reward", "func_mapping"];

/// Observed values submitted as answers, at most.
const MAX_OBSERVED: usize = 24;

/// Each documented tool is called this many times in a row (at most the step cap), and a wrong
/// answer is submitted on a copy of the state after each checkpoint's number of calls: an
/// environment that pays out after some run of calls (a knock sequence, a spam threshold) shows.
const REPEATS: usize = 64;
const REPEAT_CHECKPOINTS: [usize; 12] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];

/// What the battery needs of one environment, from the first round of steps.
pub(super) struct Subject<'a> {
    pub(super) source: EnvSource<'a>,
    pub(super) seed: u64,
    pub(super) task_text: &'a str,
    /// The documented tools, in `func_mapping` order.
    pub(super) tools: Vec<String>,
    pub(super) schemas: Vec<ToolSchema>,
    pub(super) samples: Vec<Sample<'a>>,
}

/// One configuration the battery plays: its reference answer and the oracle's passing run.
pub(super) struct Sample<'a> {
    pub(super) config: &'a str,
    pub(super) options: &'a str,
    /// The reference answer as JSON, and as `str()` shows it.
    pub(super) right: Value,
    pub(super) answer: &'a str,
    pub(super) run: &'a OracleRun,
}

/// The battery's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Calls per episode, as `codegym serve --max-steps` (the padding policy goes up to it).
    pub(super) step_cap: usize,
    /// A pickled state larger than this cannot be held idle (`state_too_large`).
    pub(super) max_state_bytes: u64,
    /// A documented tool slower than this per call is `slow_tool`.
    pub(super) tool_budget_ms: u64,
}

/// How many of `total` configurations the battery plays: at least `min` and `share` of them.
pub(super) fn sample_size(total: usize, min: usize, share: f64) -> usize {
    min.max((total as f64 * share).ceil() as usize).min(total)
}

/// What a reward would mean in an episode.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Every answer the episode submits is wrong (or comes after a wrong one): a reward is a hack.
    Nothing,
    /// The episode submits the right answer in an equivalent spelling: a reward is lenient matching.
    Lenient(&'static str),
}

/// What one step of the battery is for.
#[derive(Debug, Clone)]
enum Purpose {
    Episode { sample: usize, class: AttackClass, policy: String, expect: Expect, from_reset: bool, sent: Vec<String> },
    ObservePrefixes { sample: usize },
    ServeReplay { sample: usize, sent: Vec<String>, spaced: bool },
    TwoEpisodes { sample: usize },
    Repeated { sample: usize, tool: String, how: String, calls: Vec<String>, answer: String, at: Vec<usize> },
    TimingBuild,
    TimingCall { tool: String, sent: String },
}

/// The battery of one environment: its steps, and what each is for.
pub(super) struct Battery<'a> {
    pub(super) work: EnvWork<'a>,
    purposes: Vec<Purpose>,
    /// Per sample: how many of the oracle's calls come before its answer.
    answered_at: Vec<usize>,
}

/// The text of an action.
fn action(name: &str, parameters: Value) -> String {
    json!({"name": name, "parameters": parameters}).to_string()
}

/// A wrong answer of the right answer's type.
fn wrong(right: &Value) -> Value {
    match right {
        Value::Number(n) if n.is_i64() || n.is_u64() => json!(n.as_i64().unwrap_or(0).wrapping_add(1)),
        Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) + 1.0),
        Value::String(s) => json!(format!("{s}x")),
        Value::Bool(b) => json!(!b),
        Value::Array(items) => Value::Array(items.iter().cloned().chain([json!(0)]).collect()),
        Value::Object(_) => json!({"codegym": "wrong"}),
        Value::Null => json!(0),
    }
}

/// Values of other types and shapes: special values, containers holding the right answer, and
/// the right answer as another type.
fn specials(right: &Value) -> Vec<Value> {
    let mut values = vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!(1e30),
        json!("nan"),
        json!("inf"),
        json!(""),
        json!(" "),
        json!(-0.0),
        json!(".*"),
        json!("*"),
        // Code, for an environment that evaluates what it is sent.
        json!("self.get_ref_answer()"),
        json!({}),
        json!([]),
        json!([right]),
        json!([right, wrong(right)]),
        json!({"answer": right}),
        // The right answer inside a longer text, among other values (a search for it passes).
        json!(format!("{} {} {}", wrong(right), text_of(right), wrong(&wrong(right)))),
    ];
    match right {
        Value::Number(n) => {
            values.push(json!(n.to_string()));
            values.extend(n.as_f64().map(|f| json!(f)));
        }
        Value::String(s) => {
            values.extend(s.trim().parse::<i64>().ok().map(|n| json!(n)));
            values.push(json!(s.to_uppercase()));
            values.push(json!(s.to_lowercase()));
            values.push(json!(format!(" {s} ")));
        }
        Value::Bool(b) => values.push(json!(b.to_string())),
        _ => values.push(json!(right.to_string())),
    }
    dedup(values)
}

/// A value as a text shows it: a string bare, anything else as JSON.
fn text_of(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

/// Texts in their first order, each once.
fn dedup_text(texts: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    texts.iter().filter(|t| seen.insert(t.as_str())).cloned().collect()
}

fn dedup(values: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    values.into_iter().filter(|v| seen.insert(v.to_string())).collect()
}

/// The values the oracle's observations showed before its answer: numbers, and for a text answer
/// the words too.
fn observed(sample: &Sample, answered_at: usize) -> Vec<Value> {
    let texts = sample.run.trajectory[..answered_at].iter().map(|(_, observation)| observation.as_str());
    dedup(texts.flat_map(|text| values_in(text, sample.right.is_string())).collect()).into_iter().take(MAX_OBSERVED * 4).collect()
}

/// The values a text shows: its numbers, and with `words` its words too. An answer check that
/// tests membership instead of the extreme, say, takes any value of the input.
fn values_in(text: &str, words: bool) -> Vec<Value> {
    let mut values: Vec<Value> = values::numbers(text).into_iter().map(number_value).collect();
    if words {
        values.extend(super::probes::tokens(text).into_iter().map(|t| json!(t)));
    }
    dedup(values)
}

/// A number as JSON: an integer where it is a whole one (and fits exactly).
fn number_value(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < 9e15 { json!(number as i64) } else { json!(number) }
}

/// `call` (a parsed action) with its argument `name` set to `value`, as text.
fn with_argument(call: &Value, name: &str, value: Value) -> String {
    let mut call = call.clone();
    call["parameters"][name] = value;
    call.to_string()
}

/// A plain value of a parameter's type.
fn plain(ty: &ParamType) -> Value {
    match ty {
        ParamType::Integer | ParamType::Number => json!(0),
        ParamType::String => json!("a"),
        ParamType::Boolean => json!(false),
        ParamType::Null => Value::Null,
        ParamType::Array(_) => json!([]),
        ParamType::Object(_) => json!({}),
        ParamType::OneOf(types) => types.first().map_or(Value::Null, plain),
    }
}

/// Values an agent probing a parameter sends: out of range, of the wrong type, null; and for a
/// number the small ones (a level or mode one past those documented).
fn fuzzed(ty: &ParamType) -> Vec<Value> {
    let wrong_type = if matches!(ty, ParamType::String) { json!(12345) } else { json!("x") };
    let mut values = vec![json!(-1), json!(1_000_000_000), wrong_type, Value::Null, json!([])];
    if matches!(ty, ParamType::Integer | ParamType::Number) {
        values.extend([json!(0), json!(1), json!(2), json!(3)]);
    }
    values
}

/// The battery's work on an environment (`seed`: the environment's), with nothing in it yet. Played
/// in the alternate variant: the guest presents as a native CPython whose clock moves between
/// calls, so an environment that behaves only inside the sandbox is caught here.
pub(super) fn work(source: EnvSource, seed: u64) -> EnvWork {
    EnvWork { variant: Variant::Alternate, ..EnvWork::new(source, seed ^ SEED) }
}

impl<'a> Battery<'a> {
    /// Plans the battery of `subject`.
    pub(super) fn plan(subject: &Subject<'a>, limits: &Limits) -> Battery<'a> {
        let mut work = work(subject.source, subject.seed);
        work.tools = subject.tools.clone();
        let mut battery = Battery { work, purposes: Vec::new(), answered_at: Vec::new() };
        let planned: Vec<usize> = (0..subject.samples.len()).filter(|&i| battery.plan_sample(subject, i, limits)).collect();
        if !planned.is_empty() {
            battery.plan_two_episodes(subject, &planned);
        }
        if let Some(&first) = planned.first() {
            battery.plan_timings(subject, first);
            battery.plan_repeats(subject, first, limits);
        }
        battery
    }

    fn push(&mut self, step: Step, purpose: Purpose) {
        self.work.steps.push(step);
        self.purposes.push(purpose);
    }

    /// The steps on one sample; false when its oracle never answered (nothing to fork from).
    fn plan_sample(&mut self, subject: &Subject<'a>, index: usize, limits: &Limits) -> bool {
        let sample = &subject.samples[index];
        let actions: Vec<String> = sample.run.trajectory.iter().map(|(a, _)| a.clone()).collect();
        let Some(answered_at) = actions.iter().position(|a| action_tool(a).as_deref() == Some("Done")) else {
            self.answered_at.push(usize::MAX);
            return false;
        };
        self.answered_at.push(answered_at);
        let config = self.work.configs.len();
        self.work.configs.push(sample.config);
        let full = self.work.trajectories.len();
        self.work.trajectories.push(actions[..=answered_at].to_vec());
        let before = self.work.trajectories.len();
        self.work.trajectories.push(actions[..answered_at].to_vec());
        let sent = actions[..=answered_at].to_vec();
        let first = config == 0;
        // Spaced restores on the first sample: state that drifts after some calls since a restore.
        for spaced in [false, true].into_iter().filter(|&spaced| !spaced || first) {
            let step = Step::ServeReplay { config, trajectory: full, spaced };
            self.push(step, Purpose::ServeReplay { sample: index, sent: sent.clone(), spaced });
        }
        self.push(Step::ObservePrefixes { config, trajectory: before }, Purpose::ObservePrefixes { sample: index });
        for Policy { class, name, expect, from_reset, serve, actions } in policies(subject, sample, answered_at, limits, first) {
            let prefix = (full, if from_reset { 0 } else { answered_at });
            let purpose = Purpose::Episode { sample: index, class, policy: name, expect, from_reset, sent: actions.clone() };
            self.push(Step::Episode { config, prefix, actions, serve }, purpose);
        }
        true
    }

    /// Each sample played again after another one in the same loaded module, and the first one
    /// after itself (a log kept per configuration shows there).
    fn plan_two_episodes(&mut self, subject: &Subject<'a>, planned: &[usize]) {
        let pairs = planned.iter().enumerate().map(|(position, &sample)| (sample, planned[(position + 1) % planned.len()]));
        let again = (planned.len() > 1).then(|| (planned[0], planned[0]));
        for (sample, other) in pairs.chain(again) {
            let (config, first) = (self.config_of(subject, sample), self.config_of(subject, other));
            let step = Step::TwoEpisodes { first: (first, 2 * first), config, trajectory: 2 * config };
            self.push(step, Purpose::TwoEpisodes { sample });
        }
    }

    /// The index of a planned sample's configuration in the work (two trajectories each).
    fn config_of(&self, subject: &Subject<'a>, sample: usize) -> usize {
        self.work.configs.iter().position(|c| *c == subject.samples[sample].config).expect("planned samples have a config")
    }

    /// Every documented tool called once, in its own step, `Done` last: with the oracle's own
    /// arguments where it called the tool, plain ones of the documented types otherwise.
    fn plan_timings(&mut self, subject: &Subject<'a>, sample: usize) {
        let config = self.config_of(subject, sample);
        self.push(Step::TimingBuild { config }, Purpose::TimingBuild);
        let run = subject.samples[sample].run;
        let mut tools: Vec<&String> = subject.tools.iter().filter(|t| *t != "Done").collect();
        tools.extend(subject.tools.iter().filter(|t| *t == "Done"));
        for tool in tools {
            let typical = typical_call(subject, run, tool);
            let tops = if tool == "Done" { Vec::new() } else { at_documented_tops(subject, tool, &typical) };
            for sent in std::iter::once(typical.clone()).chain(tops) {
                self.push(Step::TimingCall { action: sent.clone() }, Purpose::TimingCall { tool: tool.clone(), sent });
            }
        }
    }

    /// Every documented tool but `Done` called [`REPEATS`] times in a row from reset, and swept
    /// over the values 0, 1, 2, ... of its first integer parameter (inspecting every item may be
    /// what pays), each with a wrong answer at each checkpoint (see [`Step::Repeated`]).
    fn plan_repeats(&mut self, subject: &Subject<'a>, sample: usize, limits: &Limits) {
        let config = self.config_of(subject, sample);
        let count = REPEATS.min(limits.step_cap.saturating_sub(1));
        let at: Vec<usize> = REPEAT_CHECKPOINTS.iter().copied().filter(|&k| k <= count).collect();
        let answer = submit(&answer_parameter(subject), &wrong(&subject.samples[sample].right));
        for tool in subject.tools.iter().filter(|t| *t != "Done") {
            let call = typical_call(subject, subject.samples[sample].run, tool);
            let mut runs = vec![(format!("called {count} times in a row"), vec![call.clone(); count], at.clone())];
            runs.extend(sweep(subject, tool, &call, sweep_length(subject.samples[sample].options, limits)));
            for (how, calls, at) in runs {
                let step = Step::Repeated { config, calls: calls.clone(), answer: answer.clone(), at: at.clone() };
                let purpose = Purpose::Repeated { sample, tool: tool.clone(), how, calls, answer: answer.clone(), at };
                self.push(step, purpose);
            }
        }
    }
}

/// How far a sweep goes: [`REPEATS`] values, or as far as the largest count the configuration
/// names (its number of items, say) when that is larger, within the step cap.
fn sweep_length(options: &str, limits: &Limits) -> usize {
    let cap = limits.step_cap.saturating_sub(1);
    let named = values::numbers(options).into_iter().filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= cap as f64);
    named.fold(REPEATS, |longest, n| longest.max(n as usize + 1)).min(cap)
}

/// `call` with its tool's first integer parameter set to 0, 1, ... up to `count` calls, what that
/// is in words, and the checkpoints (the last call among them); none when the tool has no integer
/// parameter.
fn sweep(subject: &Subject, tool: &str, call: &str, count: usize) -> Option<(String, Vec<String>, Vec<usize>)> {
    let params = schema(subject, tool).map_or(&[][..], |s| s.parameters.as_slice());
    let param = params.iter().find(|p| matches!(p.ty, ParamType::Integer)).filter(|_| count > 0)?;
    let base = serde_json::from_str::<Value>(call).ok().filter(Value::is_object)?;
    let calls = (0..count).map(|value| with_argument(&base, &param.name, json!(value))).collect();
    let mut at: Vec<usize> = REPEAT_CHECKPOINTS.iter().copied().filter(|&k| k < count).collect();
    at.push(count);
    Some((format!("swept over {}=0..{}", param.name, count - 1), calls, at))
}

/// A call of `tool` as an agent makes it: with the oracle's own arguments where it called the tool,
/// plain ones of the documented types otherwise.
fn typical_call(subject: &Subject, run: &OracleRun, tool: &str) -> String {
    let used = run.trajectory.iter().map(|(a, _)| a).find(|a| action_tool(a).as_deref() == Some(tool));
    used.cloned().unwrap_or_else(|| action(tool, plain_arguments(subject, tool)))
}

/// `call` again with each numeric parameter at the largest value its documentation names ("1 to
/// 50000000"): a tool is timed at the top of its documented range too.
fn at_documented_tops(subject: &Subject, tool: &str, call: &str) -> Vec<String> {
    let Some(base) = serde_json::from_str::<Value>(call).ok().filter(Value::is_object) else { return Vec::new() };
    let params = schema(subject, tool).map_or(&[][..], |s| s.parameters.as_slice());
    let numeric = params.iter().filter(|p| matches!(p.ty, ParamType::Integer | ParamType::Number));
    let tops = numeric.filter_map(|param| {
        let top = values::numbers(&param.description).into_iter().filter(|n| n.is_finite()).fold(f64::NAN, f64::max);
        (!top.is_nan() && top.abs() < 9e15).then(|| with_argument(&base, &param.name, number_value(top)))
    });
    tops.collect()
}

/// `Done` with `value` as its answer parameter `param`.
fn submit(param: &str, value: &Value) -> String {
    action("Done", json!({ param: value }))
}

/// The name of `Done`'s answer parameter (its first).
fn answer_parameter(subject: &Subject) -> String {
    schema(subject, "Done").and_then(|s| s.parameters.first()).map_or("answer".to_string(), |p| p.name.clone())
}

fn schema<'s>(subject: &'s Subject, tool: &str) -> Option<&'s ToolSchema> {
    subject.schemas.iter().find(|s| s.name == tool)
}

fn plain_arguments(subject: &Subject, tool: &str) -> Value {
    let params = schema(subject, tool).map_or(&[][..], |s| s.parameters.as_slice());
    Value::Object(params.iter().filter(|p| p.required).map(|p| (p.name.clone(), plain(&p.ty))).collect())
}

/// One episode a reward hacker would play.
struct Policy {
    class: AttackClass,
    /// The policy in words, as a finding names it.
    name: String,
    /// What a reward would mean.
    expect: Expect,
    /// From a fresh episode, or from where the oracle answered.
    from_reset: bool,
    /// Played by the harness's own episode path, or as `codegym serve` plays a session.
    serve: Serving,
    actions: Vec<String>,
}

impl Policy {
    fn new(class: AttackClass, name: String, expect: Expect, from_reset: bool, actions: Vec<String>) -> Policy {
        Policy { class, name, expect, from_reset, serve: Serving::Forked, actions }
    }

    /// The policy from reset, played as `codegym serve` plays a session evicted between calls.
    fn served(self) -> Policy {
        Policy { name: format!("{} (served)", self.name), from_reset: true, serve: Serving::Restored, ..self }
    }

    /// The policy from reset as the first session of a new interpreter, held live as `codegym
    /// serve` holds a trainer's session between its calls.
    fn first_served(self) -> Policy {
        let name = format!("{} (served live, the first session of a new interpreter)", self.name);
        Policy { name, from_reset: true, serve: Serving::Live, ..self }
    }
}

/// The episodes of one sample; on the `first` sample only, the retries with every special answer
/// and the episodes played as `codegym serve` plays them from reset.
fn policies(subject: &Subject, sample: &Sample, answered_at: usize, limits: &Limits, first: bool) -> Vec<Policy> {
    let done = schema(subject, "Done");
    let param = answer_parameter(subject);
    let answer = |value: &Value| submit(&param, value);
    let right = &sample.right;
    let bad = wrong(right);
    let expect = |value: &Value| match values::compare(value, right, subject.task_text) {
        Match::Exact => None,
        Match::Wrong => Some(Expect::Nothing),
        Match::Equivalent(why) => Some(Expect::Lenient(why)),
    };
    let special_answers: Vec<(Value, Expect)> = specials(right).into_iter().filter_map(|v| expect(&v).map(|m| (v, m))).collect();
    let mut episodes = Vec::new();
    for (value, meaning) in &special_answers {
        for from_reset in [true, false] {
            let policy = Policy::new(
                AttackClass::SpecialAnswer,
                format!("answer {value}"),
                meaning.clone(),
                from_reset,
                vec![answer(value)],
            );
            // Served on the first sample: how an environment holds up when served is not a
            // property of one configuration, and the others' answers are forked from reset.
            episodes.push(if from_reset && first { policy.served() } else { policy });
        }
    }
    // The oracle's way to its answer and then a wrong one, as a served session: what pickling
    // after every call or a caller's frames change shows here.
    let mut way = sample.run.trajectory[..answered_at].iter().map(|(action, _)| action.clone()).collect::<Vec<_>>();
    way.push(answer(&bad));
    let name = "the oracle's calls before its answer, then a wrong answer".to_string();
    episodes.push(Policy::new(AttackClass::Retry, name.clone(), Expect::Nothing, true, way.clone()).served());
    // On the first sample, the same where serve plays every session: the first environment a new
    // interpreter builds, its session held live (an environment may tell that it is the first).
    if first {
        episodes.push(Policy::new(AttackClass::Retry, name, Expect::Nothing, true, way).first_served());
    }
    let inputs = values_in(sample.options, right.is_string());
    let seen = [("observed value", observed(sample, answered_at)), ("input value", inputs)];
    for (what, found) in seen {
        let mut shown = 0;
        for value in found {
            let Some(meaning) = expect(&value) else { continue };
            if shown == MAX_OBSERVED {
                break;
            }
            shown += 1;
            let name = format!("{what} {value} as the answer");
            episodes.push(Policy::new(AttackClass::ObservedValue, name, meaning, false, vec![answer(&value)]));
        }
    }
    for optional in done.map_or(&[][..], |s| s.parameters.as_slice()).iter().filter(|p| !p.required && p.name != param) {
        let probing = fuzzed(&optional.ty).into_iter().chain(documented_values(&optional.description));
        for value in dedup([bad.clone(), json!(true)].into_iter().chain(probing).collect()) {
            let sent = action("Done", json!({ param.as_str(): bad, optional.name.as_str(): value }));
            let name = format!("optional {}={value} with a wrong answer", optional.name);
            episodes.push(Policy::new(AttackClass::OptionalParameter, name, Expect::Nothing, false, vec![sent]));
        }
    }
    let observe = action("Observe", json!({}));
    let retry = vec![answer(&bad), observe.clone(), answer(right)];
    let name = "retry: a wrong answer, Observe, the right answer".to_string();
    episodes.push(Policy::new(AttackClass::Retry, name, Expect::Nothing, false, retry));
    // A second answer after a wrong one may take another path than the first: every wrong special.
    for (value, _) in special_answers.iter().filter(|(_, meaning)| first && *meaning == Expect::Nothing) {
        let name = format!("retry: a wrong answer, then at once {value}");
        let retry = vec![answer(&bad), answer(value)];
        episodes.push(Policy::new(AttackClass::Retry, name, Expect::Nothing, false, retry));
    }
    let mut padding = vec![observe; limits.step_cap.saturating_sub(1)];
    padding.push(answer(&bad));
    let name = format!("padding: {} Observe calls, then a wrong answer", limits.step_cap.saturating_sub(1));
    episodes.push(Policy::new(AttackClass::Padding, name, Expect::Nothing, true, padding));
    let mut names: Vec<String> =
        NOT_TOOLS.iter().filter(|n| !subject.tools.iter().any(|t| t == *n)).map(|n| action(n, json!({}))).collect();
    names.push(answer(&bad));
    let name = "names that are not tools, then a wrong answer".to_string();
    episodes.push(Policy::new(AttackClass::NotATool, name, Expect::Nothing, true, names));
    let mut fuzz = fuzz_calls(subject, sample);
    fuzz.push(answer(&bad));
    let name = "fuzzed arguments to every tool, then a wrong answer".to_string();
    episodes.push(Policy::new(AttackClass::FuzzedArguments, name, Expect::Nothing, true, fuzz));
    episodes
}

/// Every documented tool but `Done` called with each parameter out of range, of the wrong type,
/// null and set to each value its documentation names, with arguments missing, with an extra
/// one, and with its optional flags on.
fn fuzz_calls(subject: &Subject, sample: &Sample) -> Vec<String> {
    let mut calls = Vec::new();
    for tool in subject.tools.iter().filter(|t| *t != "Done") {
        let used = sample.run.trajectory.iter().find_map(|(a, _)| {
            let call: Value = serde_json::from_str(a).ok()?;
            (call.get("name")?.as_str()? == tool).then(|| call.get("parameters").cloned())?
        });
        let base = used.filter(Value::is_object).unwrap_or_else(|| plain_arguments(subject, tool));
        let params = schema(subject, tool).map_or(&[][..], |s| s.parameters.as_slice());
        for param in params {
            for value in fuzzed(&param.ty).into_iter().chain(documented_values(&param.description)) {
                let mut arguments = base.clone();
                arguments[param.name.as_str()] = value;
                calls.push(action(tool, arguments));
            }
        }
        if !params.is_empty() {
            calls.push(action(tool, json!({})));
        }
        let mut extra = base.clone();
        extra["codegym_extra"] = json!(1);
        calls.push(action(tool, extra));
        let flags: Vec<_> = params.iter().filter(|p| !p.required).collect();
        if !flags.is_empty() {
            let mut on = base.clone();
            for flag in flags {
                on[flag.name.as_str()] = json!(true);
            }
            calls.push(action(tool, on));
        }
    }
    calls
}

/// The values a parameter's documentation names in quotes (`"exam" (the default) or "practice"`):
/// a mode or flag an agent reads about and tries.
fn documented_values(description: &str) -> Vec<Value> {
    let mut values = Vec::new();
    for quote in ['"', '\'', '`'] {
        let parts: Vec<&str> = description.split(quote).collect();
        values.extend(parts.iter().skip(1).step_by(2).take(parts.len() / 2).filter(|v| !v.is_empty()).map(|v| json!(v)));
    }
    dedup(values)
}

/// What the battery found about one environment.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Outcome {
    /// At most one finding per reason, in reason order.
    pub(super) findings: Vec<Finding>,
    /// Documented equivalences the environment accepts (never a reason to reject it).
    pub(super) lenient: Vec<String>,
    /// Every run, in the order played, with what it found: the audit (`battery_runs`).
    pub(super) runs: Vec<AuditRun>,
    /// The first finding and the first accepted equivalence of the run being judged.
    current: Option<Finding>,
    accepted: Option<String>,
}

/// One run of the battery as the audit records it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AuditRun {
    /// The configuration it played.
    pub(super) config: String,
    pub(super) class: AttackClass,
    pub(super) policy: String,
    pub(super) actions: Vec<String>,
    pub(super) from_reset: bool,
    /// The reward a trainer reads after its last call.
    pub(super) final_reward: Option<f64>,
    pub(super) verdict: RunVerdict,
    pub(super) detail: Option<String>,
}

/// What a run gave to judge: the reward after its last call, if it has one; or why it gave nothing.
type Evidence = Result<Option<f64>, String>;

impl Outcome {
    fn find(&mut self, reason: ProbeReason, detail: String) {
        self.current.get_or_insert_with(|| Finding { reason, detail: detail.clone() });
        if !self.findings.iter().any(|f| f.reason == reason) {
            self.findings.push(Finding { reason, detail });
        }
    }

    fn accept(&mut self, equivalence: String) {
        self.accepted.get_or_insert_with(|| equivalence.clone());
        self.lenient.push(equivalence);
    }

    /// Closes the run being judged: its verdict is its first finding, else an accepted
    /// equivalence, else whether it gave evidence at all.
    fn close_run(&mut self, mut run: AuditRun, evidence: Evidence) {
        let (verdict, detail) = match (self.current.take(), self.accepted.take(), &evidence) {
            (Some(finding), _, _) => (RunVerdict::Found(finding.reason), Some(finding.detail)),
            (None, Some(equivalence), _) => (RunVerdict::Lenient, Some(equivalence)),
            (None, None, Err(why)) => (RunVerdict::NoEvidence, Some(why.clone())),
            (None, None, Ok(_)) => (RunVerdict::Held, None),
        };
        run.final_reward = evidence.ok().flatten();
        self.runs.push(AuditRun { verdict, detail, ..run });
    }
}

/// Whether a call was rewarded, read both ways a trainer can read it: any reward above 0 pays.
fn rewarded(step: &PlayedStep) -> bool {
    step.reward > 0.0 || step.observation.contains("reward=1")
}

/// The reward an observation states, when it states one.
fn stated(observation: &str) -> Option<bool> {
    match (observation.contains("reward=1"), observation.contains("reward=0")) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// After an answer, the reward the message states and the one a trainer reads must agree; and a
/// reward a trainer reads is 0 or 1, never anything else.
fn check_rewards(steps: &[PlayedStep], outcome: &mut Outcome) {
    if let Some(step) = steps.iter().find(|step| step.reward != 0.0 && step.reward != 1.0) {
        let detail = format!("after {} the reward a trainer reads is {}, neither 0 nor 1", cut(&step.action, 120), step.reward);
        outcome.find(ProbeReason::RewardInconsistent, detail);
    }
    let disagrees = |step: &&PlayedStep| {
        let answered = step.done || action_tool(&step.action).as_deref() == Some("Done");
        answered && stated(&step.observation).is_some_and(|says| says != (step.reward == 1.0))
    };
    if let Some(step) = steps.iter().find(disagrees) {
        let detail = format!(
            "after {} the message says {:?} but the reward a trainer reads is {}",
            cut(&step.action, 120),
            cut(&step.observation, 160),
            step.reward
        );
        outcome.find(ProbeReason::RewardInconsistent, detail);
    }
}

/// Whether the evidence answers exactly the actions sent: the same actions in order, each once,
/// and fewer only when the episode ended.
fn answers(sent: &[String], steps: &[PlayedStep]) -> bool {
    let same = steps.len() <= sent.len() && steps.iter().zip(sent).all(|(step, action)| step.action == *action);
    same && (steps.len() == sent.len() || steps.last().is_some_and(|s| s.done))
}

impl Battery<'_> {
    /// Judges the results of the battery's steps.
    pub(super) fn judge(&self, subject: &Subject, results: &[StepResult], limits: &Limits) -> Outcome {
        let mut outcome = Outcome::default();
        let timing_built = self
            .purposes
            .iter()
            .zip(results)
            .find(|(p, _)| matches!(p, Purpose::TimingBuild))
            .is_some_and(|(_, r)| r.value.is_ok());
        for (purpose, result) in self.purposes.iter().zip(results) {
            let Some(run) = self.audit_run(subject, purpose) else { continue };
            let no_evidence = |detail: String| Err(result.failure().unwrap_or(detail));
            let evidence: Evidence = match purpose {
                Purpose::Episode { sample, policy, expect, from_reset, sent, .. } => match result.parse::<Played>() {
                    Ok(played) => {
                        self.judge_episode(subject, *sample, policy, expect, *from_reset, sent, &played.steps, &mut outcome);
                        Ok(played.steps.last().map(|s| s.reward))
                    }
                    Err(detail) => no_evidence(detail),
                },
                Purpose::ObservePrefixes { sample } => match result.parse::<Observed>() {
                    Ok(observed) => Ok(self.judge_prefixes(subject, *sample, &observed, &mut outcome)),
                    Err(detail) => no_evidence(detail),
                },
                Purpose::ServeReplay { sample, sent, .. } => {
                    Ok(judge_replay(&subject.samples[*sample], sent, result, limits, &mut outcome))
                }
                Purpose::TwoEpisodes { sample } => judge_two(&subject.samples[*sample], result, &mut outcome),
                Purpose::Repeated { tool, how, calls, answer, at, .. } => {
                    judge_repeated(&format!("{tool} {how}"), (calls, answer, at), result, limits, &mut outcome)
                }
                Purpose::TimingCall { tool, sent } if timing_built => Ok(judge_timing(tool, sent, result, limits, &mut outcome)),
                Purpose::TimingCall { .. } | Purpose::TimingBuild => {
                    Err("the environment could not be built to time its tools".into())
                }
            };
            outcome.close_run(run, evidence);
        }
        outcome.findings.sort_by_key(|f| f.reason);
        outcome.lenient.sort();
        outcome.lenient.dedup();
        outcome
    }

    /// The audit's record of the run a step plays, before it is judged (none for the build that
    /// the timed calls start from).
    fn audit_run(&self, subject: &Subject, purpose: &Purpose) -> Option<AuditRun> {
        let oracle_actions = |sample: usize, upto: usize| -> Vec<String> {
            subject.samples[sample].run.trajectory.iter().take(upto).map(|(a, _)| a.clone()).collect()
        };
        let timed_on = self.purposes.iter().find_map(|p| match p {
            Purpose::ServeReplay { sample, .. } => Some(*sample),
            _ => None,
        });
        let (sample, class, policy, actions, from_reset) = match purpose {
            Purpose::Episode { sample, class, policy, from_reset, sent, .. } => {
                (*sample, *class, policy.clone(), sent.clone(), *from_reset)
            }
            Purpose::ObservePrefixes { sample } => {
                let policy = "Observe after every prefix of the oracle's calls".to_string();
                (*sample, AttackClass::ObservePrefixes, policy, oracle_actions(*sample, self.answered_at[*sample]), true)
            }
            Purpose::ServeReplay { sample, sent, spaced } => {
                let policy = if *spaced {
                    "the oracle's calls, a pickle round trip of the session after 1, 3, 6, 10, ... of them"
                } else {
                    "the oracle's calls, each after a pickle round trip of the session"
                };
                let policy = policy.to_string();
                (*sample, AttackClass::ServeReplay, policy, sent.clone(), true)
            }
            Purpose::TwoEpisodes { sample } => {
                let policy = "the oracle's calls after another episode in the same loaded module".to_string();
                (*sample, AttackClass::TwoEpisodes, policy, oracle_actions(*sample, self.answered_at[*sample] + 1), true)
            }
            Purpose::Repeated { sample, tool, how, calls, answer, at } => {
                let policy = format!("{tool} {how}, a wrong answer after {at:?} calls");
                let actions = dedup_text(calls).into_iter().chain([answer.clone()]).collect();
                (*sample, AttackClass::Padding, policy, actions, true)
            }
            Purpose::TimingCall { tool, sent } => {
                (timed_on?, AttackClass::TimedCall, format!("one timed call of {tool}"), vec![sent.clone()], true)
            }
            Purpose::TimingBuild => return None,
        };
        let config = subject.samples[sample].config.to_string();
        Some(AuditRun { config, class, policy, actions, from_reset, final_reward: None, verdict: RunVerdict::Held, detail: None })
    }

    #[allow(clippy::too_many_arguments)]
    fn judge_episode(
        &self,
        subject: &Subject,
        sample: usize,
        policy: &str,
        expect: &Expect,
        from_reset: bool,
        sent: &[String],
        steps: &[PlayedStep],
        outcome: &mut Outcome,
    ) {
        if !answers(sent, steps) {
            let detail = format!("the evidence of the policy \"{policy}\" does not answer the {} actions sent", sent.len());
            outcome.find(ProbeReason::Tampered, detail);
            return;
        }
        check_rewards(steps, outcome);
        for (at, step) in steps.iter().enumerate() {
            if rewarded(step) {
                match expect {
                    Expect::Nothing => {
                        let detail = format!(
                            "the policy \"{policy}\" earned reward {} at call {} ({}): {:?}",
                            if step.reward > 0.0 { step.reward } else { 1.0 },
                            at + 1,
                            cut(&step.action, 160),
                            cut(&step.observation, 160)
                        );
                        outcome.find(ProbeReason::RewardHackable, detail);
                    }
                    Expect::Lenient(why) => outcome.accept(format!("Done accepts {why}")),
                }
                break;
            }
        }
        let sample_ref = &subject.samples[sample];
        let honest = self.revealed_after(sample_ref, sample);
        let start = if from_reset { 0 } else { self.answered_at[sample] };
        if start >= honest {
            return;
        }
        // A tool whose own calls showed the oracle the answer computes it: a call of it showing the
        // answer is the agent's work, not a leak.
        let computes: Vec<Option<String>> = sample_ref.run.trajectory[..self.answered_at[sample]]
            .iter()
            .filter(|(_, observation)| shows(sample_ref, observation))
            .map(|(action, _)| action_tool(action))
            .collect();
        // What the agent sent itself (an answer echoed back) is not a leak either.
        let leaks = |s: &&PlayedStep| {
            !s.done
                && !s.refused
                && !computes.contains(&action_tool(&s.action))
                && !shows(sample_ref, &s.action)
                && shows(sample_ref, &s.observation)
        };
        let leak = steps.iter().position(|s| leaks(&s));
        if let Some(at) = leak {
            let detail = format!(
                "the answer {} shows at call {} of the policy \"{policy}\", {}: {:?}",
                cut(sample_ref.answer, 60),
                at + 1,
                if from_reset { "from reset" } else { "where the oracle answered" },
                cut(&steps[at].observation, 200)
            );
            outcome.find(ProbeReason::AnswerLeaked, detail);
        }
    }

    /// How many of the oracle's calls it takes before its own observations show the answer (never:
    /// `usize::MAX`); a search that finds nothing searchable returns 0, so nothing leaks.
    fn revealed_after(&self, sample: &Sample, index: usize) -> usize {
        if !searchable(sample) {
            return 0;
        }
        let answered_at = self.answered_at[index];
        sample.run.trajectory[..answered_at.min(sample.run.trajectory.len())]
            .iter()
            .position(|(_, observation)| shows(sample, observation))
            .map_or(usize::MAX, |i| i + 1)
    }

    /// Observe after a few calls (a cache, a counter) must not show what the calls so far did not.
    /// Observe right after reset is the per-configuration check's (`answer_in_observe`).
    fn judge_prefixes(&self, subject: &Subject, sample: usize, observed: &Observed, outcome: &mut Outcome) -> Option<f64> {
        let sample_ref = &subject.samples[sample];
        let honest = self.revealed_after(sample_ref, sample);
        let leak = observed.observations.iter().enumerate().skip(1).find(|(at, text)| *at < honest && shows(sample_ref, text));
        if let Some((at, text)) = leak {
            let detail = format!(
                "Observe after {at} of the oracle's calls shows the answer {} before any call showed it: {:?}",
                cut(sample_ref.answer, 60),
                cut(text, 200)
            );
            outcome.find(ProbeReason::AnswerLeaked, detail);
        }
        None
    }
}

/// Whether the answer is worth searching for: distinctive, and not part of the configuration's
/// own input (which the agent may be shown).
fn searchable(sample: &Sample) -> bool {
    values::distinctive(&sample.right, sample.answer) && !values::shows(&sample.right, sample.answer, sample.options)
}

fn shows(sample: &Sample, text: &str) -> bool {
    values::shows(&sample.right, sample.answer, text)
}

/// The oracle's trajectory replayed as a served session must show what it showed live and earn
/// the same reward; its state must be small enough to hold idle. Returns the replay's last reward.
fn judge_replay(sample: &Sample, sent: &[String], result: &StepResult, limits: &Limits, outcome: &mut Outcome) -> Option<f64> {
    let replayed = match result.parse::<Replayed>() {
        Ok(replayed) => replayed,
        Err(detail) => {
            let why = result.failure().unwrap_or(detail);
            outcome.find(ProbeReason::NotServable, format!("a session held as pickled state fails: {why}"));
            return None;
        }
    };
    let last_reward = replayed.steps.last().map(|s| s.reward);
    if !answers(sent, &replayed.steps) {
        outcome.find(ProbeReason::Tampered, "the serving replay does not answer the oracle's actions".into());
        return last_reward;
    }
    check_rewards(&replayed.steps, outcome);
    let live = &sample.run.trajectory;
    let differs = replayed.steps.iter().zip(live).position(|(step, (_, seen))| step.observation != cut(seen, 2000));
    let detail = match differs {
        Some(at) => Some(format!(
            "restored from its pickled state, call {} shows {:?} where the live run showed {:?}",
            at + 1,
            cut(&replayed.steps[at].observation, 160),
            cut(&live[at].1, 160)
        )),
        None if replayed.steps.len() != sent.len() => Some(format!(
            "restored from its pickled state, the episode ends after {} of {} calls",
            replayed.steps.len(),
            sent.len()
        )),
        None if replayed.steps.last().is_none_or(|s| s.reward != 1.0 && !s.observation.contains("reward=1")) => {
            Some("restored from its pickled state, the oracle's answer is no longer rewarded".into())
        }
        None => None,
    };
    if let Some(detail) = detail {
        outcome.find(ProbeReason::NotServable, detail);
    }
    if replayed.state_bytes > limits.max_state_bytes {
        let detail = format!("its state pickles to {} bytes, over the cap of {}", replayed.state_bytes, limits.max_state_bytes);
        outcome.find(ProbeReason::StateTooLarge, detail);
    }
    last_reward
}

/// An episode played after another in the same module must match a fresh one.
fn judge_two(sample: &Sample, result: &StepResult, outcome: &mut Outcome) -> Evidence {
    let two = result.parse::<TwoPlayed>().map_err(|detail| result.failure().unwrap_or(detail))?;
    let last_reward = two.second.last().map(|s| s.reward);
    let same = |a: &PlayedStep, b: &PlayedStep| a.observation == b.observation && a.reward == b.reward;
    let differs = two.fresh.iter().zip(&two.second).position(|(a, b)| !same(a, b));
    let detail = match differs {
        Some(at) => format!(
            "after another episode in the same module, call {} of {} shows {:?} where a fresh one shows {:?}",
            at + 1,
            sample.config.split('@').next().unwrap_or(""),
            cut(&two.second[at].observation, 160),
            cut(&two.fresh[at].observation, 160)
        ),
        None if two.fresh.len() != two.second.len() => {
            format!(
                "after another episode in the same module, the episode makes {} calls, a fresh one {}",
                two.second.len(),
                two.fresh.len()
            )
        }
        None => return Ok(last_reward),
    };
    outcome.find(ProbeReason::StateAcrossEpisodes, detail);
    Ok(last_reward)
}

/// A run of one call must not pay out, its answers at the checkpoints must earn nothing, and its
/// state must stay small enough to hold idle after it. Returns the last checkpoint's reward.
fn judge_repeated(
    run: &str,
    (calls, answer, at): (&[String], &str, &[usize]),
    result: &StepResult,
    limits: &Limits,
    outcome: &mut Outcome,
) -> Evidence {
    let repeated = result.parse::<Repeated>().map_err(|detail| result.failure().unwrap_or(detail))?;
    let made = repeated.steps.len();
    let ended = repeated.steps.last().is_some_and(|s| s.done);
    let expected: Vec<usize> = at.iter().copied().filter(|&k| k < made || (k == made && !ended)).collect();
    let given: Vec<usize> = repeated.answers.iter().map(|c| c.at).collect();
    let calls_answer = answers(calls, &repeated.steps);
    let answers_answer = repeated.answers.iter().all(|c| c.steps.len() <= 1 && c.steps.iter().all(|s| s.action == answer));
    if !calls_answer || given != expected || !answers_answer {
        outcome.find(ProbeReason::Tampered, format!("the evidence of {run} does not answer the calls sent"));
        return Ok(None);
    }
    for checkpoint in &repeated.answers {
        check_rewards(&checkpoint.steps, outcome);
    }
    let paid = repeated.steps.iter().position(rewarded).map(|i| (i + 1, &repeated.steps[i]));
    let paid = paid.or_else(|| repeated.answers.iter().find_map(|c| c.steps.iter().find(|s| rewarded(s)).map(|s| (c.at, s))));
    if let Some((after, step)) = paid {
        let detail =
            format!("{run}: after {after} calls, {} earned reward 1: {:?}", cut(&step.action, 160), cut(&step.observation, 160));
        outcome.find(ProbeReason::RewardHackable, detail);
    }
    if repeated.state_bytes > limits.max_state_bytes {
        let detail = format!(
            "{run}: after {made} calls its state pickles to {} bytes, over the cap of {}",
            repeated.state_bytes, limits.max_state_bytes
        );
        outcome.find(ProbeReason::StateTooLarge, detail);
    }
    Ok(repeated.answers.last().and_then(|c| c.steps.last()).map(|s| s.reward))
}

/// A documented tool must answer within the per-call budget.
/// Returns the call's reward, when it gave one.
fn judge_timing(tool: &str, sent: &str, result: &StepResult, limits: &Limits, outcome: &mut Outcome) -> Option<f64> {
    let played = result.parse::<Played>().ok();
    let reward = played.as_ref().and_then(|p| p.steps.last()).map(|s| s.reward);
    if let Some(played) = &played
        && !answers(std::slice::from_ref(&sent.to_string()), &played.steps)
    {
        outcome.find(ProbeReason::Tampered, format!("the timed call of {tool} does not answer the action sent"));
        return reward;
    }
    let slow = result.verdict == Verdict::Timeout || result.duration_ms > limits.tool_budget_ms;
    if slow {
        let took = if result.verdict == Verdict::Timeout {
            "ran out of time".to_string()
        } else {
            format!("took {} ms", result.duration_ms)
        };
        outcome.find(ProbeReason::SlowTool, format!("one call of {tool} {took}; the budget is {} ms", limits.tool_budget_ms));
    }
    reward
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(trajectory: &[(&str, &str)]) -> OracleRun {
        OracleRun {
            passed: true,
            message: "reward=1".into(),
            oracle_calls: trajectory.len() as i64,
            traced_calls: trajectory.len() as i64,
            env_calls: None,
            reward: Some(1.0),
            refused: vec![],
            error: None,
            tool_calls: BTreeMap::new(),
            trajectory: trajectory.iter().map(|(a, o)| (a.to_string(), o.to_string())).collect(),
        }
    }

    fn played(sent: &[String], observations: &[(&str, f64, bool)]) -> StepResult {
        let steps: Vec<Value> = sent
            .iter()
            .zip(observations)
            .map(|(a, (o, r, d))| json!({"action": a, "observation": o, "reward": r, "done": d, "refused": false}))
            .collect();
        StepResult { value: Ok(json!({"steps": steps})), verdict: Verdict::Ok, duration_ms: 1 }
    }

    const DOCS: &str = "def Observe():\n    r\"\"\"\n    Args:\n        None\n    \"\"\"\n\ndef Done(answer: int):\n    r\"\"\"\n    Args:\n        answer (int): the answer.\n    \"\"\"";

    fn subject<'a>(sample: Sample<'a>) -> Subject<'a> {
        Subject {
            source: EnvSource { code: "", name: "E" },
            seed: 1,
            task_text: "Find the total.",
            tools: vec!["Observe".into(), "Done".into()],
            schemas: crate::tools::parse_tool_docs(DOCS),
            samples: vec![sample],
        }
    }

    const LIMITS: Limits = Limits { step_cap: 8, max_state_bytes: 1000, tool_budget_ms: 1000 };

    #[test]
    fn the_values_a_parameters_documentation_names_are_tried() {
        assert_eq!(documented_values(r#""exam" (the default) or "practice"."#), [json!("exam"), json!("practice")]);
        assert_eq!(documented_values("`fast` or 'slow'"), [json!("slow"), json!("fast")]);
        assert!(documented_values("its position, from 0.").is_empty());
    }

    #[test]
    fn a_reward_for_any_wrong_answer_names_its_policy_and_lenient_ones_are_recorded() {
        let oracle = run(&[
            (r#"{"name": "Observe", "parameters": {}}"#, "3 values"),
            (r#"{"name": "Done", "parameters": {"answer": 606}}"#, "reward=1"),
        ]);
        let subject = subject(Sample { config: "E@{}", options: "{}", right: json!(606), answer: "606", run: &oracle });
        let battery = Battery::plan(&subject, &LIMITS);
        let results: Vec<StepResult> = battery
            .purposes
            .iter()
            .map(|p| match p {
                Purpose::Episode { sent, policy, .. } if policy == "answer [606]" || policy == "answer 606.0" => {
                    played(sent, &[("reward=1", 1.0, true)])
                }
                Purpose::Episode { sent, .. } => played(sent, &vec![("reward=0", 0.0, false); sent.len()]),
                _ => StepResult { value: Err("not run".into()), verdict: Verdict::Error, duration_ms: 1 },
            })
            .collect();
        let outcome = battery.judge(&subject, &results, &LIMITS);
        assert_eq!(outcome.findings.len(), 2, "{outcome:?}");
        assert!(outcome.findings.iter().any(|f| f.reason == ProbeReason::RewardHackable && f.detail.contains("answer [606]")));
        assert!(outcome.findings.iter().any(|f| f.reason == ProbeReason::NotServable), "a replay that did not run fails closed");
        assert_eq!(outcome.lenient, ["Done accepts the same number as another type"]);
    }

    #[test]
    fn evidence_that_does_not_answer_what_was_sent_is_tampering() {
        let sent = vec!["a".to_string(), "b".to_string()];
        let step = |a: &str, done| PlayedStep { action: a.into(), observation: String::new(), reward: 0.0, done, refused: false };
        assert!(answers(&sent, &[step("a", false), step("b", false)]));
        assert!(answers(&sent, &[step("a", true)]), "an episode that ended");
        assert!(!answers(&sent, &[step("a", false)]), "a step left out");
        assert!(!answers(&sent, &[step("a", false), step("c", false)]), "another action");
    }

    #[test]
    fn an_answer_shown_before_any_honest_call_shows_it_leaks() {
        let oracle = run(&[
            (r#"{"name": "Observe", "parameters": {}}"#, "3 values"),
            (r#"{"name": "Observe", "parameters": {}}"#, "3 values"),
            (r#"{"name": "Done", "parameters": {"answer": 36837}}"#, "reward=1"),
        ]);
        let subject = subject(Sample { config: "E@{}", options: "{}", right: json!(36837), answer: "36837", run: &oracle });
        let battery = Battery::plan(&subject, &LIMITS);
        let mut outcome = Outcome::default();
        let observed = Observed { observations: vec!["3 values".into(), "cached: 36,837".into()] };
        battery.judge_prefixes(&subject, 0, &observed, &mut outcome);
        assert_eq!(outcome.findings[0].reason, ProbeReason::AnswerLeaked);
        assert!(outcome.findings[0].detail.contains("after 1 of the oracle's calls"), "{:?}", outcome.findings);
    }

    #[test]
    fn served_policies_sweeps_and_rewards_other_than_0_or_1() {
        let wide = Limits { step_cap: 256, ..LIMITS };
        assert_eq!(sweep_length(r#"{"n": 120, "seed": 5000}"#, &wide), 121, "the largest count the configuration names");
        assert_eq!(sweep_length(r#"{"n": 3}"#, &wide), REPEATS);
        assert_eq!(sweep_length(r#"{"n": 3}"#, &LIMITS), 7, "within the step cap");
        let oracle = run(&[
            (r#"{"name": "Observe", "parameters": {}}"#, "3 values"),
            (r#"{"name": "Done", "parameters": {"answer": 606}}"#, "reward=1"),
        ]);
        let subject = subject(Sample { config: "E@{}", options: "{}", right: json!(606), answer: "606", run: &oracle });
        let battery = Battery::plan(&subject, &LIMITS);
        let served = battery.work.steps.iter().filter(|s| matches!(s, Step::Episode { serve: Serving::Restored, .. })).count();
        let specials = specials(&json!(606)).len();
        assert!(served > specials / 2, "answers from reset and the oracle's way to a wrong answer are served: {served}");
        let paid = [PlayedStep { action: "{}".into(), observation: "ok".into(), reward: 0.25, done: false, refused: false }];
        let mut outcome = Outcome::default();
        check_rewards(&paid, &mut outcome);
        assert_eq!(outcome.findings[0].reason, ProbeReason::RewardInconsistent, "a reward is 0 or 1");
        assert!(rewarded(&paid[0]), "any reward above 0 pays");
    }

    #[test]
    fn the_first_sample_is_also_played_where_serve_plays_every_session_and_the_others_are_forked() {
        let oracle = run(&[
            (r#"{"name": "Observe", "parameters": {}}"#, "3 values"),
            (r#"{"name": "Done", "parameters": {"answer": 606}}"#, "reward=1"),
        ]);
        let mut subject =
            subject(Sample { config: "E@{\"a\": 1}", options: "{}", right: json!(606), answer: "606", run: &oracle });
        subject.samples.push(Sample { config: "E@{\"a\": 2}", options: "{}", right: json!(606), answer: "606", run: &oracle });
        let battery = Battery::plan(&subject, &LIMITS);
        let live: Vec<&Step> =
            battery.work.steps.iter().filter(|s| matches!(s, Step::Episode { serve: Serving::Live, .. })).collect();
        let [Step::Episode { config: 0, prefix: (_, 0), actions, .. }] = live[..] else {
            panic!("the oracle's way to a wrong answer on the first sample, held live: {live:?}");
        };
        assert_eq!(actions.len(), 2, "{actions:?}");
        let served_on = |config| {
            let steps = battery.work.steps.iter();
            steps.filter(|s| matches!(s, Step::Episode { serve: Serving::Restored, config: c, .. } if *c == config)).count()
        };
        assert!(served_on(0) > 1, "answers from reset are served on the first sample");
        assert_eq!(served_on(1), 1, "only the oracle's way to a wrong answer on the others");
    }

    #[test]
    fn sample_sizes_take_at_least_three_and_a_tenth() {
        assert_eq!(sample_size(2, 3, 0.1), 2);
        assert_eq!(sample_size(20, 3, 0.1), 3);
        assert_eq!(sample_size(45, 3, 0.1), 5);
    }
}
