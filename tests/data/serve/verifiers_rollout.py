# Rolls out `codegym serve` through verifiers' own OpenEnv environment (verifiers 0.4.0,
# `verifiers.v1.tasksets.openenv`: its taskset makes one task per reset, its `run` reads
# `/schema`, resets, shows the model the observation and the action schema, parses each reply
# into an action, steps and sums the rewards). The model is a scripted policy behind an
# OpenAI-compatible endpoint (scripted_policy.py) that replays the stored oracle actions; the
# agent seat that asks it is a plain chat over the `openai` client, standing in for verifiers'
# harness runtimes, which provision sandboxes from outside the package registries.
#
# Checks that every rollout earns reward 1 and that the model's first turn holds the task text
# (first in the observation) and the episode's tool names.
#
# Usage: python verifiers_rollout.py URL WORKLOAD.json   (workload as openenv_client.py's, one
# configuration per environment). Prints one JSON summary; exits non-zero on the first mismatch.
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field

from openai import AsyncOpenAI
from scripted_policy import Policy
from verifiers.v1.tasksets.openenv import OpenEnvConfig, OpenEnvEnv, OpenEnvEnvConfig


@dataclass
class Segment:
    last_reply: str
    terminated: bool = False


@dataclass
class Trace:
    rewards: dict = field(default_factory=dict)
    stopped: str | None = None

    def record_reward(self, name, value):
        self.rewards[name] = value

    def stop(self, reason):
        self.stopped = reason


class Chat:
    """One interaction: the conversation so far, one model call per user turn."""

    def __init__(self, client):
        self.client, self.messages, self.trace = client, [], Trace()

    async def turn(self, text):
        self.messages.append({"role": "user", "content": text})
        answer = await self.client.chat.completions.create(model="scripted", messages=self.messages)
        reply = answer.choices[0].message.content
        self.messages.append({"role": "assistant", "content": reply})
        return Segment(last_reply=reply)


class Seat:
    def __init__(self, client):
        self.client, self.traces = client, []

    @contextlib.asynccontextmanager
    async def interaction(self, task):
        chat = Chat(self.client)
        self.traces.append(chat.trace)
        yield chat


@dataclass
class Agents:
    player: Seat


def check_first_turn(turn, episode):
    payload = json.loads(turn["text"])
    observation = payload["observation"]
    assert list(observation)[0] == "task" and observation["task"] == episode["task"], observation
    names = [tool["name"] for tool in observation["available_tools"]]
    assert names == episode["tools"], (names, episode["tools"])
    for name in episode["tools"]:
        assert f'"{name}"' in turn["text"], name


async def main():
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    policy = Policy(workload)
    client = AsyncOpenAI(base_url=policy.serve(), api_key="scripted")
    config = OpenEnvEnvConfig(
        taskset=OpenEnvConfig(id="openenv", base_url=url, resets=[{"config_id": e["config_id"]} for e in workload])
    )
    env = OpenEnvEnv(config)
    seat = Seat(client)
    for task in env.taskset:
        await env.run(task, Agents(player=seat))
    rewards = [trace.rewards.get("openenv_reward") for trace in seat.traces]
    assert rewards == [1.0] * len(workload), rewards
    by_config = {e["config_id"]: e for e in workload}
    for turn in policy.first_turns:
        check_first_turn(turn, by_config[turn["config_id"]])
    assert len(policy.first_turns) == len(workload), len(policy.first_turns)
    print(json.dumps({"episodes": len(rewards), "rewarded": rewards.count(1.0), "first_turns_checked": len(policy.first_turns)}))


asyncio.run(main())
