# codegym preflight: runs inside the sandbox (a private module of the driver, like the harness).
#
# Runs a problem's reference solution against the problem's own tests and says whether they pass:
# pytest-style test functions importing from `solution`, plain assert scripts, stdin/stdout pairs.
# Returns a JSON-ready dict; the host reads results, it never scrapes prints.

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


def preflight(solution, tests, test_kind, pytest_source):
    """Run a reference solution against its own tests: {"verdict": pass|fail|error|no_tests, "detail"}.
    `pytest_source` is the sandbox's pytest stand-in, served to the tests as `import pytest`.
    `test_kind`: pytest (test_ functions importing from `solution`), assert (a script of asserts),
    io ({"io": [{"input", "output"}]}: the solution reads stdin and prints), none."""
    import builtins
    import io
    import sys

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
            exec(compile(tests, "<tests>", "exec"), {"__name__": "__main__", "__builtins__": sandbox_builtins})
            verdict, detail = "pass", "the test script ran to its end"
    except AssertionError as failure:
        verdict, detail = "fail", "AssertionError %s" % str(failure)[:500]
    except Exception as failure:
        verdict, detail = "error", "%s: %s" % (type(failure).__name__, str(failure)[:500])
    return {"verdict": verdict, "detail": detail}


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
