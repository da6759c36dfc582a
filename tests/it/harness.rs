//! The environment harness on one of our sample environments: tools and their agent-facing docs,
//! the module's own self-tests, reference answers, oracles played as agents with per-tool counts
//! and trajectory, candidate solvers, and a step that a limit ends without losing the steps after
//! it.

use crate::util::{repo, sandbox};
use codegym::harness::{self, AgentCell, Budgets, EnvSource, EnvWork, ModuleChecks, OracleRun, ProbeEvidence, RefAnswer, Step};
use codegym::sandbox::{ExecMode, Limits, Variant, Verdict};
use std::time::Duration;

fn sample_env() -> (String, String) {
    let line = std::fs::read_to_string(repo().join("data-samples/codegym/envs.jsonl")).unwrap();
    let env: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    (env["env_name"].as_str().unwrap().to_string(), env["env_code"].as_str().unwrap().to_string())
}

const CONFIG: &str = r#"MaxSubarraySumEnv@{"nums": [18, 5, -11, -6, -2, -13, 5, 13, -3]}"#;
const WRONG_SOLVER: &str =
    "import json\ndef solve(self):\n    return self.step(json.dumps({'name': 'Done', 'parameters': {'answer': 0}}))[1]\n";
const ENDLESS_SOLVER: &str = "def solve(self):\n    while True:\n        pass\n";

fn run(
    code: &str,
    name: &str,
    steps: Vec<Step>,
    configs: Vec<&str>,
    solvers: Vec<&str>,
    budgets: Budgets,
) -> Vec<harness::StepResult> {
    let work = [EnvWork { steps, configs, solvers, ..EnvWork::new(EnvSource { code, name }, 1) }];
    harness::run_steps(&sandbox(), &work, &budgets, ExecMode::default(), 1, None).unwrap().remove(0)
}

#[test]
fn steps_on_one_environment_return_typed_results() {
    let (name, code) = sample_env();
    assert_eq!(name, "MaxSubarraySumEnv");
    let steps = vec![Step::Module, Step::RefAnswer { config: 0 }, Step::SmokeTest { solver: 0 }, Step::RefAnswer { config: 1 }];
    let budgets = Budgets::method(Limits { timeout: Duration::from_millis(1500), ..Limits::default() });
    let results = run(&code, &name, steps, vec![CONFIG, "OtherEnv@{}"], vec![ENDLESS_SOLVER], budgets);
    assert_eq!(results.len(), 4);

    let checks = ModuleChecks::from_result(&results[0]);
    assert_eq!(checks.failure(), None, "{checks:?}");
    let tools = checks.description.unwrap();
    assert_eq!(tools.tools.first().map(String::as_str), Some("Observe"));
    assert!(tools.tools.iter().any(|t| t == "Done"));
    assert!(tools.tool_docs.contains("def Done(answer: int):"), "{}", tools.tool_docs);
    assert!(!tools.tool_docs.contains("Example Output") && !tools.tool_docs.contains("self"), "{}", tools.tool_docs);
    let self_test = checks.self_test.unwrap();
    assert_eq!((self_test.exit_code, self_test.reward_0), (0, 0), "{self_test:?}");
    assert!(self_test.reward_1 >= 2, "{self_test:?}");
    assert_eq!(checks.contract.unwrap().classes, vec![name.clone()]);

    let answer: RefAnswer = results[1].parse().unwrap();
    assert_eq!((answer.answer.as_str(), answer.answer_json.as_deref()), ("23", Some("23")));

    assert_eq!(results[2].verdict, Verdict::Timeout, "{:?}", results[2]);
    assert_eq!(results[3].verdict, Verdict::Ok, "the step after a timed-out one still ran");
    assert!(results[3].parse::<RefAnswer>().unwrap_err().contains("from_env_str returned None"), "{:?}", results[3]);
}

/// Oracles played as agents: the environment's own `solve` and candidates, each call counted by
/// the host per tool with its trajectory; a wrong candidate fails, an endless one times out.
#[test]
fn oracles_are_played_as_agents_with_host_counted_calls() {
    let (name, code) = sample_env();
    let cell = |solver| AgentCell {
        env: EnvSource { code: &code, name: &name },
        config: CONFIG,
        solver,
        tools: None,
        seed: 1,
        variant: Variant::Primary,
    };
    let cells = [cell(None), cell(Some(WRONG_SOLVER)), cell(Some(ENDLESS_SOLVER))];
    let limits = Limits { timeout: Duration::from_millis(1500), ..Limits::default() };
    let results = harness::run_agent_oracles(&sandbox(), &cells, limits, 1).unwrap();

    let run: &OracleRun = results[0].run.as_ref().unwrap();
    assert!(run.passed && run.contradiction().is_none(), "{run:?}");
    assert_eq!(run.oracle_calls, 27, "the released solve_fc_round of this configuration");
    assert_eq!(run.tool_calls.values().sum::<i64>(), run.oracle_calls);
    assert_eq!(run.trajectory.len() as i64, run.oracle_calls);
    assert!(run.trajectory.last().unwrap().1.contains("reward=1"));

    let wrong = results[1].run.as_ref().unwrap();
    assert!(!wrong.passed && wrong.oracle_calls == 1, "{wrong:?}");
    assert_eq!(results[2].verdict, Verdict::Timeout, "{:?}", results[2]);
}

#[test]
fn the_contract_check_names_what_is_missing() {
    let broken = "class BrokenEnv:\n    @staticmethod\n    def from_env_str(s):\n        return None\n    def __init__(self):\n        self.func_mapping = {'Observe': 0, 'Peek': 1}\n    def Observe(self):\n        'Args: none'\n        return ''\n";
    let results = run(broken, "BrokenEnv", vec![Step::Module], vec![], vec![], Budgets::method(Limits::default()));
    let contract = ModuleChecks::from_result(&results[0]).contract.unwrap();
    let problems = contract.problems.join("\n");
    for expected in [
        "missing method reset",
        "missing method step",
        "func_mapping has no Done",
        "docstring of Observe lacks Returns, Example",
        "action Peek has no method",
    ] {
        assert!(problems.contains(expected), "{expected:?} not in\n{problems}");
    }
}

/// An environment with every flaw the probes look for: Done rewards anything, Observe shows the
/// answer, the oracle reads the hidden state and draws random calls.
const GAMEABLE: &str = r#"
import json, random
import gymnasium

class LeakyEnv(gymnasium.Env):
    def __init__(self, env_str=None):
        self.func_mapping = {"Observe": 0, "Peek": 1, "Done": 2}
        self.reset(json.loads(env_str.split("@", 1)[1]) if env_str else {})

    @staticmethod
    def from_env_str(env_str):
        return LeakyEnv(env_str) if env_str.startswith("LeakyEnv@") else None

    def reset(self, options={}):
        self.values = options.get("values", [])
        self._reward, self._done, self.step_count = 0, False, 0

    def get_ref_answer(self):
        return sum(self.values) * 1000 + 7

    def step(self, action):
        self.step_count += 1
        call = json.loads(action)
        return True, getattr(self, call["name"])(**call["parameters"])

    def Observe(self):
        return "the answer is %d" % self.get_ref_answer()

    def Peek(self, index):
        return str(self.values[index])

    def Done(self, answer):
        self._reward, self._done = 1, True
        return "reward=1"

    def solve(self):
        for _ in range(random.randint(1, 5)):
            self.step(json.dumps({"name": "Peek", "parameters": {"index": 0}}))
        return self.step(json.dumps({"name": "Done", "parameters": {"answer": self.get_ref_answer()}}))[1]
"#;

#[test]
fn the_probe_gathers_the_evidence_of_an_environment_that_can_be_gamed() {
    let config = r#"LeakyEnv@{"values": [4, 5]}"#;
    let results =
        run(GAMEABLE, "LeakyEnv", vec![Step::Probe { config: 0 }], vec![config], vec![], Budgets::method(Limits::default()));
    let evidence: ProbeEvidence = results[0].parse().unwrap();
    assert!(evidence.reset.iter().all(|s| s.rewarded()), "Done rewards anything: {evidence:?}");
    assert!(evidence.reset.iter().any(|s| s.answer.as_deref() == Some("\"\"")), "the empty answer is tried: {evidence:?}");
    assert!(evidence.reset.len() >= 5, "several wrong answers of the right type: {evidence:?}");
    assert_eq!(evidence.observe.as_deref(), Some("the answer is 9007"));
    assert_eq!(evidence.reads, ["get_ref_answer"], "the oracle read the hidden state through self");
}

#[test]
fn the_probe_submits_wrong_answers_where_the_oracle_answered() {
    let (name, code) = sample_env();
    let results = run(&code, &name, vec![Step::Probe { config: 0 }], vec![CONFIG], vec![], Budgets::method(Limits::default()));
    let evidence: ProbeEvidence = results[0].parse().unwrap();
    assert_eq!(evidence.copy, "deepcopy", "{evidence:?}");
    assert!(evidence.final_right.as_ref().unwrap().rewarded(), "the right answer earns 1 in that state: {evidence:?}");
    assert!(!evidence.final_.is_empty() && evidence.final_.iter().all(|s| !s.rewarded()), "{evidence:?}");
    assert!(evidence.reset.iter().all(|s| !s.rewarded()) && evidence.reads.is_empty(), "{evidence:?}");
}

#[test]
fn the_worked_example_of_the_environment_prompt_keeps_the_contract_it_teaches() {
    let code = codegym::synthesis::prompts::example_environment();
    let results = run(code, "MaxGainEnv", vec![Step::Module], vec![], vec![], Budgets::method(Limits::default()));
    let checks = ModuleChecks::from_result(&results[0]);
    assert_eq!(checks.failure(), None, "{checks:?}");
    let tools = checks.description.unwrap().tools;
    assert!(tools.len() >= 6 && tools.contains(&"Observe".to_string()) && tools.contains(&"Done".to_string()), "{tools:?}");
}
