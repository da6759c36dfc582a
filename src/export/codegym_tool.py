"""The verl tool of a codegym export: `codegym_step(name, arguments)` plays one tool call of the
environment a training row names, through `codegym serve`'s CodeGym REST API.

Written by `codegym export --format verl` beside `tool_config.yaml`, which names the class
`codegym_tool.CodegymStepTool` and gives the server's address as `config.server_url`. Only the
Python standard library is used; when verl is importable the tool subclasses verl's `BaseTool`,
and it imports without verl (or torch) too.

verl's ToolAgentLoop creates a tool instance, executes one call and releases the instance around
every single call, so an episode cannot live in a tool instance: it lives in a session keyed by
the rollout's request id (`agent_data.request_id`, which verl passes to `execute`). The first
call of a rollout takes a server instance (`/get_instance`) and starts the row's configuration in
it (`/start`, from the row's `extra_info.tools_kwargs.codegym_step.create_kwargs`); each call is
a `/step`; the step that ends the episode (`Done`) releases the server instance and keeps the
reward. `compute_score` gives verl's reward manager that reward (`extra_info["codegym_reward"]`,
which the tool sets in the rollout's extra fields, or the best step reward as a fallback).
"""

import asyncio
import collections
import json
import threading
import urllib.error
import urllib.request
import uuid

try:
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import ToolResponse
except ImportError:  # verl needs torch; the tool does not

    class BaseTool:
        """The part of verl's BaseTool this module relies on."""

        def __init__(self, config, tool_schema):
            self.config = config
            self.tool_schema = tool_schema
            function = tool_schema["function"] if isinstance(tool_schema, dict) else tool_schema.function
            self.name = function["name"] if isinstance(function, dict) else function.name

    class ToolResponse:
        """verl's ToolResponse, text only."""

        def __init__(self, text=None, image=None, video=None):
            self.text = text
            self.image = image
            self.video = video


DEFAULT_SERVER_URL = "http://127.0.0.1:8001"


class CodegymError(Exception):
    """The server refused a request (HTTP 4xx with {"error": ...}) or could not be reached."""


class CodegymClient:
    """The CodeGym REST API: every endpoint is a POST of a JSON object answered by one."""

    def __init__(self, server_url, timeout_s=60.0):
        self.server_url = server_url.rstrip("/")
        self.timeout_s = timeout_s

    def call(self, endpoint, body):
        request = urllib.request.Request(
            self.server_url + endpoint,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8") or "{}")
        except urllib.error.HTTPError as e:
            raise CodegymError("%s: %s" % (endpoint, _error_text(e))) from None
        except (urllib.error.URLError, OSError) as e:
            raise CodegymError("cannot reach codegym serve at %s: %s" % (self.server_url, e)) from None


def _error_text(error):
    try:
        return json.loads(error.read().decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError):
        return "HTTP %d" % error.code


class Session:
    """One rollout's episode on the server."""

    def __init__(self, instance_id):
        self.instance_id = instance_id
        self.steps = 0
        self.reward = 0.0
        self.done = False
        self.last_call = None


# Sessions outlive the tool objects verl creates and copies: keyed by (server, request id), with
# the latest call's instance id of each session mapped back to its key (for `calc_reward`).
_SESSIONS = collections.OrderedDict()
_KEYS = {}
_LOCK = threading.Lock()


class CodegymStepTool(BaseTool):
    """`codegym_step(name, arguments)`: one call of the row's environment's tool `name`."""

    def __init__(self, config, tool_schema):
        super().__init__(config, tool_schema)
        self.client = CodegymClient(config.get("server_url", DEFAULT_SERVER_URL), float(config.get("timeout_s", 60)))
        self.max_sessions = int(config.get("max_sessions", 4096))
        self._calls = {}  # verl's per-call instance id -> the row's create_kwargs

    async def create(self, instance_id=None, **kwargs):
        instance_id = instance_id or uuid.uuid4().hex
        self._calls[instance_id] = dict(kwargs.get("create_kwargs") or {})
        return instance_id, ToolResponse()

    async def execute(self, instance_id, parameters, **kwargs):
        """Plays `parameters` ({"name", "arguments"}) as one step: (response, step reward, metrics)."""
        agent_data = kwargs.get("agent_data")
        key = (self.client.server_url, getattr(agent_data, "request_id", None) or instance_id)
        try:
            action = _action(parameters)
        except ValueError as e:
            return ToolResponse(text="Error: %s" % e), 0.0, {"codegym_error": str(e)}
        session = await asyncio.to_thread(self._session, key, self._calls.get(instance_id, {}))
        self._remember(key, session, instance_id)
        if session.done:
            return ToolResponse(text="The episode is over: Done was already called."), 0.0, {"codegym_done": True}
        try:
            result = await asyncio.to_thread(self.client.call, "/step", {"instance_id": session.instance_id, "action": action})
        except CodegymError as e:
            if "cannot reach" in str(e):
                raise
            return ToolResponse(text="Error: %s" % e), 0.0, {"codegym_error": str(e)}
        session.steps += 1
        session.reward = float(result.get("reward", 0.0))
        session.done = bool(result.get("done", False))
        if session.done:
            await asyncio.to_thread(self._release_instance, session)
        if agent_data is not None:
            agent_data.extra_fields["codegym_reward"] = session.reward
        metrics = {"codegym_steps": session.steps, "codegym_done": session.done}
        return ToolResponse(text=str(result.get("observation", ""))), session.reward, metrics

    async def calc_reward(self, instance_id, **kwargs):
        """The reward of the episode `instance_id` took part in: final once Done was called."""
        with _LOCK:
            session = _SESSIONS.get(_KEYS.get(instance_id))
        if session is None:
            return 0.0
        if session.done:
            return session.reward
        result = await asyncio.to_thread(self.client.call, "/reward", {"instance_id": session.instance_id})
        return float(result.get("reward", 0.0))

    async def release(self, instance_id, **kwargs):
        # verl releases after every call; the episode goes on in its session.
        self._calls.pop(instance_id, None)

    def _session(self, key, create_kwargs):
        with _LOCK:
            session = _SESSIONS.get(key)
            if session is not None:
                _SESSIONS.move_to_end(key)
                return session
        if "env_str" not in create_kwargs:
            raise CodegymError("the row has no extra_info.tools_kwargs.codegym_step.create_kwargs.env_str")
        instance_id = self.client.call("/get_instance", {})["instance_id"]
        start = {"instance_id": instance_id, "env_str": create_kwargs["env_str"]}
        if create_kwargs.get("seed") is not None:
            start["seed"] = create_kwargs["seed"]
        self.client.call("/start", start)
        session = Session(instance_id)
        with _LOCK:
            _SESSIONS[key] = session
            evicted = []
            while len(_SESSIONS) > self.max_sessions:
                old = _SESSIONS.popitem(last=False)[1]
                _KEYS.pop(old.last_call, None)
                evicted.append(old)
        for old in evicted:
            self._release_instance(old)
        return session

    def _remember(self, key, session, instance_id):
        with _LOCK:
            _KEYS.pop(session.last_call, None)
            session.last_call = instance_id
            _KEYS[instance_id] = key

    def _release_instance(self, session):
        if session.instance_id is None:
            return
        instance_id, session.instance_id = session.instance_id, None
        try:
            self.client.call("/release_instance", {"instance_id": instance_id})
        except CodegymError:
            pass  # the server reclaims abandoned instances; training goes on


def _action(parameters):
    """The environment action, the JSON text of {"name", "parameters"}, from codegym_step's arguments."""
    if not isinstance(parameters, dict):
        raise ValueError("codegym_step takes an object with `name` and `arguments`")
    name = parameters.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("codegym_step needs `name`, the environment tool to call")
    arguments = parameters.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError as e:
            raise ValueError("`arguments` is not JSON: %s" % e) from None
    if not isinstance(arguments, dict):
        raise ValueError("`arguments` must be a JSON object, such as {\"index\": 2}")
    return json.dumps({"name": name, "parameters": arguments})


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's reward function: the environment's reward for the rollout (0 or 1)."""
    info = extra_info or {}
    if info.get("codegym_reward") is not None:
        return float(info["codegym_reward"])
    rewards = info.get("tool_rewards") or []
    return float(max(rewards)) if len(rewards) else 0.0
