//! The environment harness on one of our sample environments: tools and their agent-facing docs,
//! the module's own self-tests, reference answers, oracle runs with per-tool counts and trajectory,
//! candidate solvers, and a step that a limit ends without losing the steps after it.

use crate::util::{repo, sandbox};
use codegym::harness::{self, ContractCheck, EnvSource, EnvWork, OracleRun, RefAnswer, SelfTest, Step, ToolDescription};
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
