# Rolls out `codegym serve` through TRL 1.16's OpenEnv harness, as TRL's asynchronous GRPO trainer
# runs it: `trl.experimental.async_grpo.openenv_harness.HarnessRolloutWorker` spawns its rollout
# process, which makes one OpenEnv session per rollout with our `ResourceSessionFactory` (the
# README's recipe: a `StepEnvSessionAdapter` over OpenEnv's `GenericEnvClient`), samples every turn
# from a vLLM server through TRL's own chat template rendering and tool-call parsing, lets
# OpenEnv's `MCPHarnessAdapter` run the tool calls, and scores each group from the reward
# `verify` forwards. The trainer's side is the worker's queue of scored samples, read here.
#
# No model: the vLLM server is a scripted policy (`/v1/completions` on token ids) that replays the
# stored oracle actions as tool calls in Qwen3's format, and answers the final Done of one rollout
# of each group right and of the other wrong. The tokenizer is a byte-level one made here with
# the Qwen3 chat template TRL ships. TRL's worker refuses to start unless the vllm package is
# installed, though only the rollout process talks to vLLM, over HTTP: that check alone is lifted.
#
# Usage: python trl_rollout.py URL WORKLOAD.json [SERVER_PID]
#   WORKLOAD.json: a list of {config_id, task, tools, actions, wrong_answer}, one per environment.
#   Prints one JSON summary: per scored rollout, its config, the Done answer, TRL's reward and
#   advantage, and the reward in the server's last observation; what the model was shown first.
#   With SERVER_PID, the policy kills that server (SIGKILL) when asked for an episode's second
#   turn; the run then waits until TRL's worker has logged both a rollout that failed mid-way and
#   a session that could not start, and reports what reached the trainer's queue.
import functools
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import httpx
import trl
from accelerate import PartialState
from datasets import Dataset
from openenv.core.env_server.mcp_types import Tool
from openenv.core.generic_client import GenericEnvClient
from openenv.core.harness import MCPHarnessAdapter, ResourceSessionFactory, StepEnvSessionAdapter
from scripted_policy import Policy, shows
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl.experimental.async_grpo import async_rollout_worker
from trl.experimental.async_grpo.openenv_harness import HarnessRolloutWorker

# -- The recipe (README, "TRL"): one OpenEnv session per rollout, the task a config_id. --


def first_turn(result, task):  # the task text, then the instructions; the tools go as tools
    return [{"role": "user", "content": f"{result.observation['task']}\n\n{result.observation['instructions']}"}]


class CodeGymSessions(ResourceSessionFactory):
    def __init__(self, url):
        self.url = url

    def tools(self, config_id):
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"config_id": config_id}}
        listed = httpx.post(f"{self.url}/mcp", json=request).raise_for_status().json()["result"]["tools"]
        return [Tool(name=t["name"], description=t["description"], input_schema=t["inputSchema"]) for t in listed]

    def create(self, task, seed=None, episode_id=None):
        return StepEnvSessionAdapter(
            GenericEnvClient(base_url=self.url), task=task, seed=seed, episode_id=episode_id,
            tool_specs=self.tools(task), reset_kwargs={"config_id": task},
            action_builder=lambda name, arguments: {"name": name, "parameters": arguments},
            initial_messages_builder=first_turn)


# -- The stand-ins for the model: a tokenizer and a vLLM server. --


def qwen3_byte_tokenizer():
    """A byte-level tokenizer with Qwen3's special tokens and the Qwen3 chat template TRL ships
    (whose tool-call format TRL knows how to parse)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.add_tokens(["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"])
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates/qwen3.jinja").read_text()
    return tokenizer


class TokenPolicy(Policy):
    """The scripted policy as a vLLM server: decodes the prompt's token ids, replays the episode's
    next oracle action as a Qwen3 tool call; each configuration's Done answers are right and
    wrong in turn. With `kill`, SIGKILLs the server on the first request for a second turn."""

    def __init__(self, workload, tokenizer, kill=None):
        super().__init__(workload, tool_calls=True)
        self.tokenizer, self.kill, self.killed = tokenizer, kill, threading.Event()
        self.dones = {}

    def episode_of_prompt(self, text):
        first_user = text.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        matches = [e for e in self.workload if first_user.startswith(e["task"]) or shows(first_user, e["task"])]
        assert len(matches) == 1, f"{len(matches)} episodes match the first turn: {first_user[:300]}"
        return matches[0], first_user

    def reply(self, request):
        text = self.tokenizer.decode(request["prompt"])
        episode, first_user = self.episode_of_prompt(text)
        turn = text.count("<|im_start|>assistant") - 1
        if turn == 0:
            with self.lock:
                self.first_turns.append({"config_id": episode["config_id"], "text": text, "user": first_user})
        if turn == 1 and self.kill and not self.killed.is_set():
            self.killed.set()
            os.kill(self.kill, signal.SIGKILL)
        action = json.loads(episode["actions"][turn])
        arguments = action.get("parameters") or {}
        if action["name"] == "Done":
            with self.lock:
                nth = self.dones[episode["config_id"]] = self.dones.get(episode["config_id"], -1) + 1
            if nth % 2:
                arguments = {**arguments, "answer": episode["wrong_answer"]}
        call = json.dumps({"name": action["name"], "arguments": arguments})
        ids = self.tokenizer.encode(f"<tool_call>\n{call}\n</tool_call><|im_end|>", add_special_tokens=False)
        ids = ids[: request["max_tokens"]]
        return {"choices": [{"index": 0, "token_ids": ids, "logprobs": {"token_logprobs": [-0.5] * len(ids)}}]}


# -- The run. --


def worker(url, workload, tokenizer, policy_url, **extra):
    config_ids = [e["config_id"] for e in workload]
    with mock.patch.object(async_rollout_worker, "is_vllm_available", return_value=True):
        return HarnessRolloutWorker(
            harness_session_factory=functools.partial(CodeGymSessions, url),
            harness_adapter=MCPHarnessAdapter(),
            model_name="scripted",
            dataset=Dataset.from_dict({"prompt": config_ids}),
            reward_funcs=[],
            processing_class=tokenizer,
            eos_token_ids=[tokenizer.eos_token_id],
            num_generations=2,
            vllm_server_url=policy_url,
            max_tokens=4096,
            max_tool_calling_iterations=max(len(e["actions"]) for e in workload),
            **extra,
        )


def done_call(completion):
    """The Done call's arguments and the server's observation of it, as TRL's completion holds them."""
    for i, message in enumerate(completion):
        for call in message.get("tool_calls") or []:
            if call["function"]["name"] == "Done":
                return json.loads(call["function"]["arguments"]), json.loads(completion[i + 1]["content"])
    raise AssertionError(f"no Done call in {completion}")


def scored_rollouts(rollouts, groups):
    """Reads the worker's queue until both rollouts of every group of the first pass over the
    dataset are scored (a rollout whose turns re-tokenize differently may fill several rows)."""
    seen, deadline = {}, time.monotonic() + 600
    while not all(len(seen.get(g, {})) == 2 for g in range(groups)):
        rollouts.check_health(stale_after_s=120)
        assert time.monotonic() < deadline, f"scored groups so far: {sorted(seen)}"
        try:
            sample = rollouts.rollout_buffer.get(timeout=1)
        except queue.Empty:
            continue
        answer, server = done_call(sample.completion)
        seen.setdefault(sample.group_id, {})[json.dumps(answer, sort_keys=True)] = {
            "group": sample.group_id,
            "answer": answer,
            "reward": sample.metrics["reward"],
            "harness_reward": sample.metrics["rewards/harness_reward"],
            "advantage": sample.advantage,
            "server_reward": server["reward"],
            "server_done": server["done"],
        }
    return [r for g in range(groups) for r in seen[g].values()]


def rollout(url, workload):
    tokenizer = qwen3_byte_tokenizer()
    policy = TokenPolicy(workload, tokenizer)
    rollouts = worker(url, workload, tokenizer, policy.serve().removesuffix("/v1"), max_inflight_tasks=4)
    rollouts.start()
    try:
        scored = scored_rollouts(rollouts, len(workload))
    finally:
        rollouts.stop()
    for r in scored:
        r["config_id"] = workload[r["group"]]["config_id"]
    first_turns = [{"config_id": t["config_id"], "user": t["user"][:4000], "shown": t["text"][:20000]}
                   for t in policy.first_turns]
    print(json.dumps({"rollouts": scored, "first_turns": first_turns}))


def failing(url, workload, server_pid):
    """The server dies in the middle of the first rollout: TRL's worker logs each failure and
    scores nothing, rather than a reward of 0."""
    tokenizer = qwen3_byte_tokenizer()
    policy = TokenPolicy(workload, tokenizer, kill=server_pid)
    wanted = ["harness rollout failed; scoring as unscorable", "harness session create failed"]
    # The worker's process inherits this stderr (appended to a file, which is read here, then
    # passed on).
    log = tempfile.NamedTemporaryFile(suffix=".log")
    real_stderr = os.dup(2)
    with open(log.name, "a") as appending:
        os.dup2(appending.fileno(), 2)
    rollouts = worker(url, workload, tokenizer, policy.serve().removesuffix("/v1"), max_inflight_tasks=1)
    try:
        rollouts.start()
        deadline = time.monotonic() + 300
        while not all(w in Path(log.name).read_text() for w in wanted):
            rollouts.check_health(stale_after_s=120)
            assert time.monotonic() < deadline, "the worker never logged the failures"
            time.sleep(0.2)
    finally:
        rollouts.stop()
        os.dup2(real_stderr, 2)
    text = Path(log.name).read_text()
    sys.stderr.write(text)
    reached = []
    while True:
        try:
            sample = rollouts.rollout_buffer.get(timeout=1)
        except queue.Empty:
            break
        reached.append({"group": sample.group_id, "reward": sample.metrics["reward"]})
    print(json.dumps({"killed": policy.killed.is_set(), "reached_trainer": reached,
                      "logged": {w: text.count(w) for w in wanted}}))


if __name__ == "__main__":
    PartialState()  # the trainer's process state, which TRL's logging needs (an Accelerator sets it)
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    if len(sys.argv) > 3:
        failing(url, workload, int(sys.argv[3]))
    else:
        rollout(url, workload)
