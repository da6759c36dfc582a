#!/usr/bin/env python3
"""Build data-samples/problems.parquet from data-samples/corpus/problems.jsonl.

Every row is checked first: the sound problems must pass their own tests when run natively, and each
deliberately bad row (listed in BAD) must show exactly the defect it was written to have. The parquet
file is only written when all checks pass. Output is deterministic: same input, same bytes.

Usage: python3 data-samples/corpus/make_corpus.py
Needs pyarrow (python3 -m pip install pyarrow). pytest is optional: when it is not installed, a tiny
stand-in providing only `pytest.raises` is placed next to the tests.
"""
import ast
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
JSONL = os.path.join(HERE, "problems.jsonl")
OUT = os.path.join(os.path.dirname(HERE), "problems.parquet")

SUBSET = "codegym-samples"
DIFFICULTIES = {"easy", "medium", "hard"}
SOUND_TIMEOUT_S = 20
HANG_TIMEOUT_S = 2

INFO_TYPE = pa.struct([
    ("function_name", pa.string()),
    ("parameter_list", pa.string()),
    ("function_declaration", pa.string()),
    ("docstring", pa.string()),
])
SCHEMA = pa.schema([
    ("question_id", pa.string()),
    ("subset", pa.string()),
    ("question", pa.string()),
    ("solution", pa.string()),
    ("test", pa.string()),
    ("test_info", pa.list_(INFO_TYPE)),
    ("gpt_difficulty", pa.string()),
    ("style", pa.string()),
])
COLUMNS = SCHEMA.names

# Topic of every sound problem (reporting and coverage check only; not a column).
CATEGORY = {}
for _cat, _ids in {
    "arrays": [1, 2, 3, 4],
    "strings": [5, 6, 7, 8],
    "dynamic_programming": [9, 10, 11, 12],
    "graphs": [13, 14, 15, 16],  # BFS, DFS, topological sort, union-find
    "intervals": [17, 18, 19],
    "math": [20, 21, 22, 23],
    "simulation": [24, 25, 26],
    "math (plain assert script)": [27],
    "strings (plain assert script)": [28],
    "strings (stdin/stdout)": [29],
}.items():
    for _n in _ids:
        CATEGORY[f"cgs_{_n:04d}"] = _cat
REQUIRED = {"arrays": 4, "strings": 4, "dynamic_programming": 4, "graphs": 4,
            "intervals": 3, "math": 4, "simulation": 3}

# Deliberately bad rows: id -> (defect, argument, what an ingest/preflight should make of it).
BAD = {
    "cgs_0030": ("duplicate", "cgs_0001", "reject: duplicate of cgs_0001"),
    "cgs_0031": ("whitespace_duplicate", "cgs_0006", "reject: duplicate of cgs_0006 (whitespace only)"),
    "cgs_0032": ("empty_solution", "solution", "reject: empty `solution`"),
    "cgs_0033": ("null_question", "question", "reject: null `question`"),
    "cgs_0034": ("fails", None, "preflight fail"),
    "cgs_0035": ("hangs", None, "preflight timeout"),
    "cgs_0036": ("no_tests", "test", "preflight no_tests"),
}

PYTEST_RUNNER = '''\
import sys
import traceback

import test_solution

names = [n for n, v in vars(test_solution).items() if n.startswith("test_") and callable(v)]
failed = 0
for name in names:
    try:
        getattr(test_solution, name)()
    except Exception:
        failed += 1
        last = traceback.format_exc().strip().splitlines()[-1]
        print(f"FAIL {name}: {last}", flush=True)
    else:
        print(f"PASS {name}", flush=True)
print(f"{len(names) - failed}/{len(names)} passed", flush=True)
sys.exit(1 if failed or not names else 0)
'''

PYTEST_SHIM = '''\
"""Stand-in for pytest providing only pytest.raises (used when pytest is not installed)."""
import contextlib


@contextlib.contextmanager
def raises(expected):
    try:
        yield
    except expected:
        return
    raise AssertionError(f"DID NOT RAISE {expected!r}")
'''

HAVE_PYTEST = importlib.util.find_spec("pytest") is not None


def test_kind(test):
    """'pytest', 'script', 'io', or None when there are no tests."""
    if not test or not test.strip():
        return None
    try:
        obj = json.loads(test)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "io" in obj:
        return "io"
    if re.search(r"^def test_\w*\(", test, re.M):
        return "pytest"
    return "script"


def normalise(text):
    return " ".join(text.split())


def run(cmd, cwd, timeout, stdin=""):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_problem(row, timeout):
    """Run a row's tests against its solution. Returns (status, detail), status in
    pass / fail / timeout / no_tests."""
    kind = test_kind(row["test"])
    if kind is None:
        return "no_tests", "test is empty"
    with tempfile.TemporaryDirectory(prefix="cgs_") as tmp:
        with open(os.path.join(tmp, "solution.py"), "w", encoding="utf-8") as f:
            f.write(row["solution"] or "")
        try:
            if kind == "io":
                pairs = json.loads(row["test"])["io"]
                for i, pair in enumerate(pairs):
                    proc = run([sys.executable, "solution.py"], tmp, timeout, pair["input"])
                    if proc.returncode != 0:
                        return "fail", f"io case {i}: exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
                    if proc.stdout.strip() != pair["output"].strip():
                        return "fail", f"io case {i}: got {proc.stdout!r}, want {pair['output']!r}"
                return "pass", f"{len(pairs)}/{len(pairs)} io cases"
            if kind == "pytest":
                with open(os.path.join(tmp, "test_solution.py"), "w", encoding="utf-8") as f:
                    f.write(row["test"])
                with open(os.path.join(tmp, "_run_tests.py"), "w", encoding="utf-8") as f:
                    f.write(PYTEST_RUNNER)
                if not HAVE_PYTEST:
                    with open(os.path.join(tmp, "pytest.py"), "w", encoding="utf-8") as f:
                        f.write(PYTEST_SHIM)
                proc = run([sys.executable, "_run_tests.py"], tmp, timeout)
            else:
                with open(os.path.join(tmp, "test_script.py"), "w", encoding="utf-8") as f:
                    f.write(row["test"])
                proc = run([sys.executable, "test_script.py"], tmp, timeout)
        except subprocess.TimeoutExpired as exc:
            return "timeout", f"no result within {exc.timeout} s"
        out = (proc.stdout + proc.stderr).strip().splitlines()
        if proc.returncode == 0:
            return "pass", out[-1] if out else "exit 0"
        fails = [line for line in out if line.startswith("FAIL ")]
        return "fail", "; ".join(fails + out[-1:]) if out else f"exit {proc.returncode}"


def check_shape(row, errors):
    qid = row.get("question_id")
    if list(row) != COLUMNS:
        errors.append(f"{qid}: columns {list(row)} != {COLUMNS}")
        return
    for col in COLUMNS:
        value = row[col]
        if col == "test_info":
            ok = isinstance(value, list) and all(
                isinstance(item, dict) and list(item) == INFO_TYPE.names
                and all(isinstance(item[k], str) for k in item) for item in value)
        elif col == "question":
            ok = value is None or isinstance(value, str)
        else:
            ok = isinstance(value, str)
        if not ok:
            errors.append(f"{qid}: bad value in column {col}: {value!r}"[:200])
    if row["subset"] != SUBSET or row["style"] != "instruct" or row["gpt_difficulty"] not in DIFFICULTIES:
        errors.append(f"{qid}: bad subset/style/gpt_difficulty")


def check_sound(row, errors):
    qid = row["question_id"]
    q, sol, test = row["question"], row["solution"], row["test"]
    if not q or "Example" not in q:
        errors.append(f"{qid}: question missing or without an example")
    if not sol.strip():
        errors.append(f"{qid}: empty solution")
        return
    tree = ast.parse(sol)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if not row["test_info"]:
        errors.append(f"{qid}: empty test_info")
    for item in row["test_info"]:
        node = funcs.get(item["function_name"])
        if node is None:
            errors.append(f"{qid}: test_info names {item['function_name']}, not defined in solution")
            continue
        decl = f"def {node.name}({ast.unparse(node.args)}):"
        if item["function_declaration"] != decl or item["parameter_list"] != decl[4 + len(node.name):-1]:
            errors.append(f"{qid}: test_info declaration {item['function_declaration']!r} != {decl!r}")
    for mod in re.findall(r"^(?:from|import)\s+([\w.]+)", sol, re.M):
        if mod.split(".")[0] not in sys.stdlib_module_names:
            errors.append(f"{qid}: solution imports non-stdlib module {mod}")
    kind = test_kind(test)
    if kind == "pytest":
        n_tests = len(re.findall(r"^def test_\w*\(", test, re.M))
        if not 4 <= n_tests <= 8:
            errors.append(f"{qid}: {n_tests} test functions (want 4-8)")
        if re.search(r"^from solution import ", test, re.M) is None:
            errors.append(f"{qid}: tests do not import from solution")
        if set(re.findall(r"pytest\.(\w+)", test)) - {"raises"}:
            errors.append(f"{qid}: uses pytest features other than pytest.raises")
    elif kind == "script":
        if "from solution import" not in test or not re.search(r"^assert ", test, re.M):
            errors.append(f"{qid}: plain script must import from solution and assert at top level")
    elif kind == "io":
        pairs = json.loads(test)["io"]
        if len(pairs) < 3:
            errors.append(f"{qid}: only {len(pairs)} io pairs")
    status, detail = run_problem(row, SOUND_TIMEOUT_S)
    if status != "pass":
        errors.append(f"{qid}: reference solution does not pass: {status}: {detail}")
    return kind, status, detail


def main():
    with open(JSONL, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    errors = []
    by_id = {}
    for row in rows:
        check_shape(row, errors)
        if row["question_id"] in by_id:
            errors.append(f"{row['question_id']}: duplicate question_id")
        by_id[row["question_id"]] = row
    if errors:
        sys.exit("\n".join(["shape errors:"] + errors))

    ids = [r["question_id"] for r in rows]
    sound_ids = [i for i in ids if i not in BAD]
    if set(BAD) - set(ids):
        errors.append(f"bad rows missing from corpus: {sorted(set(BAD) - set(ids))}")
    if max(ids.index(i) for i in sound_ids) > min(ids.index(i) for i in BAD if i in ids):
        errors.append("bad rows must come after all sound rows")
    if set(sound_ids) != set(CATEGORY):
        errors.append(f"CATEGORY does not match the sound rows: {sorted(set(sound_ids) ^ set(CATEGORY))}")

    print(f"{'id':9} {'category':30} {'kind':7} {'diff':6} result")
    kinds = Counter()
    pytest_users = []
    for qid in sound_ids:
        row = by_id[qid]
        result = check_sound(row, errors)
        if result is None:
            continue
        kind, status, detail = result
        kinds[kind] += 1
        if re.search(r"^import pytest", row["test"], re.M):
            pytest_users.append(qid)
        print(f"{qid:9} {CATEGORY.get(qid, '?'):30} {kind:7} {row['gpt_difficulty']:6} {status}: {detail}")
    if len(pytest_users) > 2:
        errors.append(f"`import pytest` used in {len(pytest_users)} problems (max 2): {pytest_users}")
    if kinds["script"] != 2 or kinds["io"] != 1 or kinds["pytest"] < 26:
        errors.append(f"test kinds among sound rows: {dict(kinds)} (want >=26 pytest, 2 script, 1 io)")
    per_cat = Counter(CATEGORY[i] for i in sound_ids
                      if i in CATEGORY and test_kind(by_id[i]["test"]) == "pytest")
    for cat, need in REQUIRED.items():
        if per_cat[cat] < need:
            errors.append(f"category {cat}: {per_cat[cat]} pytest problems, need {need}")

    # No accidental duplicates among sound rows (the deliberate ones are checked below).
    seen = {}
    for qid in sound_ids:
        key = normalise(by_id[qid]["question"])
        if key in seen:
            errors.append(f"{qid}: question duplicates {seen[key]}")
        seen[key] = qid

    print()
    for qid, (defect, arg, expect) in BAD.items():
        row = by_id.get(qid)
        if row is None:
            continue
        status, detail = "-", ""
        if defect == "duplicate":
            ok = row["question"] == by_id[arg]["question"] and ids.index(arg) < ids.index(qid)
            status, detail = run_problem(row, SOUND_TIMEOUT_S)
            ok = ok and status == "pass"
        elif defect == "whitespace_duplicate":
            q, orig = row["question"], by_id[arg]["question"]
            ok = q != orig and normalise(q) == normalise(orig) and ids.index(arg) < ids.index(qid)
            status, detail = run_problem(row, SOUND_TIMEOUT_S)
            ok = ok and status == "pass"
        elif defect == "empty_solution":
            ok = row["solution"] == "" and bool(row["question"]) and test_kind(row["test"]) == "pytest"
        elif defect == "null_question":
            ok = row["question"] is None
            status, detail = run_problem(row, SOUND_TIMEOUT_S)
            ok = ok and status == "pass"
        elif defect == "fails":
            status, detail = run_problem(row, SOUND_TIMEOUT_S)
            m = re.search(r"(\d+)/(\d+) passed", detail)
            # subtly wrong: some of its tests pass, at least one fails, nothing hangs
            ok = status == "fail" and m is not None and 0 < int(m.group(1)) < int(m.group(2))
        elif defect == "hangs":
            status, detail = run_problem(row, HANG_TIMEOUT_S)
            ok = status == "timeout"
        elif defect == "no_tests":
            ok = row["test"] == "" and bool(row["solution"]) and bool(row["question"])
            status, detail = run_problem(row, SOUND_TIMEOUT_S)
            ok = ok and status == "no_tests"
        else:
            ok = False
        print(f"{qid:9} {defect:21} -> {expect:48} [{'ok' if ok else 'WRONG'}] {status} {detail}".rstrip())
        if not ok:
            errors.append(f"{qid}: does not show the intended defect {defect!r} ({status}: {detail})")

    if errors:
        sys.exit("\n".join(["", "corpus check FAILED:"] + errors))

    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    tmp = OUT + ".tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, OUT)
    back = pq.read_table(OUT)
    assert back.schema.equals(SCHEMA) and back.to_pylist() == rows, "parquet round trip differs"
    with open(OUT, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"\n{len(rows)} rows ({len(sound_ids)} sound, {len(BAD)} deliberately bad) -> {OUT}")
    print(f"test kinds (sound): {dict(sorted(kinds.items()))}; pytest available: {HAVE_PYTEST}")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
