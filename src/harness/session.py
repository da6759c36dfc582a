# codegym serve sessions: runs inside the sandbox, as a private module of the driver (it never
# enters sys.modules, so environment code cannot import it).
#
# One interpreter holds one session's environment at a time. `session_compile` compiles an
# environment's module once (in an interpreter no environment code has run in, so its bytecode is
# the source's); the host keeps it and sends it with every later call, which then only unmarshals
# it. `session_start` builds the environment from its configuration, `session_restore` brings back
# a state the host kept (the module executed, then the state unpickled), and `session_step` runs
# one action. Every call that leaves an environment behind returns its state pickled (base64), so
# the host always holds the last good state: an idle session costs those bytes, not an
# interpreter, and a step that traps loses nothing but itself. Everything is bound here when the
# image boots, before any environment code runs. The reward and done flag are read as the
# verification harness reads them (`reward_of`, `done_of`: the engine puts episode.py in front of
# this module and of the harness).

from builtins import (
    AttributeError,
    LookupError,
    ValueError,
    bool,
    callable,
    compile,
    exec,
    float,
    getattr,
    int,
    isinstance,
    len,
    str,
    tuple,
    type,
)
import builtins as _builtins
import sys as _sys
import types as _types
from binascii import a2b_base64 as _from_base64
from binascii import b2a_base64 as _to_base64
from marshal import dumps as _marshal
from marshal import loads as _unmarshal
from pickle import dumps as _pickle
from pickle import loads as _unpickle

# The public functions of the driver's private modules, by name (set by the sandbox driver at boot).
peers = {}

# The name the environment module is registered under while it runs (pickle finds the class there),
# as the verification harness does.
ENV_MODULE = "codegym_env"


class _Held:
    """The environment this interpreter serves (one per interpreter), and the bytecode it was
    last given with what it unmarshals to (the verification harness restores many sessions of one
    environment in one interpreter; unmarshalling is most of a restore)."""

    __slots__ = ("env", "code", "unmarshalled")


_held = _Held()
_held.env = _held.code = _held.unmarshalled = None


def _filename(env_name):
    return "<env:%s>" % env_name


def _load(code, env_name):
    """Executes the environment module (its marshalled bytecode) as a real module and returns its
    environment class."""
    module = _types.ModuleType(ENV_MODULE)
    module.__dict__["__builtins__"] = _builtins
    module.__file__ = _filename(env_name)
    _sys.modules[ENV_MODULE] = module
    if _held.code != code:
        _held.unmarshalled = _unmarshal(_from_base64(code))
        _held.code = code
    exec(_held.unmarshalled, module.__dict__)
    cls = module.__dict__.get(env_name)
    if not isinstance(cls, type):
        raise LookupError("the module defines no class named %s" % env_name)
    return cls


def _report(env, text, max_observation):
    """What the host keeps after a call: the observation (cut at `max_observation` characters,
    with its full length), the environment's own reward and done flag, and its pickled state."""
    state = _encoded(_pickle(env))
    return {
        "observation": text[:max_observation],
        "observation_chars": len(text),
        "reward": reward_of(env),
        "done": done_of(env),
        "state": state,
    }


def _encoded(data):
    return _to_base64(data, newline=False).decode("ascii")


def session_compile(source, env_name):
    """The environment module's bytecode, marshalled (base64), for the calls below."""
    return _encoded(_marshal(compile(source, _filename(env_name), "exec")))


def session_start(code, env_name, config, max_observation):
    """Builds the environment of configuration `config` (`EnvName@{json}`). Its first observation
    is what its own `_get_obs`/`get_obs` shows, when it has one (as the release's server does)."""
    env = _load(code, env_name).from_env_str(config)
    if env is None:
        raise ValueError("from_env_str returned None for this configuration")
    text = "The environment is ready."
    for name in ("_get_obs", "get_obs"):
        if callable(getattr(env, name, None)):
            text = str(getattr(env, name)())
            break
    _held.env = env
    return _report(env, text, max_observation)


def session_restore(code, env_name, state, anew=False):
    """Brings back a state the host kept: the module executed, then the state unpickled. With
    `anew`, the public modules are executed again first, as a new interpreter has them (the
    verification harness restores many sessions in one interpreter)."""
    if anew:
        peers["fresh_public_modules"]()
    _load(code, env_name)
    _held.env = _unpickle(_from_base64(state))
    return True


def session_step(action, max_observation):
    """Runs one action (the JSON text of {"name", "parameters"}) on the held environment."""
    env = _held.env
    if env is None:
        raise ValueError("this interpreter holds no environment")
    return _report(env, message_of(env.step(action)), max_observation)
