# codegym preflight: runs inside the sandbox (a private module of the driver, like the harness).
#
# Runs a problem's reference solution against the problem's own tests and says whether they pass:
# pytest-style test functions importing from `solution`, plain assert scripts, stdin/stdout pairs.
# Returns a JSON-ready dict; the host reads results, it never scrapes prints.

import ast
import json


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
