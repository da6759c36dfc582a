# codegym episode path: the text the sandbox engine puts in front of both the verification harness
# (harness.py) and the serve sessions (session.py), so that verification drives an environment
# exactly as `codegym serve` does: one JSON codec, one way to read an environment's reward and done
# flag, one refusal of a name that is not one of its tools.
#
# Everything here is bound when the image boots, before any environment code runs. The codec is
# json's C encoder and scanner, made here: a module that patches `json.JSONEncoder.iterencode`,
# `json.dumps` or `JSONDecoder.raw_decode` later changes what it sees, not what the checks encode
# or decode.

import builtins as _episode_builtins
from builtins import dict, str, tuple
from json import JSONDecoder as _EpisodeDecoder
from json.encoder import c_encode_basestring_ascii as _c_encode_string
from json.encoder import c_make_encoder as _c_make_encoder
from json.scanner import c_make_scanner as _c_make_scanner

_e_float, _e_int, _e_isinstance, _e_bool = (
    _episode_builtins.float,
    _episode_builtins.int,
    _episode_builtins.isinstance,
    _episode_builtins.bool,
)
_e_type, _e_getattr, _e_len = _episode_builtins.type, _episode_builtins.getattr, _episode_builtins.len
_e_TypeError, _e_ValueError, _e_AttributeError, _e_StopIteration = (
    _episode_builtins.TypeError,
    _episode_builtins.ValueError,
    _episode_builtins.AttributeError,
    _episode_builtins.StopIteration,
)
_e_join = "".join


def _not_json(value):
    raise _e_TypeError("Object of type %s is not JSON serializable" % _e_type(value).__name__)


def json_encoder(sort_keys, item_separator, key_separator):
    """A function giving the JSON text of a value, from the C encoder (ASCII-only output, NaN
    allowed, as json's defaults)."""

    def encode(value):
        make = _c_make_encoder({}, _not_json, _c_encode_string, None, key_separator, item_separator, sort_keys, False, True)
        return _e_join(make(value, 0))

    return encode


def _not_strict(constant):
    raise _e_ValueError("%s is not JSON" % constant)


_scan = _c_make_scanner(_EpisodeDecoder())
# Strict JSON, as the host reads it: no NaN or Infinity.
_scan_strict = _c_make_scanner(_EpisodeDecoder(parse_constant=_not_strict))


def json_decode(text, strict=False):
    """The value of a JSON text (surrounding whitespace allowed), from the C scanner; with
    `strict`, only what the host reads as JSON (no NaN or Infinity)."""
    stripped = text.strip(" \t\n\r")
    try:
        value, end = (_scan_strict if strict else _scan)(stripped, 0)
    except _e_StopIteration:
        raise _e_ValueError("not JSON: %r" % text[:80])
    if end != _e_len(stripped):
        raise _e_ValueError("extra data after the JSON value")
    return value


def _attribute(env, name, fallback):
    try:
        return _e_getattr(env, name)
    except _e_AttributeError:
        return _e_getattr(env, fallback, None)


def reward_of(env):
    """The reward `codegym serve` hands a trainer: the environment's `reward`, else `_reward`;
    0.0 when it has neither or it is not a number."""
    reward = _attribute(env, "reward", "_reward")
    return _e_float(reward) if _e_isinstance(reward, (_e_int, _e_float)) else 0.0


def done_of(env):
    """Whether the episode is over, as `codegym serve` reads it: `finished`, else `_done`."""
    return _e_bool(_attribute(env, "finished", "_done"))


def message_of(outcome):
    """The observation text of what `step` returned (a `(flag, message)` pair or the message)."""
    message = outcome[1] if _e_isinstance(outcome, tuple) and _e_len(outcome) == 2 else outcome
    return str(message)


def unknown_tool(name, tools):
    """The observation of a call to a name that is not a tool, as `codegym serve` answers it (the
    call counts as a step and never reaches the environment)."""
    return "Error: unknown tool `%s`. The tools are: %s." % (name, ", ".join(tools))


MALFORMED = 'Error: malformed action; expected {"name": TOOL, "parameters": {...}}.'


def refusal(action, tools):
    """What `codegym serve` answers in the environment's place, or None when the action reaches
    it: JSON that is not an object with a string `name` (and object `parameters`, when it has
    any) is malformed; a name that is not one of `tools` is unknown. A text that is not strict
    JSON is left to the environment's own parser (as the host's `refusal`)."""
    if not _e_isinstance(action, str):
        return MALFORMED
    try:
        call = json_decode(action, strict=True)
    except _e_ValueError:
        return None
    if not _e_isinstance(call, dict) or not _e_isinstance(call.get("name"), str):
        return MALFORMED
    if "parameters" in call and not _e_isinstance(call["parameters"], dict):
        return MALFORMED
    return None if call["name"] in tools else unknown_tool(call["name"], tools)


def action_name(action):
    """The tool an action (the JSON text of {"name", "parameters"}) calls, or None."""
    try:
        call = json_decode(action)
    except _e_ValueError:
        return None
    name = call.get("name") if _e_isinstance(call, dict) else None
    return name if _e_isinstance(name, str) else None

