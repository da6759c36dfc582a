# codegym environment harness: runs inside the sandbox (installed as module `codegym_harness`).
#
# Builds an environment from its source and an `EnvName@{json}` configuration, then computes the
# reference answer, runs an oracle `solve()` while counting every `step()` call per tool and
# recording the (action, observation) trajectory, or lists the environment's tools. Every function
# returns a JSON-ready dict: the host reads results, it never scrapes prints.

import ast
import json

class _LastModule:
    """The last compiled environment (consecutive jobs usually share it). No `__dict__`: the
    driver's reset leaves this cache alone, and code objects are immutable."""

    __slots__ = ("source", "code")


_last = _LastModule()
_last.source = _last.code = None


def _module_for(source, env_name):
    """Execute the environment module in a fresh namespace (its `__main__` block does not run)."""
    if _last.source != source:
        _last.code = compile(source, "<env:%s>" % env_name, "exec")
        _last.source = source
    namespace = {"__name__": "codegym_env", "__builtins__": __builtins__}
    exec(_last.code, namespace)
    return namespace


def find_env_classes(source):
    """Names of the classes, found by parsing, that define `from_env_str` (the contract's marker)."""
    tree = ast.parse(source)
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
            if "from_env_str" in methods:
                found.append(node.name)
    return found


def _env_class(source, env_name):
    namespace = _module_for(source, env_name)
    cls = namespace.get(env_name)
    if not isinstance(cls, type):
        raise LookupError("the module defines no class named %s" % env_name)
    return cls


def _build(source, env_name, config):
    env = _env_class(source, env_name).from_env_str(config)
    if env is None:
        raise ValueError("from_env_str returned None for this configuration")
    return env


def _as_json(value):
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return None


def ref_answer(source, env_name, config):
    """The environment's reference answer for one configuration."""
    answer = _build(source, env_name, config).get_ref_answer()
    return {"answer": str(answer), "answer_repr": repr(answer)[:10000], "answer_json": _as_json(answer)}


def _tool_name(action):
    try:
        name = json.loads(action).get("name")
        return name if isinstance(name, str) else "<malformed>"
    except Exception:
        return "<malformed>"


def _solver_function(env, solver_source):
    """A candidate `def solve(self)` from its source text, compiled in a copy of the module's
    namespace (as in the smoke test's splice, so it sees the module's imports)."""
    namespace = dict(type(env).reset.__globals__)
    exec(compile(solver_source, "<solver>", "exec"), namespace)
    solve = namespace.get("solve")
    if not callable(solve):
        raise LookupError("the solver source defines no function named solve")
    return solve


def oracle(source, env_name, config, solver=None, trajectory_limit=4096):
    """Run the oracle on one configuration; pass iff the returned message contains `reward=1`.
    A candidate `solver` gets a `self` that only has `step`: a candidate that reads the hidden
    state fails here instead of being chosen for the fewest calls."""
    env = _build(source, env_name, config)
    candidate = None if solver is None else _solver_function(env, solver)
    step = env.step
    tool_calls = {}
    trajectory = []

    def traced_step(action):
        name = _tool_name(action)
        tool_calls[name] = tool_calls.get(name, 0) + 1
        outcome = step(action)
        if len(trajectory) < trajectory_limit:
            observation = outcome[1] if isinstance(outcome, tuple) and len(outcome) == 2 else outcome
            trajectory.append([action if isinstance(action, str) else repr(action), str(observation)])
        return outcome

    env.step = traced_step
    message = str(env.solve() if candidate is None else candidate(_StepOnly(env)))
    return {
        "passed": "reward=1" in message,
        "message": message[:2000],
        "oracle_calls": int(getattr(env, "step_count", sum(tool_calls.values()))),
        "tool_calls": tool_calls,
        "trajectory": trajectory,
    }


def _tool_doc(name, method):
    """`def Name(params):` plus the docstring, with `self` dropped and the Example Output cut."""
    import inspect

    try:
        signature = inspect.signature(method)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        rendered = str(signature.replace(parameters=params, return_annotation=inspect.Signature.empty))
    except (TypeError, ValueError):
        rendered = "(...)"
    doc = inspect.getdoc(method) or ""
    kept = []
    for line in doc.splitlines():
        if line.strip().lower().startswith("example output") or line.strip().lower().startswith("example:"):
            break
        kept.append(line)
    body = "\n".join("    " + line if line else "" for line in "\n".join(kept).strip().splitlines())
    return 'def %s%s:\n    r"""\n%s\n    """' % (name, rendered, body)


def run_steps(source, env_name, steps, failed_smoke=()):
    """Run many steps on one environment in one job, handing each step's result to the host as
    soon as it is ready (`emit_partial`, installed by the sandbox driver): {"ok": result} or
    {"error": message}. Oracle steps of a candidate that failed its smoke test earlier in the job
    are skipped ({"error": "skipped: ..."}). A step is {"op": "describe"} | {"op": "ref_answer", "config": ...} |
    {"op": "oracle", "config": ..., "solver": ... or None} | {"op": "self_test"} | {"op": "smoke_test", "solver"} | {"op": "contract"} | {"op": "classes"} | {"op": "probe", "config", "task_text", "tool_docs"}.
    One step failing does not stop the rest."""
    import traceback

    # Candidates whose smoke test failed (in this job, or in an earlier one that a limit ended):
    # their cells are skipped.
    failed_smoke = set(failed_smoke)
    for step in steps:
        op = step["op"]
        if op == "oracle" and step.get("solver") in failed_smoke:
            emit_partial({"error": "skipped: the candidate failed its smoke test"})
            continue
        try:
            if op == "describe":
                value = describe(source, env_name)
            elif op == "ref_answer":
                value = ref_answer(source, env_name, step["config"])
            elif op == "oracle":
                value = oracle(source, env_name, step["config"], step.get("solver"))
            elif op == "self_test":
                value = self_test(source, env_name)
            elif op == "contract":
                value = contract(source, env_name)
            elif op == "classes":
                value = find_env_classes(source)
            elif op == "smoke_test":
                value = smoke_test(source, env_name, step["solver"])
                if not (value["exit_code"] == 0 and value["reward_1"] >= 2 and value["reward_0"] == 0):
                    failed_smoke.add(step["solver"])
            elif op == "probe":
                value = probe(source, env_name, step["config"], step.get("task_text") or "", step.get("tool_docs") or "")
            else:
                raise ValueError("unknown step %r" % op)
            outcome = {"ok": value}
        except BaseException as failure:
            outcome = {"error": "".join(traceback.format_exception_only(type(failure), failure)).strip()[:2000]}
        emit_partial(outcome)
    return len(steps)


# Answers too common to mean anything when they show up in a text.
_COMMON_ANSWERS = {"true", "false", "yes", "no", "none", "null", "-1"}


def _wrong_like(answer):
    """A value of the answer's own type that is not the answer."""
    if isinstance(answer, bool):
        return not answer
    if isinstance(answer, (int, float)):
        return answer + 1
    if isinstance(answer, str):
        return answer + "x"
    if isinstance(answer, (list, tuple)):
        return list(answer) + [0]
    return "codegym-wrong-answer"


def _is_empty(answer):
    return isinstance(answer, (str, list, tuple, dict)) and len(answer) == 0


def _message(outcome):
    return str(outcome[1] if isinstance(outcome, tuple) and len(outcome) == 2 else outcome)


def _rewarded(env, answer):
    message = _message(env.step(json.dumps({"name": "Done", "parameters": {"answer": answer}})))
    return "reward=1" in message or getattr(env, "_reward", 0) == 1, message


def _input_tokens(value, found):
    """Distinctive values of a configuration: strings of 3+ characters, numbers of 3+ digits."""
    if isinstance(value, dict):
        for item in value.values():
            _input_tokens(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _input_tokens(item, found)
    elif isinstance(value, str) and len(value) >= 3:
        found.append(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and len(str(abs(value))) >= 3:
        found.append(str(value))
    return found


def _token_in(token, text):
    import re

    return re.search(r"(?<![\w.])" + re.escape(token) + r"(?![\w.])", text) is not None


def _leaks(answer_text, text, config, shared):
    """Whether the reference answer shows in `text` as a whole token. Answers of one or two
    characters and common words never count; nor does an answer that is part of the
    configuration's own input (an agent may see its input). In text shared by every configuration
    (task text, tool docs) it counts only when the configuration's input shows there too: the
    worked example is this very configuration, rather than the text listing possible answers."""
    if len(answer_text) <= 2 or answer_text.lower() in _COMMON_ANSWERS or not text or not _token_in(answer_text, text):
        return False
    options_text = config.split("@", 1)[-1]
    if _token_in(answer_text, options_text):
        return False
    if not shared:
        return True
    try:
        options = json.loads(options_text)
    except ValueError:
        return False
    return any(_token_in(token, text) for token in _input_tokens(options, []))


class _StepOnly:
    """All an oracle may touch is `step`; any other attribute it reads is recorded and refused."""

    def __init__(self, env):
        object.__setattr__(self, "_env", env)
        object.__setattr__(self, "reads", [])

    def __getattr__(self, name):
        if name == "step":
            return self._env.step
        self.reads.append(name)
        raise AttributeError("an oracle may only call self.step(...), not read self.%s" % name)


def probe(source, env_name, config, task_text="", tool_docs=""):
    """Checks the released pipeline never made, on one configuration. Returns {"findings": [...]}
    with a reason and detail per problem:
    - wrong_answer_rewarded / empty_answer_rewarded: Done with a wrong value of the right type,
      or with "", right after reset, must give reward 0;
    - answer_in_task_text / answer_in_tool_docs / answer_in_observe: the reference answer must
      not show in what the agent reads (Observe: right after reset);
    - oracle_reads_state: the oracle must reach its answer through step() only;
    - nondeterministic_trajectory: two oracle runs under different random seeds must make the
      same calls and see the same observations."""
    import random

    answer = _build(source, env_name, config).get_ref_answer()
    findings = []
    probes = [("wrong_answer_rewarded", _wrong_like(answer))]
    if not _is_empty(answer):  # an empty input can have an empty answer: "" is then right
        probes.append(("empty_answer_rewarded", ""))
    for reason, wrong in probes:
        rewarded, message = _rewarded(_build(source, env_name, config), wrong)
        if rewarded:
            findings.append({"reason": reason, "detail": "Done(%r) right after reset returned %r" % (wrong, message[:200])})
    observed = _message(_build(source, env_name, config).step(json.dumps({"name": "Observe", "parameters": {}})))
    texts = (("answer_in_task_text", task_text, True), ("answer_in_tool_docs", tool_docs, True), ("answer_in_observe", observed, False))
    for reason, text, shared in texts:
        if _leaks(str(answer), text, config, shared):
            findings.append({"reason": reason, "detail": "the reference answer %r appears in it" % str(answer)[:100]})
    env = _build(source, env_name, config)
    guarded = _StepOnly(env)
    try:
        type(env).solve(guarded)
    except Exception:
        pass
    if guarded.reads:
        findings.append({"reason": "oracle_reads_state", "detail": "solve() read self.%s" % ", self.".join(sorted(set(guarded.reads)))})
    runs = []
    for seed in (1, 2):
        random.seed(seed)
        runs.append(oracle(source, env_name, config)["trajectory"])
    if runs[0] != runs[1]:
        at = next(i for i, (a, b) in enumerate(zip(runs[0] + [None], runs[1] + [None])) if a != b)
        findings.append({"reason": "nondeterministic_trajectory", "detail": "two runs under different seeds differ at call %d" % (at + 1)})
    return {"findings": findings}


_REQUIRED_METHODS = ("from_env_str", "reset", "get_ref_answer", "step")
_DOC_SECTIONS = ("Args", "Returns", "Example")


def contract(source, env_name):
    """The static half of the environment contract: the class is found by parsing (one class
    defining `from_env_str`, named `env_name`), it has the required methods, `func_mapping` holds
    Observe and Done, and every action has a method of the same name whose docstring has Args,
    Returns and Example. Returns {"classes": [...], "problems": [...]} (empty problems: it holds)."""
    classes = find_env_classes(source)
    problems = []
    if env_name not in classes:
        problems.append("no class %s defining from_env_str (found: %s)" % (env_name, ", ".join(classes) or "none"))
        return {"classes": classes, "problems": problems}
    cls = _env_class(source, env_name)
    problems += ["missing method %s" % name for name in _REQUIRED_METHODS if not callable(getattr(cls, name, None))]
    mapping = getattr(cls(), "func_mapping", None)
    if not isinstance(mapping, dict):
        return {"classes": classes, "problems": problems + ["func_mapping is not a dict"]}
    problems += ["func_mapping has no %s" % name for name in ("Observe", "Done") if name not in mapping]
    for action in mapping:
        method = getattr(cls, action, None)
        if not callable(method):
            problems.append("action %s has no method" % action)
            continue
        doc = method.__doc__ or ""
        missing = [section for section in _DOC_SECTIONS if section not in doc]
        if missing:
            problems.append("the docstring of %s lacks %s" % (action, ", ".join(missing)))
    return {"classes": classes, "problems": problems}


def _splice(source, env_name, solver):
    """The module with a candidate `solve` in place of the class's own: the candidate's source
    runs at module level right after the class (so its imports work), then replaces the method,
    before the module's `__main__` block runs."""
    tree = ast.parse(source)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == env_name), None)
    if cls is None:
        raise LookupError("the module defines no class named %s" % env_name)
    lines = source.splitlines(keepends=True)
    spliced = "\n# codegym: candidate solver\n%s\n%s.solve = solve\n" % (solver.strip("\n"), env_name)
    return "".join(lines[: cls.end_lineno]) + spliced + "".join(lines[cls.end_lineno :])


def smoke_test(source, env_name, solver):
    """The module's own self-tests with a candidate solve spliced in (stage 6 of the method)."""
    return self_test(_splice(source, env_name, solver), env_name)


def self_test(source, env_name, output_limit=100000):
    """Run the module as `__main__` (its own self-tests), capturing what it prints; report the exit
    status and how many `reward=1` / `reward=0` it printed."""
    import io
    import sys

    captured = io.StringIO()
    real_stdout = sys.stdout
    sys.stdout = captured
    exit_code, error = 0, None
    try:
        exec(compile(source, "<env:%s>" % env_name, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as stop:
        exit_code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as failure:
        exit_code, error = 1, "%s: %s" % (type(failure).__name__, failure)
    finally:
        sys.stdout = real_stdout
    printed = captured.getvalue()
    return {
        "exit_code": exit_code,
        "error": error,
        "reward_1": printed.count("reward=1"),
        "reward_0": printed.count("reward=0"),
        "stdout": printed[:output_limit],
    }


def _importer(modules):
    """An `__import__` that serves `modules` by name and defers to the real one otherwise: the
    problem's own modules never enter sys.modules, so nothing of them outlives the job."""
    import builtins

    real = builtins.__import__

    def importer(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in modules:
            return modules[name]
        return real(name, globals, locals, fromlist, level)

    return importer


def _module(name, source, builtins_dict):
    import types

    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = builtins_dict
    exec(compile(source, "<%s>" % name, "exec"), module.__dict__)
    return module


def _run_pytest_style(namespace):
    import inspect

    fixtures = {n: f for n, f in namespace.items() if callable(f) and getattr(f, "_codegym_fixture", False)}
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test") and callable(f) and inspect.isfunction(f)]
    if not tests:
        return "no_tests", "no test_ functions"
    ran = 0
    for name, test in tests:
        parameters = list(inspect.signature(test).parameters)
        for case in getattr(test, "_codegym_cases", [{}]):
            arguments = dict(case)
            for parameter in parameters:
                if parameter not in arguments and parameter in fixtures:
                    arguments[parameter] = fixtures[parameter]()
            try:
                test(**arguments)
                ran += 1
            except namespace["pytest"].Skipped:
                pass
            except AssertionError as failure:
                return "fail", "%s: AssertionError %s" % (name, str(failure)[:500])
    return "pass", "%d test cases passed" % ran


def _check_never_called(tree):
    """Whether a test script defines `check(candidate)` at top level and never calls it (the
    HumanEval convention: the benchmark's harness appends the call)."""
    import ast

    defines = False
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "check":
            defines = True
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check":
                return False
    return defines


def _run_assert_script(solution, tests, entry_point):
    """Run an assert script after the solution in the solution's own namespace, as HumanEval's and
    MBPP's harnesses do by concatenating the two; `from solution import ...` still finds the same
    module. A `check` the script never calls runs on the entry point: without one, it is an error,
    since running nothing would pass vacuously."""
    import ast

    tree = ast.parse(tests, "<tests>")
    call_check = _check_never_called(tree)
    if call_check and not entry_point:
        return "error", (
            "the tests define check(candidate) but never call it, and the corpus names no entry point"
            " (--map entry_point=COLUMN)"
        )
    namespace = solution.__dict__
    # The solution ran as module `solution` (its own main block stays quiet); the tests are the script.
    namespace["__name__"] = "__main__"
    exec(compile(tree, "<tests>", "exec"), namespace)
    if not call_check:
        return "pass", "the test script ran to its end"
    if not callable(namespace.get(entry_point)):
        return "error", "the entry point `%s` is not a function the solution defines" % entry_point
    namespace["check"](namespace[entry_point])
    return "pass", "check(%s) passed" % entry_point


def preflight(solution, tests, test_kind, pytest_source, entry_point=None):
    """Run a reference solution against its own tests: {"verdict": pass|fail|error|no_tests, "detail"}.
    `pytest_source` is the sandbox's pytest stand-in, served to the tests as `import pytest`.
    `test_kind`: pytest (test_ functions importing from `solution`), assert (a script of asserts
    that sees the solution's names; a `check(candidate)` runs on `entry_point`), io
    ({"io": [{"input", "output"}]}: the solution reads stdin and prints), none."""
    import builtins

    if test_kind == "none" or not (tests or "").strip():
        return {"verdict": "no_tests", "detail": "the problem has no tests"}
    sandbox_builtins = dict(builtins.__dict__)
    served = {}
    sandbox_builtins["__import__"] = _importer(served)
    try:
        served["pytest"] = _module("pytest", pytest_source, sandbox_builtins)
        if test_kind == "io":
            return _preflight_io(solution, json.loads(tests)["io"], sandbox_builtins)
        served["solution"] = _module("solution", solution, sandbox_builtins)
        if test_kind == "pytest":
            namespace = {"__name__": "test_solution", "__builtins__": sandbox_builtins}
            exec(compile(tests, "<tests>", "exec"), namespace)
            namespace.setdefault("pytest", served["pytest"])
            verdict, detail = _run_pytest_style(namespace)
        else:
            verdict, detail = _run_assert_script(served["solution"], tests, entry_point)
    except AssertionError as failure:
        verdict, detail = "fail", _assertion_detail(failure, tests)
    except Exception as failure:
        verdict, detail = "error", "%s: %s" % (type(failure).__name__, str(failure)[:500])
    return {"verdict": verdict, "detail": detail}


def _assertion_detail(failure, tests):
    """The failed assertion's message and, since a bare `assert` has none, the test line it is on."""
    import traceback

    lines = tests.splitlines()
    frames = [f for f in traceback.extract_tb(failure.__traceback__) if f.filename == "<tests>" and f.lineno <= len(lines)]
    message = ": %s" % str(failure)[:300] if str(failure) else ""
    where = " (tests line %d: %s)" % (frames[-1].lineno, lines[frames[-1].lineno - 1].strip()[:200]) if frames else ""
    return "AssertionError" + message + where


def _preflight_io(solution, pairs, sandbox_builtins):
    import io
    import sys

    if not pairs:
        return {"verdict": "no_tests", "detail": "no input/output pairs"}
    code = compile(solution, "<solution>", "exec")
    real_stdin, real_stdout = sys.stdin, sys.stdout
    try:
        for number, pair in enumerate(pairs, 1):
            sys.stdin, sys.stdout = io.StringIO(pair["input"]), io.StringIO()
            try:
                exec(code, {"__name__": "__main__", "__builtins__": sandbox_builtins})
            except SystemExit as stop:
                if stop.code not in (None, 0):
                    raise
            printed = sys.stdout.getvalue()
            sys.stdin, sys.stdout = real_stdin, real_stdout
            if [l.rstrip() for l in printed.strip().splitlines()] != [l.rstrip() for l in pair["output"].strip().splitlines()]:
                return {"verdict": "fail", "detail": "pair %d: expected %r, got %r" % (number, pair["output"][:200], printed[:200])}
    finally:
        sys.stdin, sys.stdout = real_stdin, real_stdout
    return {"verdict": "pass", "detail": "%d input/output pairs matched" % len(pairs)}


def emit_partial(value):
    """Replaced by the sandbox driver at boot."""
    raise RuntimeError("emit_partial is only available inside the codegym sandbox")


def describe(source, env_name):
    """The environment's tools in `func_mapping` order, with their agent-facing documentation."""
    cls = _env_class(source, env_name)
    env = cls()
    names = [name for name in getattr(env, "func_mapping", {})]
    docs = []
    for name in names:
        method = getattr(cls, name, None)
        docs.append(_tool_doc(name, method) if callable(method) else "def %s(...):\n    (no method)" % name)
    return {"tools": names, "tool_docs": "\n\n".join(docs)}
