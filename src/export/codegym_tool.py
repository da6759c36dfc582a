"""The verl tool of a codegym export: `codegym_step(name, arguments)` plays one tool call of the
environment a training row names, through `codegym serve`'s CodeGym REST API.

Written by `codegym export --format verl` beside `tool_config.yaml`, which names the class
`codegym_tool.CodegymStepTool` and holds its settings (`config`: `server_url`, `token`, `timeout_s`,
`lease_s`, `fail_on_server_error`, `max_assistant_turns`, `max_user_turns`). It subclasses verl's
`BaseTool` when verl is importable and imports without verl (or torch) too; it needs aiohttp, a
dependency of verl.

verl's ToolAgentLoop creates a tool instance, executes one call and releases the instance around
every single call, with the rollout's `agent_data`, so an episode lives with the rollout, not with
a tool instance and not with `agent_data.request_id` (under `full_determinism` that id is
`det-{i}`, the same in every training step). An episode is keyed by the rollout's `agent_data`
object itself and ends with it:
- the first call of a rollout takes a server instance (`/get_instance`, with a lease) and starts
  the row's configuration in it (`/start`, from `extra_info.tools_kwargs.codegym_step.create_kwargs`);
  each call is a `/step`; calls of one turn (verl runs them concurrently) are played one at a time,
  in the order verl made them;
- the server instance is released (`/release_instance`) when the episode ends: on `Done`, after the
  last turn the rollout may take (`max_assistant_turns` / `max_user_turns`, the rollout's own
  limits), or when the rollout is gone for any other reason (length limit, error): `agent_data` is
  then collected, and its finalizer releases the instance;
- while it holds instances the tool renews their leases (`/renew`, every third of `lease_s`), so
  the instances of a process that died are freed by the server within a lease.
Without `agent_data` (a caller that keeps one tool instance per rollout) an episode lives from
`create` to `release`.

A request the server refused because of the model's call (a malformed or oversized action, a call
after the episode ended) becomes an observation for the model. Every other failure (the server
unreachable, at capacity, refusing the token, failing) is counted in the rollout's
`extra_fields["codegym_error"]`, which verl hands the reward function as `extra_info`, and
`compute_score` reports it beside the score; with `fail_on_server_error` it stops the rollout
instead. `compute_score` gives verl's reward manager the episode's reward
(`extra_info["codegym_reward"]`, or the best step reward as a fallback).
"""

import asyncio
import enum
import json
import os
import uuid
import weakref

import aiohttp

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
# The variable `codegym serve` reads its token from; the tool reads it too when its config has none.
TOKEN_ENV = "CODEGYM_SERVE_TOKEN"
# The extra fields of a rollout the tool sets (verl passes them to the reward function).
REWARD_FIELD = "codegym_reward"
ERROR_FIELD = "codegym_error"


class Fault(enum.Enum):
    """Whose a failed request is."""

    # The model's call does not fit the episode: the model is told, as an observation.
    AGENT = "agent"
    # The server could not be reached or could not serve: counted in `codegym_error`.
    SERVER = "server"


# The statuses of `/step` the model's call causes: malformed (400), not fitting the episode (409),
# too large (413). Every other failure is the server's.
_AGENT_STATUSES = frozenset({400, 409, 413})


class CodegymError(Exception):
    """A request that failed: refused by the server (`status`), or not answered (`status` None)."""

    def __init__(self, message, fault, status=None):
        super().__init__(message)
        self.fault = fault
        self.status = status


class CodegymServerFailure(BaseException):
    """A failure of the server while `fail_on_server_error` is set. A BaseException, not an
    Exception: verl's ToolAgentLoop turns every Exception a tool raises into text for the model
    with reward 0, the silent failure this setting exists to prevent."""


class CodegymClient:
    """The CodeGym REST API: every endpoint is a POST of a JSON object answered by one. Requests
    share one aiohttp session (and its pooled connections) per event loop, and carry the token."""

    def __init__(self, server_url, token=None, timeout_s=60.0):
        self.server_url = server_url.rstrip("/")
        self._headers = {"Authorization": "Bearer " + token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http = None
        self._http_loop = None

    def _session(self):
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.closed or self._http_loop is not loop:
            self._http = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
            self._http_loop = loop
        return self._http

    async def call(self, endpoint, body):
        try:
            async with self._session().post(self.server_url + endpoint, json=body) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            message = "cannot reach codegym serve at %s: %s" % (self.server_url, str(e) or type(e).__name__)
            raise CodegymError(message, Fault.SERVER) from None
        try:
            answer = json.loads(text or "{}")
        except ValueError:
            answer = {}
        if status < 400:
            return answer
        fault = Fault.AGENT if endpoint == "/step" and status in _AGENT_STATUSES else Fault.SERVER
        error = answer.get("error") if isinstance(answer, dict) else None
        raise CodegymError("%s: %s" % (endpoint, error or "HTTP %d" % status), fault, status)

    async def close(self):
        if self._http is not None and not self._http.closed:
            await self._http.close()


class Episode:
    """One rollout's episode on the server. Its calls run one at a time, in the order they came."""

    def __init__(self, create_kwargs, fields):
        self.create_kwargs = create_kwargs
        # The rollout's extra fields (not the rollout itself, which must be free to go).
        self.fields = fields
        self.lock = asyncio.Lock()
        self.instance_id = None
        self.steps = 0
        self.reward = 0.0
        self.errors = 0
        # Calls of the rollout under way (the calls of one turn come together).
        self.pending = 0
        # Why the episode takes no more steps (an observation for the model), once it is over.
        self.over = None
        # A failure learned between calls (a lease the server no longer has), reported by the next.
        self.failure = None
        if fields is not None:
            fields.setdefault(ERROR_FIELD, 0)

    def count_error(self):
        self.errors += 1
        if self.fields is not None:
            self.fields[ERROR_FIELD] = self.errors


class _Call:
    """A tool instance verl created: the row's create_kwargs, and the episode it played in."""

    def __init__(self, create_kwargs):
        self.create_kwargs = create_kwargs
        self.episode = None


class CodegymStepTool(BaseTool):
    """`codegym_step(name, arguments)`: one call of the row's environment's tool `name`."""

    def __init__(self, config, tool_schema):
        super().__init__(config, tool_schema)
        token = config.get("token") or os.environ.get(TOKEN_ENV) or None
        self.client = CodegymClient(config.get("server_url", DEFAULT_SERVER_URL), token, float(config.get("timeout_s", 60)))
        self.lease_s = max(1, int(config.get("lease_s", 60)))
        self.fail_on_server_error = bool(config.get("fail_on_server_error", False))
        self.max_assistant_turns = config.get("max_assistant_turns")
        self.max_user_turns = config.get("max_user_turns")
        self._calls = {}
        self._rollouts = weakref.WeakKeyDictionary()
        # Episodes holding a server instance, whose leases the heartbeat renews.
        self._live = set()
        self._heartbeat = None
        # Releases scheduled by finalizers, kept until done (the loop keeps only weak references).
        self._releasing = set()

    async def create(self, instance_id=None, **kwargs):
        instance_id = instance_id or uuid.uuid4().hex
        self._calls[instance_id] = _Call(dict(kwargs.get("create_kwargs") or {}))
        return instance_id, ToolResponse()

    async def execute(self, instance_id, parameters, **kwargs):
        """Plays `parameters` ({"name", "arguments"}) as one step: (response, step reward, metrics)."""
        agent_data = kwargs.get("agent_data")
        episode = self._episode(instance_id, agent_data)
        episode.pending += 1
        try:
            async with episode.lock:
                response, reward = await self._play(episode, parameters)
        finally:
            episode.pending -= 1
        if episode.pending == 0 and episode.over is None and self._last_turn(agent_data):
            episode.over = "The episode is over: the rollout reached its turn limit."
            await self._release(episode)
        metrics = {"codegym_steps": episode.steps, ERROR_FIELD: episode.errors}
        return response, reward, metrics

    async def calc_reward(self, instance_id, **kwargs):
        """The reward of the episode the tool instance `instance_id` played in."""
        call = self._calls.get(instance_id)
        return call.episode.reward if call is not None and call.episode is not None else 0.0

    async def release(self, instance_id, **kwargs):
        call = self._calls.pop(instance_id, None)
        # With agent_data (and its fields) the episode goes on with the rollout; without, it ends
        # with the instance.
        if call is not None and call.episode is not None and call.episode.fields is None:
            await self._release(call.episode)

    @property
    def held_instances(self):
        """How many server instances the tool holds (the episodes under way)."""
        return len(self._live)

    async def close(self):
        """Releases every instance the tool holds and closes its connections."""
        await asyncio.gather(*self._releasing, *(self._release(e) for e in list(self._live)))
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.client.close()

    def _episode(self, instance_id, agent_data):
        """The episode of the rollout `agent_data` (or of the tool instance), made on first use.
        Made without awaiting, so the concurrent calls of a turn all find the same one."""
        call = self._calls.setdefault(instance_id, _Call({}))
        if agent_data is None:
            call.episode = call.episode or Episode(call.create_kwargs, None)
            return call.episode
        episode = self._rollouts.get(agent_data)
        if episode is None:
            episode = Episode(call.create_kwargs, agent_data.extra_fields)
            self._rollouts[agent_data] = episode
            gone = weakref.finalize(agent_data, self._rollout_gone, asyncio.get_running_loop(), episode)
            gone.atexit = False
        call.episode = episode
        return episode

    def _rollout_gone(self, loop, episode):
        """The rollout's agent_data was collected: its episode ends (this may run in any thread)."""
        if episode.instance_id is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._release_later, episode)

    def _release_later(self, episode):
        task = asyncio.ensure_future(self._release(episode))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _last_turn(self, agent_data):
        """Whether the rollout ends before it could call again: verl stops a rollout once
        `assistant_turns` reaches max_assistant_turns or `user_turns` (one per tool turn) reaches
        max_user_turns, both counted at the next generation."""
        if agent_data is None:
            return False
        turns = ((self.max_assistant_turns, "assistant_turns"), (self.max_user_turns, "user_turns"))
        return any(cap and getattr(agent_data, name, 0) + 1 >= int(cap) for cap, name in turns)

    async def _play(self, episode, parameters):
        try:
            action = _action(parameters)
        except ValueError as e:
            return ToolResponse(text="Error: %s" % e), 0.0
        if episode.failure is not None:
            failure, episode.failure = episode.failure, None
            return self._server_failed(episode, failure)
        if episode.over is not None:
            return ToolResponse(text=episode.over), 0.0
        try:
            if episode.instance_id is None:
                await self._open(episode)
            result = await self.client.call("/step", {"instance_id": episode.instance_id, "action": action})
        except CodegymError as e:
            if e.fault is Fault.AGENT:
                return ToolResponse(text="Error: %s" % e), 0.0
            if episode.steps or e.status == 404:
                # The state of a started episode is unknown after a failed step: it cannot go on.
                episode.over = "The episode is over: the environment server failed during it."
                await self._release(episode)
            return self._server_failed(episode, e)
        episode.steps += 1
        episode.reward = float(result.get("reward", 0.0))
        if episode.fields is not None:
            episode.fields[REWARD_FIELD] = episode.reward
        if result.get("done", False):
            episode.over = "The episode is over: Done was already called."
            await self._release(episode)
        return ToolResponse(text=str(result.get("observation", ""))), episode.reward

    def _server_failed(self, episode, error):
        episode.count_error()
        if self.fail_on_server_error:
            raise CodegymServerFailure(str(error))
        return ToolResponse(text="Error: the environment server failed: %s" % error), 0.0

    async def _open(self, episode):
        """Takes a server instance with a lease and starts the row's configuration in it."""
        kwargs = episode.create_kwargs
        if "env_str" not in kwargs:
            raise CodegymError("the row has no extra_info.tools_kwargs.codegym_step.create_kwargs.env_str", Fault.SERVER)
        answer = await self.client.call("/get_instance", {"lease_s": self.lease_s})
        episode.instance_id = answer["instance_id"]
        self._live.add(episode)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._renew_leases())
        start = {"instance_id": episode.instance_id, "env_str": kwargs["env_str"]}
        if kwargs.get("seed") is not None:
            start["seed"] = kwargs["seed"]
        try:
            await self.client.call("/start", start)
        except CodegymError:
            await self._release(episode)
            raise

    async def _release(self, episode):
        """Gives the episode's server instance back, if it holds one. The episode counts as held
        until the server has answered."""
        instance_id, episode.instance_id = episode.instance_id, None
        if instance_id is None:
            return
        try:
            await self.client.call("/release_instance", {"instance_id": instance_id})
        except CodegymError:
            episode.count_error()  # the server frees it when its lease runs out
        finally:
            self._live.discard(episode)

    async def _renew_leases(self):
        """Renews the leases of the instances the tool holds, every third of a lease, while it
        holds any; an instance the server no longer has fails its episode's next call."""
        while self._live:
            await asyncio.sleep(self.lease_s / 3)
            held = {e.instance_id: e for e in self._live if e.instance_id is not None}
            if not held:
                continue
            try:
                answer = await self.client.call("/renew", {"instance_ids": list(held)})
            except CodegymError:
                continue  # the next renewal may pass; a step that fails is counted
            for instance_id in answer.get("unknown", []):
                episode = held[instance_id]
                episode.instance_id = None
                self._live.discard(episode)
                episode.over = "The episode is over: the environment server lost it."
                episode.failure = CodegymError("the server no longer has instance %s" % instance_id, Fault.SERVER, 404)


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
    """verl's reward function: the environment's reward for the rollout (0 or 1), and how many
    requests to the server failed in it (verl logs the keys of the dict beside the score)."""
    info = extra_info or {}
    if info.get(REWARD_FIELD) is not None:
        score = float(info[REWARD_FIELD])
    else:
        rewards = info.get("tool_rewards")
        score = float(max(rewards)) if rewards is not None and len(rewards) else 0.0
    return {"score": score, ERROR_FIELD: int(info.get(ERROR_FIELD) or 0)}
