#!/usr/bin/env python3
"""Build the codegym-samples release (envs.jsonl, tasks.jsonl) from the modules in envs/.

Standard library only. Run from anywhere:  python3 data-samples/codegym/make_release.py
Output is deterministic: every configuration is hand-written or drawn from a seeded random.Random.
"""
import importlib.util
import inspect
import json
import os
import random
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the sample folder

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_DIR = os.path.join(HERE, "envs")
STUB_DIR = os.path.join(HERE, "stub")
DATA_SOURCE = "codegym-samples"
CALL_CAP = 256

STUB_SOURCE = (
    '"""Minimal stand-in for gymnasium: the environments only subclass gymnasium.Env."""\n'
    "\n"
    "\n"
    "class Env:\n"
    "    def __init__(self, *args, **kwargs):\n"
    "        pass\n"
)

INSTRUCTIONS = (
    "Answer the question below by calling the tools described in the system message, one call per turn. "
    "Each call returns a text observation. The data you need is hidden behind the tools, so read it through "
    "them instead of guessing. When you are confident, call Done with your answer: Done can be called only "
    "once and it ends the episode."
)

# ---------------------------------------------------------------- task configurations


def configs_max_subarray():
    rng = random.Random(1101)
    out = []
    for size in (2, 3, 5, 9, 14, 22, 35, 55):
        out.append({"nums": [rng.randint(-20, 20) for _ in range(size)]})
    out[2] = {"nums": [-rng.randint(1, 30) for _ in range(5)]}  # every value negative
    return out


def _random_brackets(rng, pairs):
    openers, closers = "([{", ")]}"
    text, stack, left = [], [], pairs
    while left or stack:
        if left and (not stack or rng.random() < 0.55):
            k = rng.randrange(3)
            stack.append(k)
            text.append(openers[k])
            left -= 1
        else:
            text.append(closers[stack.pop()])
    return "".join(text)


def configs_balanced_brackets():
    rng = random.Random(2202)
    out = [
        {"text": "(]"},
        {"text": "()"},
        {"text": "{[]}(("},
        {"text": _random_brackets(rng, 6)},
        {"text": _random_brackets(rng, 10)},
    ]
    broken = list(_random_brackets(rng, 15))
    broken[21] = {"(": "]", "[": "}", "{": ")", ")": "]", "]": "}", "}": ")"}[broken[21]]
    out.append({"text": "".join(broken)})
    out.append({"text": _random_brackets(rng, 20)})
    out.append({"text": _random_brackets(rng, 28)})
    return out


def configs_grid_shortest_path():
    return [
        {"grid": [[0, 0], [0, 0]], "start": [0, 0], "target": [1, 1]},
        {"grid": [[0, 1, 0], [0, 1, 0], [0, 0, 0]], "start": [0, 0], "target": [0, 2]},
        # no path: the target sits behind a full wall column
        {"grid": [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0]], "start": [0, 0], "target": [2, 3]},
        {"grid": [[0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], "start": [0, 0], "target": [3, 0]},
        # no path: the target is boxed in by walls
        {"grid": [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0]],
         "start": [0, 0], "target": [2, 2]},
        {"grid": [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 0, 1, 0], [0, 0, 0, 0, 0]],
         "start": [2, 0], "target": [4, 0]},
        {"grid": [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
         "start": [0, 0], "target": [3, 4]},
        # no path: a diagonal wall splits the grid
        {"grid": [[0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]],
         "start": [0, 0], "target": [3, 4]},
    ]


def configs_merge_intervals():
    rng = random.Random(4404)
    out = []
    for size in (2, 3, 6, 10, 16, 24, 34, 46):
        intervals = []
        for _ in range(size):
            lo = rng.randint(0, 3 * size)
            intervals.append([lo, lo + rng.randint(0, 4)])
        out.append({"intervals": intervals})
    return out


def configs_coin_change_ways():
    return [
        {"coins": [2], "amount": 3},
        {"coins": [1, 2, 5], "amount": 5},
        {"coins": [3, 7], "amount": 20},
        {"coins": [1, 2, 5], "amount": 12},
        {"coins": [2, 5, 10], "amount": 25},
        {"coins": [1, 5, 10, 25], "amount": 30},
        {"coins": [3, 4, 9], "amount": 40},
        {"coins": [1, 2, 3], "amount": 32},
    ]


def configs_parity_count():
    rng = random.Random(6606)
    return [{"values": [rng.randint(-50, 99) for _ in range(size)]} for size in (3, 5, 8, 12, 17, 23, 30, 40)]


# (source id, env name, agent-facing task text, configurations)
ENVIRONMENTS = [
    ("codegym-samples_0001", "MaxSubarraySumEnv",
     "A list of integers is hidden from you. Pick one or more entries that sit next to each other in the "
     "list so that their total is as large as possible, and report that largest total.",
     configs_max_subarray),
    ("codegym-samples_0002", "BalancedBracketsEnv",
     "A hidden string is made only of the characters ( ) [ ] { }. Decide whether it is well nested: every "
     "opening bracket must be closed later by a bracket of the same kind, and pairs may not cross. "
     "Report YES or NO.",
     configs_balanced_brackets),
    ("codegym-samples_0003", "GridShortestPathEnv",
     "You stand on a cell of a hidden rectangular map. Some cells are walls; the rest are free. Each move "
     "goes one cell up, down, left or right onto a free cell. Report the smallest number of moves that "
     "brings you to the target cell, or -1 if the target cannot be reached at all.",
     configs_grid_shortest_path),
    ("codegym-samples_0004", "MergeIntervalsEnv",
     "A hidden collection of closed integer intervals is given. Whenever two intervals share at least one "
     "point (touching ends count) they are joined into one, and this repeats until no two intervals share "
     "a point. Report how many intervals are left.",
     configs_merge_intervals),
    ("codegym-samples_0005", "CoinChangeWaysEnv",
     "You may use any number of coins of each of a few hidden coin values. In how many different ways can "
     "you pay a hidden target amount exactly? Two ways count as the same if they use the same number of "
     "coins of every value, whatever the order.",
     configs_coin_change_ways),
    ("codegym-samples_0006", "ParityCountEnv",
     "A list of integers is hidden from you. Report how many of its entries are even.",
     configs_parity_count),
]

# ---------------------------------------------------------------- helpers


def write_stub():
    os.makedirs(STUB_DIR, exist_ok=True)
    path = os.path.join(STUB_DIR, "gymnasium.py")
    if not os.path.exists(path) or open(path, encoding="utf-8").read() != STUB_SOURCE:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(STUB_SOURCE)
    if STUB_DIR not in sys.path:
        sys.path.insert(0, STUB_DIR)


def load_env_class(env_name):
    path = os.path.join(ENV_DIR, env_name + ".py")
    spec = importlib.util.spec_from_file_location("codegym_sample_" + env_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gym = sys.modules["gymnasium"]
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and issubclass(obj, gym.Env) and obj is not gym.Env]
    if len(classes) != 1 or classes[0].__name__ != env_name:
        raise SystemExit(f"{path}: expected exactly one gymnasium.Env subclass named {env_name}")
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    return classes[0], source


def tool_docs(env):
    """Each action in func_mapping order as `def Name(params):` + docstring, Example Output cut."""
    blocks = []
    for name in env.func_mapping:
        method = getattr(env, name)
        doc = inspect.cleandoc(method.__doc__ or "")
        cut = doc.find("Example Output:")
        if cut >= 0:
            doc = doc[:cut]
        doc = doc.rstrip()
        body = "\n".join(("    " + line) if line else "" for line in doc.split("\n"))
        blocks.append(f"def {name}{inspect.signature(method)}:\n    \"\"\"\n{body}\n    \"\"\"")
    return "\n\n".join(blocks)


def run_main_block(env_name):
    path = os.path.join(ENV_DIR, env_name + ".py")
    env_vars = dict(os.environ, PYTHONPATH=STUB_DIR, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env_vars, timeout=60)
    ok = proc.returncode == 0 and proc.stdout.count("reward=1") >= 2
    return ok, proc


# ---------------------------------------------------------------- main


def main():
    write_stub()
    env_rows, task_rows, summary = [], [], []
    index = 0
    for source, env_name, task_text, make_configs in ENVIRONMENTS:
        cls, env_code = load_env_class(env_name)
        ok, proc = run_main_block(env_name)
        if not ok:
            raise SystemExit(f"{env_name}: __main__ self-tests failed (rc={proc.returncode})\n"
                             f"{proc.stdout}\n{proc.stderr}")
        env_rows.append({"source": source, "env_name": env_name, "env_code": env_code})

        configs = make_configs()
        assert len(configs) == 8, env_name
        encoded = [json.dumps(c) for c in configs]
        assert len(set(encoded)) == len(encoded), f"{env_name}: duplicate configurations"
        for config_json in encoded:
            env_str = f"{env_name}@{config_json}"
            assert cls.from_env_str("Other" + env_str) is None
            env = cls.from_env_str(env_str)
            reference = env.get_ref_answer()
            docs = tool_docs(env)
            began = time.perf_counter()
            final = env.solve()
            elapsed_ms = (time.perf_counter() - began) * 1000
            passed = env.reward == 1 and env.finished and "reward=1" in final
            rounds = env.step_count
            if elapsed_ms > 50:
                raise SystemExit(f"{env_str}: solve() took {elapsed_ms:.1f} ms")
            # a wrong submission must not be rewarded
            probe = cls.from_env_str(env_str)
            _, msg = probe.step(json.dumps({"name": "Done", "parameters": {"answer": None}}))
            assert probe.reward == 0 and "reward=0" in msg, f"{env_str}: empty answer rewarded"

            task_rows.append({
                "ability": f"codegym_v1@{source}__{env_name}@{config_json}",
                "code_id": source,
                "data_source": DATA_SOURCE,
                "prompt": [
                    {"role": "system", "name": "functions", "content": docs},
                    {"role": "user", "name": None, "content": f"{INSTRUCTIONS}\nQuestion:\n{task_text}"},
                ],
                "answer": str(reference),
                "reward_model": {"style": "agent_env", "ground_truth": None},
                "plugin_call_max_round": CALL_CAP,
                "extra_info": {
                    "index": str(index),
                    "solve_fc_round": rounds,
                    "qwen32b_Bo4_score": None,
                    "qwen32b_Bo8_score": None,
                },
            })
            summary.append((env_name, len(env.func_mapping), index, rounds, passed, reference, elapsed_ms))
            index += 1

    for name, rows in (("envs.jsonl", env_rows), ("tasks.jsonl", task_rows)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    print(f"{'env':22} tools  idx  rounds  oracle  answer   ms")
    for env_name, tools, idx, rounds, passed, reference, ms in summary:
        print(f"{env_name:22} {tools:5} {idx:4} {rounds:7}  {'pass' if passed else 'FAIL':6}  {reference!s:7} {ms:5.2f}")
    failures = [s for s in summary if not s[4]]
    print(f"wrote {len(env_rows)} environments, {len(task_rows)} tasks; oracle failures: {len(failures)}")


if __name__ == "__main__":
    main()
