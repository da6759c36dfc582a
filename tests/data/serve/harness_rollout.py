# Rolls out `codegym serve` through OpenEnv's own harness layer (openenv 0.10,
# `openenv.core.harness`), the one TRL's OpenEnv harness (`trl.experimental.async_grpo`) drives:
# a `ResourceSessionFactory` makes one `StepEnvSessionAdapter` over a GenericEnvClient per
# rollout, `MCPHarnessAdapter.run_white_box` runs the tool-calling loop, `verify` forwards the
# environment's reward. The model is a scripted policy behind an OpenAI-compatible endpoint
# (scripted_policy.py) that answers with tool calls replaying the stored oracle actions.
#
# Checks that every rollout earns reward 1 and that the model's first turn holds the task text
# and is offered the episode's tools.
#
# Usage: python harness_rollout.py URL WORKLOAD.json   (workload as openenv_client.py's, one
# configuration per environment). Prints one JSON summary; exits non-zero on the first mismatch.
import json
import sys

import httpx
from openai import OpenAI
from openenv.core.env_server.mcp_types import Tool
from openenv.core.generic_client import GenericEnvClient
from openenv.core.harness import (
    HarnessRunLimits,
    MCPHarnessAdapter,
    ModelStepResult,
    ResourceSessionFactory,
    StepEnvSessionAdapter,
)
from openenv.core.llm_client import LLMResponse, ToolCall
from scripted_policy import Policy


def first_turn(result, task):
    """The model's first turn: the task text, then the instructions (the tools go as tools)."""
    observation = result.observation
    return [{"role": "user", "content": f"{observation['task']}\n\n{observation['instructions']}"}]


class CodeGymSessions(ResourceSessionFactory):
    """One session per rollout; `task` is the configuration's id."""

    def __init__(self, url):
        self.url = url

    def tools(self, config_id):
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"config_id": config_id}}
        listed = httpx.post(f"{self.url}/mcp", json=request).json()["result"]["tools"]
        return [Tool(name=t["name"], description=t["description"], input_schema=t["inputSchema"]) for t in listed]

    def create(self, task, seed=None, episode_id=None):
        return StepEnvSessionAdapter(
            GenericEnvClient(base_url=self.url),
            task=task,
            seed=seed,
            episode_id=episode_id,
            tool_specs=self.tools(task),
            action_builder=lambda name, arguments: {"name": name, "parameters": arguments},
            initial_messages_builder=first_turn,
            reset_kwargs={"config_id": task},
        )


def model_step_of(client):
    def model_step(messages, tools, sampling):
        offered = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                     "parameters": t.input_schema}} for t in tools]
        answer = client.chat.completions.create(model="scripted", messages=messages, tools=offered, **sampling)
        message = answer.choices[0].message
        calls = [ToolCall(id=c.id, name=c.function.name, args=json.loads(c.function.arguments))
                 for c in message.tool_calls or []]
        return ModelStepResult(response=LLMResponse(content=message.content or "", tool_calls=calls))

    return model_step


def main():
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    policy = Policy(workload, tool_calls=True)
    model_step = model_step_of(OpenAI(base_url=policy.serve(), api_key="scripted"))
    sessions, adapter = CodeGymSessions(url), MCPHarnessAdapter()
    rewards = []
    for seed, episode in enumerate(workload):
        session = sessions.create(episode["config_id"], seed=seed, episode_id=f"rollout-{seed}")
        try:
            limits = HarnessRunLimits(max_turns=len(episode["actions"]) + 1)
            result = adapter.run_white_box(model_step, session, limits)
            assert result.done, result.metrics
            rewards.append(session.verify(result.messages).env_reward)
        finally:
            session.close()
    assert rewards == [1.0] * len(workload), rewards
    by_config = {e["config_id"]: e for e in workload}
    for turn in policy.first_turns:
        episode = by_config[turn["config_id"]]
        assert turn["text"].startswith(episode["task"]), turn["text"][:200]
        assert [t["function"]["name"] for t in turn["tools"]] == episode["tools"], turn["tools"]
    assert len(policy.first_turns) == len(workload), len(policy.first_turns)
    print(json.dumps({"episodes": len(rewards), "rewarded": rewards.count(1.0), "first_turns_checked": len(policy.first_turns)}))


main()
