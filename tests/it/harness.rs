//! The environment harness on one of our sample environments: tools and their agent-facing docs,
//! the module's own self-tests, reference answers, oracle runs with per-tool counts and trajectory,
//! candidate solvers, and a step that a limit ends without losing the steps after it.

use crate::util::{repo, sandbox};
use codegym::harness::{
    self, ContractCheck, EnvSource, EnvWork, OracleRun, ProbeFindings, RefAnswer, SelfTest, Step, ToolDescription,
};
use codegym::sandbox::{ExecMode, Limits, Verdict};
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

#[test]
fn steps_on_one_environment_return_typed_results() {
    let (name, code) = sample_env();
    assert_eq!(name, "MaxSubarraySumEnv");
    let steps = vec![
        Step::Describe,
        Step::SelfTest,
        Step::RefAnswer { config: CONFIG.into() },
        Step::Oracle { config: CONFIG.into(), solver: None },
        Step::Oracle { config: CONFIG.into(), solver: Some(WRONG_SOLVER.into()) },
        Step::Oracle { config: CONFIG.into(), solver: Some(ENDLESS_SOLVER.into()) },
        Step::RefAnswer { config: "OtherEnv@{}".into() },
        Step::Contract,
    ];
    let work = [EnvWork { env: EnvSource { code: &code, name: &name }, steps, seed: 1 }];
    let limits = Limits { timeout: Duration::from_millis(1500), ..Limits::default() };
    let module_timeout = Duration::from_secs(5);
    let results = harness::run_steps(&sandbox(), &work, limits, module_timeout, ExecMode::default(), 1, None).unwrap().remove(0);
    assert_eq!(results.len(), 8);

    let tools: ToolDescription = results[0].parse().unwrap();
    assert_eq!(tools.tools.first().map(String::as_str), Some("Observe"));
    assert!(tools.tools.iter().any(|t| t == "Done"));
    assert!(tools.tool_docs.contains("def Done(answer: int):"), "{}", tools.tool_docs);
    assert!(!tools.tool_docs.contains("Example Output") && !tools.tool_docs.contains("self"), "{}", tools.tool_docs);

    let self_test: SelfTest = results[1].parse().unwrap();
    assert_eq!((self_test.exit_code, self_test.reward_0), (0, 0), "{self_test:?}");
    assert!(self_test.reward_1 >= 2, "{self_test:?}");

    let answer: RefAnswer = results[2].parse().unwrap();
    assert_eq!((answer.answer.as_str(), answer.answer_json.as_deref()), ("23", Some("23")));

    let run: OracleRun = results[3].parse().unwrap();
    assert!(run.passed, "{run:?}");
    assert_eq!(run.oracle_calls, 27, "the released solve_fc_round of this configuration");
    assert_eq!(run.tool_calls.values().sum::<i64>(), run.oracle_calls);
    assert_eq!(run.trajectory.len() as i64, run.oracle_calls);
    assert!(run.trajectory.last().unwrap().1.contains("reward=1"));

    let wrong: OracleRun = results[4].parse().unwrap();
    assert!(!wrong.passed && wrong.oracle_calls == 1, "{wrong:?}");

    assert_eq!(results[5].verdict, Verdict::Timeout, "{:?}", results[5]);
    assert_eq!(results[6].verdict, Verdict::Ok, "the step after a timed-out one still ran");
    assert!(results[6].parse::<RefAnswer>().unwrap_err().contains("from_env_str returned None"), "{:?}", results[6]);

    let contract: ContractCheck = results[7].parse().unwrap();
    assert_eq!((contract.classes, contract.problems), (vec![name.clone()], vec![]));
}

#[test]
fn the_contract_check_names_what_is_missing() {
    let broken = "class BrokenEnv:\n    @staticmethod\n    def from_env_str(s):\n        return None\n    def __init__(self):\n        self.func_mapping = {'Observe': 0, 'Peek': 1}\n    def Observe(self):\n        'Args: none'\n        return ''\n";
    let work = [EnvWork { env: EnvSource { code: broken, name: "BrokenEnv" }, steps: vec![Step::Contract], seed: 0 }];
    let limits = Limits::default();
    let results = harness::run_steps(&sandbox(), &work, limits, limits.timeout, ExecMode::default(), 1, None).unwrap().remove(0);
    let contract: ContractCheck = results[0].parse().unwrap();
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
fn probes_catch_an_environment_that_can_be_gamed() {
    let config = r#"LeakyEnv@{"values": [4, 5]}"#;
    let steps = vec![Step::Probe { config: config.into(), task_text: "Sum the values.".into(), tool_docs: String::new() }];
    let work = [EnvWork { env: EnvSource { code: GAMEABLE, name: "LeakyEnv" }, steps, seed: 3 }];
    let limits = Limits::default();
    let results = harness::run_steps(&sandbox(), &work, limits, limits.timeout, ExecMode::default(), 1, None).unwrap().remove(0);
    let probe: ProbeFindings = results[0].parse().unwrap();
    let reasons: Vec<&str> = probe.findings.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "wrong_answer_rewarded",
            "empty_answer_rewarded",
            "answer_in_observe",
            "oracle_reads_state",
            "nondeterministic_trajectory"
        ],
        "{probe:?}"
    );
}

#[test]
fn probes_find_nothing_on_an_honest_environment() {
    let (name, code) = sample_env();
    let steps = vec![Step::Probe {
        config: CONFIG.into(),
        task_text: "Find the largest sum of a contiguous run.".into(),
        tool_docs: String::new(),
    }];
    let work = [EnvWork { env: EnvSource { code: &code, name: &name }, steps, seed: 3 }];
    let limits = Limits::default();
    let results = harness::run_steps(&sandbox(), &work, limits, limits.timeout, ExecMode::default(), 1, None).unwrap().remove(0);
    let probe: ProbeFindings = results[0].parse().unwrap();
    assert!(probe.findings.is_empty(), "{probe:?}");
}

#[test]
fn the_worked_example_of_the_environment_prompt_keeps_the_contract_it_teaches() {
    use codegym::harness::ModuleChecks;
    let code = codegym::synthesis::prompts::example_environment();
    let work = [EnvWork { env: EnvSource { code, name: "MaxGainEnv" }, steps: ModuleChecks::STEPS.to_vec(), seed: 1 }];
    let limits = Limits::default();
    let results = harness::run_steps(&sandbox(), &work, limits, limits.timeout, ExecMode::default(), 1, None).unwrap().remove(0);
    let checks = ModuleChecks::from_results(&results);
    assert_eq!(checks.failure(), None, "{checks:?}");
    let tools = checks.description.unwrap().tools;
    assert!(tools.len() >= 6 && tools.contains(&"Observe".to_string()) && tools.contains(&"Done".to_string()), "{tools:?}");
}
