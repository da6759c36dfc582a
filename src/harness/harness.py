# codegym environment harness: runs inside the sandbox, as a private module of the driver (it never
# enters sys.modules, so environment code cannot import it).
#
# Builds an environment from its source and an `EnvName@{json}` configuration, then checks the
# module against the contract, computes reference answers, runs oracle `solve()`s while counting
# every `step()` call per tool and recording the (action, observation) trajectory, and gathers the
# evidence of the anti-gaming probes. Every function returns a JSON-ready dict of facts: the host
# reads results (it never scrapes prints) and draws every verdict it can from the evidence itself.
#
# Everything the checks call is bound here, when the image boots, before any environment code
# runs: a module that patches `json.dumps`, `builtins.str` or `copy.deepcopy` changes what it sees,
# not what the checks use.

from builtins import (
    AttributeError,
    BaseException,
    Exception,
    LookupError,
    SystemExit,
    ValueError,
    bool,
    callable,
    compile,
    dict,
    exec,
    float,
    getattr,
    int,
    isinstance,
    len,
    list,
    object,
    repr,
    set,
    sorted,
    str,
    sum,
    tuple,
    type,
)
import ast as _ast
import builtins as _builtins
import io as _io
import sys as _sys
import types as _types
from copy import deepcopy as _deepcopy
from pickle import dumps as _pickle
from pickle import loads as _unpickle
from inspect import getdoc as _getdoc
from inspect import signature as _signature
from time import sleep as _sleep
from sys import setprofile as _setprofile
from sys import settrace as _settrace
from traceback import format_exception_only as _format_exception_only

# The episode path's codec (episode.py, in front of this module): C code bound at boot.
_dumps = json_encoder(False, ", ", ": ")
_dumps_sorted = json_encoder(True, ", ", ": ")

# The name the environment module is registered under while it runs (typing, dataclasses and pickle
# look classes up in sys.modules by their module's name).
ENV_MODULE = "codegym_env"

# Trajectories keep this many (action, observation) pairs, plus always the last one.
TRAJECTORY_LIMIT = 4096

# Modules the WASI build lacks (or cannot run: no threads, no processes, no sockets, no event loop).
_UNSUPPORTED = ("asyncio", "threading", "multiprocessing", "subprocess", "socket", "concurrent", "ctypes", "select")


# Hooks the code under check can install to run inside the harness's own frames (and edit its
# evidence before it is encoded): profile and trace functions and sys.monitoring callbacks. Bound
# at boot, removed after every call into an environment.
_monitoring = _sys.monitoring
_MONITOR_EVENTS = tuple(
    getattr(_monitoring.events, name) for name in dir(_monitoring.events) if name.isupper() and name != "NO_EVENTS"
)


def _unhook():
    """Removes every hook environment code installed, before the harness handles what it returned."""
    _setprofile(None)
    _settrace(None)
    for tool in range(6):
        if _monitoring.get_tool(tool) is not None:
            _monitoring.set_events(tool, 0)
            for event in _MONITOR_EVENTS:
                _monitoring.register_callback(tool, event, None)


def emit_partial(value):
    """Replaced by the sandbox driver at boot."""
    raise RuntimeError("emit_partial is only available inside the codegym sandbox")


def host_call(value):
    """Replaced by the sandbox driver at boot."""
    raise RuntimeError("host_call is only available inside the codegym sandbox")


class _Pace:
    """Seconds of (virtual) time that pass before each call into an environment, as between an
    agent's calls: set per job by the host (0 in the primary variant)."""

    __slots__ = ("seconds",)


_pace = _Pace()
_pace.seconds = 0.0


def _call(step, action):
    """One call into an environment (its `step`), after the pause an agent's call comes after."""
    if _pace.seconds:
        _sleep(_pace.seconds)
    try:
        return step(action)
    finally:
        _unhook()


class _Compiled:
    """The code of the last environment compiled in this job (its steps usually share it)."""

    __slots__ = ("source", "code")


_compiled = _Compiled()
_compiled.source = _compiled.code = None


def _code_of(source, env_name):
    if _compiled.source != source:
        _compiled.code = compile(source, "<env:%s>" % env_name, "exec")
        _compiled.source = source
    return _compiled.code


def _load(source, env_name, name=ENV_MODULE):
    """Executes the environment module as a real module registered under `name` in sys.modules."""
    module = _types.ModuleType(name)
    module.__dict__["__builtins__"] = _builtins
    module.__file__ = "<env:%s>" % env_name
    _sys.modules[name] = module
    exec(_code_of(source, env_name), module.__dict__)
    return module


def find_env_classes(source):
    """Names of the classes, found by parsing, that define `from_env_str` (the contract's marker)."""
    tree = _ast.parse(source)
    found = []
    for node in tree.body:
        if isinstance(node, _ast.ClassDef):
            methods = {item.name for item in node.body if isinstance(item, (_ast.FunctionDef, _ast.AsyncFunctionDef))}
            if "from_env_str" in methods:
                found.append(node.name)
    return found


def _class_in(namespace, env_name):
    cls = namespace.get(env_name)
    if not isinstance(cls, type):
        raise LookupError("the module defines no class named %s" % env_name)
    return cls


def _env_class(source, env_name):
    return _class_in(_load(source, env_name).__dict__, env_name)


def _build(source, env_name, config):
    env = _env_class(source, env_name).from_env_str(config)
    if env is None:
        raise ValueError("from_env_str returned None for this configuration")
    return env


def _as_json(value):
    try:
        return _dumps_sorted(value)
    except (TypeError, ValueError):
        return None


def _error_text(failure):
    return "".join(_format_exception_only(type(failure), failure)).strip()[:2000]


def ref_answer(source, env_name, config):
    """The environment's reference answer for one configuration."""
    answer = _build(source, env_name, config).get_ref_answer()
    return {"answer": str(answer), "answer_repr": repr(answer)[:10000], "answer_json": _as_json(answer)}


def _tool_name(action):
    name = action_name(action) if isinstance(action, str) else None
    return "<malformed>" if name is None else name


_message = message_of


def _step_only(step):
    """A `self` for a candidate solver: `step` and nothing else. `step` is a plain function (no
    `__self__` leading back to the environment); any other attribute read is refused, and recorded
    unless it is a dunder (Python's own machinery reads those, formatting an error, say)."""
    reads = []

    class StepOnly:
        __slots__ = ()

        def __getattribute__(self, name):
            if name == "step":
                return step
            if not (name.startswith("__") and name.endswith("__")):
                reads.append(name)
            raise AttributeError("an oracle may only call self.step(...), not read self.%s" % name)

        def __setattr__(self, name, _value):
            reads.append(name)
            raise AttributeError("an oracle may only call self.step(...), not set self.%s" % name)

    return StepOnly(), reads


def _tools_of(env):
    """The environment's tools as it was built (before any action could change `func_mapping`)."""
    mapping = getattr(env, "func_mapping", None)
    return [name for name in mapping] if isinstance(mapping, dict) else []


class _Tracer:
    """Wraps an environment's `step` as `codegym serve` drives it: a name that is not one of its
    tools is refused (it counts as a call and never reaches the environment), every call is
    counted here (not by the environment) per tool, the trajectory is recorded, and the reward and
    done flag are read after each call as serve reads them. Keeps a copy of the environment as it
    was just before the first `Done` (for the wrong-answer probes)."""

    def __init__(self, env, keep_before_done=False):
        self.env = env
        self.step = env.step
        self.tools = _tools_of(env)
        self.refused = []
        self.tool_calls = {}
        self.trajectory = []
        self.last = None
        self.calls = 0
        self.reward = 0.0
        self.done = False
        self.keep_before_done = keep_before_done
        self.before_done = None
        self.copy_error = None

    def __call__(self, action):
        name = _tool_name(action)
        self.tool_calls[name] = self.tool_calls.get(name, 0) + 1
        self.calls += 1
        refused = refusal(action, self.tools)
        if refused is not None:
            self.refused.append(name)
            outcome = refused
        else:
            if name == "Done" and self.keep_before_done and self.before_done is None and self.copy_error is None:
                self._keep()
            outcome = _call(self.step, action)
            self.reward, self.done = reward_of(self.env), done_of(self.env)
        pair = [action if isinstance(action, str) else repr(action), _message(outcome)]
        if len(self.trajectory) < TRAJECTORY_LIMIT:
            self.trajectory.append(pair)
        self.last = pair
        return outcome

    def _keep(self):
        env = self.env
        traced = env.__dict__.pop("step", None)
        try:
            self.before_done = _deepcopy(env)
        except BaseException as failure:
            self.copy_error = _error_text(failure)
        finally:
            if traced is not None:
                env.__dict__["step"] = traced


def _tool_doc(name, method):
    """`def Name(params):` plus the docstring, with `self` dropped and the Example Output cut."""
    try:
        signature = _signature(method)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        rendered = str(signature.replace(parameters=params, return_annotation=signature.empty))
    except (TypeError, ValueError):
        rendered = "(...)"
    doc = _getdoc(method) or ""
    kept = []
    for line in doc.splitlines():
        if line.strip().lower().startswith("example output") or line.strip().lower().startswith("example:"):
            break
        kept.append(line)
    body = "\n".join("    " + line if line else "" for line in "\n".join(kept).strip().splitlines())
    return 'def %s%s:\n    r"""\n%s\n    """' % (name, rendered, body)


def _describe(cls):
    env = cls()
    names = [name for name in getattr(env, "func_mapping", {})]
    docs = []
    for name in names:
        method = getattr(cls, name, None)
        docs.append(_tool_doc(name, method) if callable(method) else "def %s(...):\n    (no method)" % name)
    return {"tools": names, "tool_docs": "\n\n".join(docs)}


def describe(source, env_name):
    """The environment's tools in `func_mapping` order, with their agent-facing documentation."""
    return _describe(_env_class(source, env_name))


_REQUIRED_METHODS = ("from_env_str", "reset", "get_ref_answer", "step")
_DOC_SECTIONS = ("Args", "Returns", "Example")


def _contract_problems(cls):
    problems = ["missing method %s" % name for name in _REQUIRED_METHODS if not callable(getattr(cls, name, None))]
    mapping = getattr(cls(), "func_mapping", None)
    if not isinstance(mapping, dict):
        return problems + ["func_mapping is not a dict"]
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
    return problems


def contract(source, env_name):
    """The static half of the environment contract: the class is found by parsing (one class
    defining `from_env_str`, named `env_name`), it has the required methods, `func_mapping` holds
    Observe and Done, and every action has a method of the same name whose docstring has Args,
    Returns and Example. Returns {"classes": [...], "problems": [...]} (empty problems: it holds)."""
    classes = find_env_classes(source)
    if env_name not in classes:
        return {"classes": classes, "problems": ["no class %s defining from_env_str (found: %s)" % (env_name, ", ".join(classes) or "none")]}
    return {"classes": classes, "problems": _contract_problems(_env_class(source, env_name))}


def _unsupported(source, failure):
    """The WASI-missing modules the module imports, when its failure is likely theirs."""
    try:
        tree = _ast.parse(source)
    except SyntaxError:
        return []
    used = set()
    for node in _ast.walk(tree):
        if isinstance(node, _ast.Import):
            used.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, _ast.ImportFrom) and node.module:
            used.add(node.module.split(".")[0])
    return sorted(name for name in used if name in _UNSUPPORTED)


def _run_main(source, env_name, output_limit=100000):
    """Runs the module as `__main__` (its own self-tests), capturing what it prints. Returns the
    self-test facts and the module's namespace (whatever the module defined before it stopped)."""
    module = _types.ModuleType("__main__")
    module.__dict__["__builtins__"] = _builtins
    module.__file__ = "<env:%s>" % env_name
    saved_main, saved_stdout = _sys.modules.get("__main__"), _sys.stdout
    _sys.modules["__main__"] = module
    captured = _io.StringIO()
    _sys.stdout = captured
    exit_code, error = 0, None
    try:
        exec(_code_of(source, env_name), module.__dict__)
    except SystemExit as stop:
        exit_code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as failure:
        exit_code, error = 1, "%s: %s" % (type(failure).__name__, failure)
    finally:
        _sys.stdout = saved_stdout
        if saved_main is not None:
            _sys.modules["__main__"] = saved_main
    printed = captured.getvalue()
    facts = {
        "exit_code": exit_code,
        "error": error,
        "reward_1": printed.count("reward=1"),
        "reward_0": printed.count("reward=0"),
        "stdout": printed[:output_limit],
        "unsupported": _unsupported(source, error) if exit_code != 0 else [],
    }
    return facts, module.__dict__


def self_test(source, env_name):
    """Runs the module as `__main__` and reports its exit status and how many `reward=1` /
    `reward=0` it printed."""
    return _run_main(source, env_name)[0]


def module_checks(source, env_name):
    """The module-wide checks from one execution of the module: its self-tests (as `__main__`),
    then the contract and the tool description from the classes it defined."""
    facts, namespace = _run_main(source, env_name)
    classes = find_env_classes(source)
    result = {"self_test": facts, "contract": None, "description": None, "contract_error": None, "description_error": None}
    if env_name not in classes:
        result["contract"] = {"classes": classes, "problems": ["no class %s defining from_env_str (found: %s)" % (env_name, ", ".join(classes) or "none")]}
        result["description_error"] = "the module defines no environment class %s" % env_name
        return result
    try:
        cls = _class_in(namespace, env_name)
        result["contract"] = {"classes": classes, "problems": _contract_problems(cls)}
        result["description"] = _describe(cls)
    except BaseException as failure:
        text = _error_text(failure)
        result["contract_error" if result["contract"] is None else "description_error"] = text
    return result


def _splice(source, env_name, solver):
    """The module with a candidate `solve` in place of the class's own: the candidate's source
    runs at module level right after the class (so its imports work), then replaces the method,
    before the module's `__main__` block runs."""
    tree = _ast.parse(source)
    cls = next((n for n in tree.body if isinstance(n, _ast.ClassDef) and n.name == env_name), None)
    if cls is None:
        raise LookupError("the module defines no class named %s" % env_name)
    lines = source.splitlines(keepends=True)
    spliced = "\n# codegym: candidate solver\n%s\n%s.solve = solve\n" % (solver.strip("\n"), env_name)
    return "".join(lines[: cls.end_lineno]) + spliced + "".join(lines[cls.end_lineno :])


def smoke_test(source, env_name, solver):
    """The module's own self-tests with a candidate solve spliced in (stage 6 of the method)."""
    return self_test(_splice(source, env_name, solver), env_name)


def _done(env, answer):
    """Submits `answer` with Done: the message and the environment's own reward attribute."""
    message = _message(_call(env.step, _dumps({"name": "Done", "parameters": {"answer": answer}})))
    reward = reward_of(env)
    _unhook()
    return {"answer": _as_json(answer), "message": message[:500], "reward": reward}


def _replay_to_done(source, env_name, config, trajectory):
    """A new environment driven through the oracle's actions up to (not including) its first Done."""
    env = _build(source, env_name, config)
    for action, _observation in trajectory:
        if _tool_name(action) == "Done":
            break
        _call(env.step, action)
    return env


def _wrong_answers(right):
    """Wrong answers of the right answer's type: near misses, and values an environment that
    compares loosely would take (a number of the same parity, a text containing the answer)."""
    if isinstance(right, bool):
        candidates = [not right]
    elif isinstance(right, int):
        candidates = [right + 1, right - 1, right + 2, 0, -right, 2 * right, int(str(abs(right)) + "1")]
    elif isinstance(right, float):
        candidates = [right + 1, right - 1, right + 0.5, 0.0, -right, 2 * right]
    elif isinstance(right, str):
        candidates = [right + "x", right[:-1], right[::-1], right.swapcase(), " " + right, right + right, "x"]
    elif isinstance(right, (list, tuple)):
        items = list(right)
        candidates = [items + [items[-1] if items else 0], items[:-1], items[::-1], [items], items * 2]
        if items and isinstance(items[0], int) and not isinstance(items[0], bool):
            candidates.append([items[0] + 1] + items[1:])
    elif isinstance(right, dict):
        candidates = [dict(right, codegym_extra=0), {}]
        if right:
            key = sorted(right, key=repr)[0]
            candidates.append({k: v for k, v in right.items() if k != key})
    else:
        candidates = ["codegym-wrong-answer"]
    if not (isinstance(right, (str, list, tuple, dict)) and len(right) == 0):
        candidates.append("")  # an empty input can have an empty answer: "" is then right
    if right is not None:
        candidates.append(None)  # a missing answer read with a default
    wrong, seen = [], set()
    for candidate in candidates:
        text = _as_json(candidate)
        if text is not None and candidate != right and text not in seen:
            seen.add(text)
            wrong.append(candidate)
    return wrong


def _pickle_failure(env):
    """Why the environment's state does not survive a pickle round trip (what `codegym serve`
    holds idle sessions as), or None: the copy must be picklable and answer Observe as the
    original does."""
    observe = _dumps({"name": "Observe", "parameters": {}})
    try:
        copy = _unpickle(_pickle(env))
        if _message(_call(copy.step, observe)) != _message(_call(env.step, observe)):
            return "the unpickled state answers Observe differently"
    except BaseException as failure:
        return _error_text(failure)
    return None


def probe(source, env_name, config):
    """Evidence for the anti-gaming probes on one configuration; the host judges it. Wrong answers
    are near misses of the reference answer's own type ([`_wrong_answers`]). Returns:
    - reset: Done(answer) right after reset, per wrong answer;
    - final: Done(answer) in the state where the oracle submitted its answer (a copy of the
      environment just before its first Done), per wrong answer, and `final_right`: the right
      answer there (it must earn 1, or the copy is not that state);
    - observe: what Observe shows right after reset;
    - reads: attributes other than `step` that the environment's own solve read of `self`;
    - pickle: why the state does not survive a pickle round trip, after reset or where the oracle
      answered (None when it does)."""
    evidence = {"reset": [], "final": [], "final_right": None, "observe": None, "reads": [], "solve_error": None, "copy": "none"}
    evidence["pickle"] = _pickle_failure(_build(source, env_name, config))
    right = _build(source, env_name, config).get_ref_answer()
    answers = _wrong_answers(right)
    evidence["right"] = _as_json(right)
    for answer in answers:
        evidence["reset"].append(_done(_build(source, env_name, config), answer))
    evidence["observe"] = _message(_call(_build(source, env_name, config).step, _dumps({"name": "Observe", "parameters": {}})))[:20000]
    env = _build(source, env_name, config)
    tracer = _Tracer(env, keep_before_done=True)
    guarded, reads = _step_only(lambda action: tracer(action))
    try:
        type(env).solve(guarded)
    except BaseException as failure:  # whatever it raises, the evidence gathered so far stands
        evidence["solve_error"] = _error_text(failure)
    _unhook()
    evidence["reads"] = sorted(set(reads))
    if tracer.before_done is None:
        return evidence
    evidence["pickle"] = evidence["pickle"] or _pickle_failure(_deepcopy(tracer.before_done))
    copies = lambda: _deepcopy(tracer.before_done)
    evidence["copy"] = "deepcopy"
    try:
        evidence["final_right"] = _done(copies(), right)
    except Exception as failure:
        evidence["final_right"] = {"answer": None, "message": _error_text(failure), "reward": None}
    if "reward=1" not in evidence["final_right"]["message"]:
        # The copy is not the state the oracle answered in: drive a new environment there instead.
        copies = lambda: _replay_to_done(source, env_name, config, tracer.trajectory)
        evidence["copy"] = "replay"
        evidence["final_right"] = _done(copies(), right)
    for answer in answers:
        evidence["final"].append(_done(copies(), answer))
    return evidence



# The exploit battery, the serving replay and the tool timings. The host plans every action these
# steps take (from the reference answer and the oracle's trajectory it already holds) and checks
# that the evidence answers exactly what it sent; the steps only drive the environment as
# `codegym serve` does and report what came back.

# Observations are cut at this many characters in the battery's evidence.
OBSERVATION_LIMIT = 2000
# A repeated call's observations are not judged, only its answers: kept short in the frame.
REPEATED_OBSERVATION_LIMIT = 200


def _play(env, tools, actions, until_done=True):
    """Drives `env` through `actions` as a served session: a name that is not a tool is refused
    (it counts as a call and never reaches the environment), and once the episode is done nothing
    more runs (unless `until_done` is false: an agent's calls after its answer still reach the
    environment). One record per call: the action, what it showed, the reward and done flag after
    it."""
    steps = []
    for action in actions:
        if until_done and done_of(env):
            break
        refused = refusal(action, tools)
        observation = refused if refused is not None else message_of(_call(env.step, action))
        reward, done = reward_of(env), done_of(env)
        _unhook()  # the accessors ran environment code too; what they returned is kept by value
        steps.append(
            {
                "action": action,
                "observation": observation[:OBSERVATION_LIMIT],
                "reward": reward,
                "done": done,
                "refused": refused is not None,
            }
        )
    return steps


class _Forks:
    """The states reached by replaying a prefix of a trajectory, pickled once per (configuration,
    prefix): every episode forked from one starts from the same bytes, as a served session restored
    from its state would."""

    __slots__ = ("states",)


_forks = _Forks()
_forks.states = {}


def _at(source, env_name, config, prefix, tools):
    key = (config, len(prefix), _dumps(prefix))
    state = _forks.states.get(key)
    if state is not None:
        return _unpickle(state)
    env = _build(source, env_name, config)
    _play(env, tools, prefix)
    try:
        _forks.states[key] = _pickle(env)
    except BaseException:
        pass  # an unpicklable state is replayed for every episode (and not servable)
    return env


def episode(source, env_name, config, prefix, actions, tools):
    """One episode of the battery: the environment after `prefix`, then `actions`. (The episodes
    played as `codegym serve` plays a session are played from the host, a job per call.)"""
    return {"steps": _play(_at(source, env_name, config, prefix, tools), tools, actions)}


def replay(source, env_name, config, actions, tools):
    """An agent's calls played again from reset, every one of them (after its answer too), as the
    agent's relayed calls reached the environment: the determinism check's rerun."""
    return {"steps": _play(_build(source, env_name, config), tools, actions, until_done=False)}


def repeated(source, env_name, config, calls, answer, at, tools):
    """`calls` played in a row from reset, and `answer` submitted on a copy of the state after
    each number of calls in `at` (one episode serves every checkpoint). Reports the calls
    (observations cut short: only the answers are judged), each checkpoint's answer, and how large
    the state pickles after the last call."""
    env = _build(source, env_name, config)
    steps, answers, checkpoints = [], [], set(at)
    for made, call in enumerate(calls, 1):
        steps.extend(_play(env, tools, [call]))
        if done_of(env):
            break
        if made in checkpoints:
            answers.append({"at": made, "steps": _play(_unpickle(_pickle(env)), tools, [answer])})
    for step in steps:
        step["observation"] = step["observation"][:REPEATED_OBSERVATION_LIMIT]
    return {"steps": steps, "answers": answers, "state_bytes": len(_pickle(env))}


def observe_prefixes(source, env_name, config, actions, tools):
    """What Observe shows after every prefix of `actions` (the empty one first), each on a copy
    of the state, so the run itself goes on unchanged."""
    observe = _dumps({"name": "Observe", "parameters": {}})
    env = _build(source, env_name, config)
    seen = []
    for at in range(len(actions) + 1):
        if at:
            _play(env, tools, actions[at - 1 : at])
        if done_of(env):
            break
        copy = _unpickle(_pickle(env))
        seen.append(message_of(_call(copy.step, observe))[:OBSERVATION_LIMIT])
    return {"observations": seen}


def two_episodes(source, env_name, first_config, first_actions, config, actions, tools):
    """An episode of `config` played fresh, and again after an episode of `first_config` in the
    same loaded module (class-level state survives between them, as in a native server)."""
    fresh = _play(_build(source, env_name, config), tools, actions)
    cls = _env_class(source, env_name)
    _play(cls.from_env_str(first_config), tools, first_actions)
    return {"fresh": fresh, "second": _play(cls.from_env_str(config), tools, actions)}


# Oracles as agents. A solver runs in an interpreter where no environment was ever built
# (`agent_solve`); each call it makes goes to the host, which counts it, refuses a name that is not
# a tool, and relays the rest to the environment held in another interpreter (`episode_serve`).
# No frame, `gc` referent, module global, closure or class attribute leads from
# the solver to the environment: they are in different interpreters.


def episode_serve(source, env_name, config, pace=0.0):
    """Holds the environment of one agent cell for the whole cell: says it is ready (with its
    tools), then asks the host for each relayed call and answers it, until the host says stop. A
    call that raises is answered with what it raised."""
    _pace.seconds = pace
    env = _build(source, env_name, config)
    reply = host_call({"tools": _tools_of(env)})
    while "action" in reply:
        try:
            with _Quiet():
                answer = _relayed_call(env, reply["action"])
        except Exception as failure:
            answer = {"raised": _error_text(failure)}
        reply = host_call(answer)
    return {}


def _relayed_call(env, action):
    """One relayed call: what it showed, the flag `step` returned, the reward and done flag as
    `codegym serve` reads them, and the environment's own call count."""
    outcome = _call(env.step, action)
    flag = outcome[0] if isinstance(outcome, tuple) and len(outcome) == 2 else None
    count = getattr(env, "step_count", None)
    return {
        "observation": message_of(outcome),
        "flag": bool(flag) if flag is not None else None,
        "reward": reward_of(env),
        "done": done_of(env),
        "env_calls": count if isinstance(count, int) and not isinstance(count, bool) else None,
    }


def _relayed(action):
    """A solver's `step`: the call goes to the host; the reply is what the environment showed."""
    text = action if isinstance(action, str) else _dumps(action)
    reply = host_call({"action": text})
    if "error" in reply:
        raise RuntimeError(reply["error"])
    flag = reply.get("flag")
    return reply["observation"] if flag is None else (flag, reply["observation"])


def agent_solve(source, env_name, solver=None):
    """Runs an oracle as an agent: the environment's own `solve` (or a candidate's), with a
    `self` that has only `step`, each call relayed by the host. Returns what `solve` returned."""
    cls = _env_class(source, env_name)
    if solver is None:
        solve = cls.solve
    else:
        namespace = dict(cls.reset.__globals__)
        exec(compile(solver, "<solver>", "exec"), namespace)
        solve = namespace.get("solve")
        if not callable(solve):
            raise LookupError("the solver source defines no function named solve")
    guarded, reads = _step_only(_relayed)
    with _Quiet():
        message = str(solve(guarded))
    return {"message": message[:2000], "reads": sorted(set(reads))}


class _Discard:
    """Where an environment's prints go during the checks that only read results: a sound
    environment that prints a lot must not run a step out of its output budget."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


_DISCARD = _Discard()


class _Quiet:
    """While it is entered, what the code under check prints goes nowhere (`_Discard`)."""

    __slots__ = ("saved",)

    def __enter__(self):
        self.saved = _sys.stdout, _sys.stderr
        _sys.stdout = _sys.stderr = _DISCARD

    def __exit__(self, *_exc):
        _sys.stdout, _sys.stderr = self.saved
        return False


# The steps that capture what the module prints themselves.
_PRINTING_STEPS = ("module", "self_test", "smoke_test")


class _Timed:
    """The environment the tool timings call into, one call per step (the host times each)."""

    __slots__ = ("env",)


_timed = _Timed()
_timed.env = None


def timing_build(source, env_name, config):
    _timed.env = _build(source, env_name, config)
    return {}


def timing_call(action, tools):
    return {"steps": _play(_timed.env, tools, [action])}


def run_steps(source, env_name, steps, configs=(), solvers=(), trajectories=(), tools=(), pace=0.0):
    """Runs many steps on one environment in one job, handing each step's result to the host as
    soon as it is ready (`emit_partial`, installed by the sandbox driver): {"ok": result} or
    {"error": message}. Steps name configurations and solvers by their index in `configs` and
    `solvers` (each is sent once however many steps use it). A step is {"op": "module"} |
    {"op": "describe"} | {"op": "self_test"} | {"op": "contract"} | {"op": "classes"} |
    {"op": "ref_answer", "config"} | {"op": "smoke_test", "solver"} | {"op": "probe", "config"},
    and the second round's steps, whose actions the host wrote: {"op": "replay", "config",
    "trajectory"} | {"op": "episode", "config", "prefix": [trajectory, length], "actions"} |
    {"op": "repeated", "config", "calls", "answer", "at"} | {"op": "observe_prefixes",
    "config", "trajectory"} | {"op": "two_episodes", "first": [config, trajectory], "config", "trajectory"} |
    {"op": "timing_build", "config"} | {"op": "timing_call", "action"}, where a trajectory is an
    index into `trajectories` (lists of actions) and `tools` are the documented tools. One step
    failing does not stop the rest."""
    _pace.seconds = pace
    for step in steps:
        op = step["op"]
        saved = _sys.stdout, _sys.stderr
        if op not in _PRINTING_STEPS:
            _sys.stdout = _sys.stderr = _DISCARD
        try:
            config = configs[step["config"]] if "config" in step else None
            solver = solvers[step["solver"]] if step.get("solver") is not None else None
            if op == "module":
                value = module_checks(source, env_name)
            elif op == "describe":
                value = describe(source, env_name)
            elif op == "self_test":
                value = self_test(source, env_name)
            elif op == "contract":
                value = contract(source, env_name)
            elif op == "classes":
                value = find_env_classes(source)
            elif op == "ref_answer":
                value = ref_answer(source, env_name, config)
            elif op == "smoke_test":
                value = smoke_test(source, env_name, solver)
            elif op == "probe":
                value = probe(source, env_name, config)
            elif op == "episode":
                trajectory, length = step["prefix"]
                prefix = trajectories[trajectory][:length]
                value = episode(source, env_name, config, prefix, step["actions"], tools)
            elif op == "replay":
                value = replay(source, env_name, config, trajectories[step["trajectory"]], tools)
            elif op == "repeated":
                value = repeated(source, env_name, config, step["calls"], step["answer"], step["at"], tools)
            elif op == "observe_prefixes":
                value = observe_prefixes(source, env_name, config, trajectories[step["trajectory"]], tools)
            elif op == "two_episodes":
                first, first_trajectory = step["first"]
                actions = trajectories[step["trajectory"]]
                value = two_episodes(source, env_name, configs[first], trajectories[first_trajectory], config, actions, tools)
            elif op == "timing_build":
                value = timing_build(source, env_name, config)
            elif op == "timing_call":
                value = timing_call(step["action"], tools)
            else:
                raise ValueError("unknown step %r" % op)
            outcome = {"ok": value}
        except BaseException as failure:
            outcome = {"error": _error_text(failure)}
        finally:
            _sys.stdout, _sys.stderr = saved
        emit_partial(outcome)
    return len(steps)
