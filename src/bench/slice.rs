//! A generated slice at 1/100 of the paper's shape for `bench stages`: 131 environments (each
//! folding a hidden list with its own operation through five tools), 862 configurations (lists of
//! 4 to 25 values, so 9 to 51 oracle calls) and 10 oracle candidates per environment (eight sound
//! ones written eight ways, one off by one, one that reads the hidden state). Deterministic.

use crate::dataset::{Dataset, ShardSelection, Table};
use crate::tables::{EnvironmentRow, OracleCandidateRow};
use anyhow::Result;
use std::path::Path;

/// The paper's release, and this slice's share of it.
pub const PAPER_ENVS: usize = 13_116;
pub const PAPER_CONFIGS: usize = 86_165;
pub const SCALE: f64 = 100.0;
const ENVS: usize = 131;
const CONFIGS: usize = 862;
pub const CANDIDATES: usize = 10;

/// The folding operations: (name, Python expression of `a` and `b`).
pub(super) const OPERATIONS: [(&str, &str); 5] =
    [("Sum", "a + b"), ("Max", "max(a, b)"), ("Min", "min(a, b)"), ("Xor", "a ^ b"), ("Spread", "abs(a - b) + 1")];

const ENV: &str = r#"import gymnasium
import json
from functools import reduce


class {name}(gymnasium.Env):
    def __init__(self, env_str=None):
        super().__init__()
        self.func_mapping = {"Observe": 0, "Count": 1, "GetValue": 2, "Combine": 3, "Done": 4}
        if env_str:
            self.reset(json.loads(env_str.split("@", 1)[1]))

    @staticmethod
    def from_env_str(env_str):
        return {name}(env_str) if env_str.startswith("{name}@") else None

    def reset(self, options={}):
        self.values = list(options.get("values", []))
        self._reward, self._done, self.step_count = 0, False, 0

    def get_ref_answer(self):
        return reduce(lambda a, b: {operation}, self.values)

    def step(self, action):
        self.step_count += 1
        try:
            call = json.loads(action)
            if call["name"] not in self.func_mapping:
                raise ValueError("unknown action %r" % call["name"])
            return True, getattr(self, call["name"])(**call.get("parameters", {}))
        except Exception as exc:
            return True, "Error: %s" % exc

    def Observe(self):
        """How many values are hidden.

        Args:
            None
        Returns:
            str: a sentence giving the count.
        Example Output:
            "4 values are hidden."
        """
        return "%d values are hidden." % len(self.values)

    def Count(self):
        """The number of hidden values.

        Args:
            None
        Returns:
            str: the count.
        Example Output:
            "4"
        """
        return str(len(self.values))

    def GetValue(self, index):
        """One hidden value.

        Args:
            index (int): its position, from 0.
        Returns:
            str: the value.
        Example Output:
            "12"
        """
        return str(self.values[index])

    def Combine(self, a, b):
        """Combines two numbers with this environment's operation.

        Args:
            a (int): a number.
            b (int): another number.
        Returns:
            str: the result.
        Example Output:
            "7"
        """
        return str({operation})

    def Done(self, answer):
        """Submits the values folded with Combine, left to right.

        Args:
            answer (int): the result.
        Returns:
            str: the verdict, with reward=1 when the answer is right.
        Example Output:
            "Answer 7: reward=1"
        """
        self._done = True
        self._reward = 1 if answer == self.get_ref_answer() else 0
        return "Answer %s: reward=%d" % (answer, self._reward)

    def solve(self):
        call = lambda name, **p: self.step(json.dumps({"name": name, "parameters": p}))[1]
        total = int(call("GetValue", index=0))
        for i in range(1, int(call("Count"))):
            total = int(call("Combine", a=total, b=int(call("GetValue", index=i))))
        return call("Done", answer=total)


if __name__ == "__main__":
    for values in ([3, 1, 4], [1, 5, 9, 2]):
        print({name}.from_env_str("{name}@" + json.dumps({"values": values})).solve())
"#;

/// Candidate solvers: eight sound ones, one off by one, one that reads the hidden state.
pub(super) const SOLVERS: [&str; CANDIDATES] = [
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    total = int(call('GetValue', index=0))\n    for i in range(1, int(call('Count'))):\n        total = int(call('Combine', a=total, b=int(call('GetValue', index=i))))\n    return call('Done', answer=total)\n",
    "import json\ndef solve(self):\n    def call(name, **p):\n        return self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    n, i = int(call('Count')), 1\n    total = int(call('GetValue', index=0))\n    while i < n:\n        total = int(call('Combine', a=total, b=int(call('GetValue', index=i))))\n        i += 1\n    return call('Done', answer=total)\n",
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    values = [int(call('GetValue', index=i)) for i in range(int(call('Count')))]\n    total = values[0]\n    for value in values[1:]:\n        total = int(call('Combine', a=total, b=value))\n    return call('Done', answer=total)\n",
    "import json\nfrom functools import reduce\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    values = [int(call('GetValue', index=i)) for i in range(int(call('Count')))]\n    return call('Done', answer=reduce(lambda a, b: int(call('Combine', a=a, b=b)), values))\n",
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    def fold(i, acc, n):\n        return acc if i == n else fold(i + 1, int(call('Combine', a=acc, b=int(call('GetValue', index=i)))), n)\n    n = int(call('Count'))\n    return call('Done', answer=fold(1, int(call('GetValue', index=0)), n))\n",
    "import json\ndef solve(self):\n    step = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))\n    count = int(step('Count')[1])\n    acc = None\n    for i in range(count):\n        value = int(step('GetValue', index=i)[1])\n        acc = value if acc is None else int(step('Combine', a=acc, b=value)[1])\n    return step('Done', answer=acc)[1]\n",
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    call('Observe')\n    total = int(call('GetValue', index=0))\n    for i in range(1, int(call('Count'))):\n        total = int(call('Combine', a=total, b=int(call('GetValue', index=i))))\n    return call('Done', answer=total)\n",
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    n = int(call('Count'))\n    values = {}\n    for i in reversed(range(n)):\n        values[i] = int(call('GetValue', index=i))\n    total = values[0]\n    for i in range(1, n):\n        total = int(call('Combine', a=total, b=values[i]))\n    return call('Done', answer=total)\n",
    "import json\ndef solve(self):\n    call = lambda name, **p: self.step(json.dumps({'name': name, 'parameters': p}))[1]\n    total = int(call('GetValue', index=0))\n    for i in range(1, int(call('Count'))):\n        total = int(call('Combine', a=total, b=int(call('GetValue', index=i))))\n    return call('Done', answer=total + 1)\n",
    "import json\ndef solve(self):\n    from functools import reduce\n    return self.step(json.dumps({'name': 'Done', 'parameters': {'answer': len(self.values)}}))[1]\n",
];

/// The slice, imported into a dataset with its candidates.
pub struct Slice {
    data: Dataset,
}

impl Slice {
    pub fn data(&self) -> &Dataset {
        &self.data
    }
}

/// A deterministic pseudo-random number from `seed` (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The module of an environment named `name` folding with `expression` (of `a` and `b`).
pub(super) fn environment(name: &str, expression: &str) -> String {
    ENV.replace("{name}", name).replace("{operation}", expression)
}

/// Writes a release of `envs` environments with `configs` configurations in all (spread evenly)
/// under `dir`: the paths of its environment and task tables.
pub(super) fn release(dir: &Path, envs: usize, configs: usize) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (mut env_rows, mut tasks) = (String::new(), String::new());
    for env in 0..envs {
        let (operation, expression) = OPERATIONS[env % OPERATIONS.len()];
        let name = format!("Slice{env:05}{operation}Env");
        let source = format!("slice_{env:05}");
        let row = serde_json::json!({ "source": source, "env_name": name, "env_code": environment(&name, expression) });
        env_rows.push_str(&format!("{row}\n"));
        for config in 0..configs / envs + usize::from(env < configs % envs) {
            let seed = mix((env * 1000 + config) as u64);
            let values: Vec<u64> = (0..4 + seed % 22).map(|i| mix(seed ^ i) % 1000).collect();
            let options = serde_json::json!({ "values": values });
            tasks.push_str(&format!("{}\n", serde_json::json!({ "ability": format!("codegym_v1@{source}__{name}@{options}") })));
        }
    }
    std::fs::create_dir_all(dir)?;
    let (envs_path, tasks_path) = (dir.join("envs.jsonl"), dir.join("tasks.jsonl"));
    std::fs::write(&envs_path, env_rows)?;
    std::fs::write(&tasks_path, tasks)?;
    Ok((envs_path, tasks_path))
}

/// Writes the slice as a release under `dir`, imports it into `dir/data` and adds its candidates.
pub fn generate(dir: &Path) -> Result<Slice> {
    let (envs_path, tasks_path) = release(dir, ENVS, CONFIGS)?;
    let data = super::verify::dataset_in(&dir.join("data"))?;
    crate::import_codegym::import(
        &crate::import_codegym::Release::new(&envs_path, &tasks_path),
        &data,
        "bench-slice",
        ShardSelection::default(),
    )?;
    let imported: Vec<EnvironmentRow> = data.read_table(Table::Environments)?;
    let candidates: Vec<OracleCandidateRow> = imported
        .iter()
        .flat_map(|env| {
            SOLVERS.iter().enumerate().map(|(i, solver)| OracleCandidateRow {
                env_id: env.env_id.clone(),
                candidate: i as i32 + 1,
                solver: solver.to_string(),
                origin: Some("bench slice".into()),
                smoke_test: None,
            })
        })
        .collect();
    data.upsert(Table::OracleCandidates, candidates, |c| data.shard_of(&c.env_id))?;
    Ok(Slice { data })
}
