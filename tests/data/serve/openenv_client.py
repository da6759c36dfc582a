# Drives `codegym serve` with OpenEnv's own Python client (GenericEnvClient of openenv-core 0.3 or
# openenv 0.10, over WS /ws): every reset observation opens with the task text, then the
# instructions and the episode's tools; every episode of the workload replays its stored oracle
# trajectory and must see the stored observations and end with reward 1; a wrong Done must get 0 and end the episode, after
# which a step is refused; the same configuration, seed and actions give the same observations.
#
# Usage: python openenv_client.py URL WORKLOAD.json   (workload: [{config_id, actions,
# observations, wrong_answer, task, tools}]). Prints one JSON summary; exits non-zero on the first mismatch.
import asyncio
import json
import sys

from openenv.core.generic_client import GenericEnvClient


def check_briefing(observation, episode):
    """The first observation: the task text first, then the instructions and the tools."""
    assert list(observation)[:4] == ["task", "instructions", "instructions_version", "available_tools"], list(observation)
    assert observation["task"] == episode["task"], (observation["task"], episode["task"])
    assert "`Done`" in observation["instructions"], observation["instructions"]
    tools = observation["available_tools"]
    assert [tool["name"] for tool in tools] == episode["tools"], (tools, episode["tools"])
    assert all(tool["inputSchema"]["type"] == "object" for tool in tools), tools
    assert isinstance(observation["text"], str), observation


def as_step(action):
    call = json.loads(action)
    return {"name": call["name"], "parameters": call.get("parameters") or {}}


async def replay(url, episode, seed=None):
    async with GenericEnvClient(base_url=url) as env:
        reset = {"config_id": episode["config_id"]}
        if seed is not None:
            reset["seed"] = seed
        result = await env.reset(**reset)
        assert result.done is False, result
        check_briefing(result.observation, episode)
        observations = []
        for action in episode["actions"]:
            result = await env.step(as_step(action))
            observations.append(result.observation["text"])
        state = await env.state()
        return result, observations, state


async def wrong_done(url, episode):
    async with GenericEnvClient(base_url=url) as env:
        await env.reset(config_id=episode["config_id"])
        result = await env.step({"name": "Done", "parameters": {"answer": episode["wrong_answer"]}})
        assert result.done is True and result.reward == 0.0, (episode["config_id"], result)
        try:
            await env.step({"name": "Done", "parameters": {"answer": episode["wrong_answer"]}})
        except RuntimeError as refused:
            assert "the episode is over" in str(refused), refused
        else:
            raise AssertionError("a step after Done was accepted")


async def main():
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    gate = asyncio.Semaphore(8)
    summary = {"episodes": 0, "rewarded": 0, "steps": 0, "wrong_done_zero": 0}

    async def one(episode):
        async with gate:
            result, observations, state = await replay(url, episode)
            for i, (got, stored) in enumerate(zip(observations, episode["observations"])):
                assert got == stored, (episode["config_id"], i, got, stored)
            assert result.done is True and result.reward == 1.0, (episode["config_id"], result)
            assert state["step_count"] == len(episode["actions"]) and state["done"] is True, state
            summary["episodes"] += 1
            summary["rewarded"] += 1
            summary["steps"] += len(observations)
            await wrong_done(url, episode)
            summary["wrong_done_zero"] += 1

    await asyncio.gather(*(one(episode) for episode in workload))
    first = workload[0]
    runs = [await replay(url, first, seed) for seed in (7, 7, 8)]
    assert runs[0][1] == runs[1][1] == runs[2][1] == first["observations"], "the same actions gave other observations"
    summary["deterministic"] = True
    print(json.dumps(summary))


asyncio.run(main())
