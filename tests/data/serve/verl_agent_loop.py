"""Training steps of verl 0.9.1's own agent loop against `codegym serve`, with a scripted policy.

    verl_agent_loop.py EXPORT_DIR WORKLOAD.json SCENARIOS.json

verl loads the export's tool from its tool_config.yaml with its own registry (`load_all_tools`, as
`actor_rollout_ref.rollout.multi_turn.tool_config_path` makes it do) and runs `ToolAgentLoop` on
the export's rows (`raw_prompt`, `tools_kwargs`, `extra_info`), configured from verl's own default
trainer config with the scenario's overrides. Only the model is ours: a scripted policy that
answers each generation with the hermes tool calls of the scenario's script, as token ids of a
byte-level tokenizer made here (there is no model to load). Rewards are scored by the export's
`compute_score`, loaded by verl's own loader from `reward.custom_reward_function`, given the
rollout's extra fields as verl's naive reward manager gives them.

WORKLOAD: {config_id: {"actions": [...], "observations": [...]}}, the oracle's trajectories.
SCENARIOS: a list; each has `overrides` (dotted verl config keys), `tool` (settings over the
export's tool config), `env` (variables set while its tool loads), `steps` (training steps),
`rollouts` (how many of the workload's configurations, one rollout each), `think_s` (how long the
policy takes per generation), `keep_agent_data` (keep each rollout's state alive after it ends, as a
tracer may), and `script`, the policy:
- `oracle`: the configuration's oracle actions, one call a turn;
- `oracle_parallel`: the same, with the first two actions as two calls of the first turn;
- `observe`: the first action, again and again (never Done: the rollout ends on a limit).
After each step the script waits (30 s at most) until the tool holds no server instance, as the
next step of a training run comes after the update. Prints, as its last line, a JSON list: per
scenario, the request ids the policy saw and, per step, each rollout's score, extra fields, tool
messages and turns, or what it raised; and the instances the tool still held after each step.
"""

import asyncio
import gc
import json
import os
import sys
import tempfile
import time

import pyarrow.parquet as pq
from omegaconf import OmegaConf

EXPORT, WORKLOAD, SCENARIOS = sys.argv[1:4]
sys.path.insert(0, EXPORT)

from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap  # noqa: E402
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop  # noqa: E402
from verl.tools.tool_registry import load_all_tools  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

# A chat template of the hermes form verl's default tool parser reads, prefix-stable as verl's
# Continuous Token builder needs.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}<|im_end|>\n"
    "{%- endif %}"
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{%- if message.content is string %}{{ message.content }}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}\n<tool_call>{\"name\": {{ call.function.name | tojson }}, "
    "\"arguments\": {{ call.function.arguments | tojson }}}</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def byte_tokenizer():
    """A byte-level tokenizer (one token a byte, no merges): exact round trips of any text."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(sorted(alphabet))}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tool_call(action):
    """The model's hermes tool call of `codegym_step` that plays `action` ({"name", "parameters"})."""
    arguments = {"name": action["name"], "arguments": json.dumps(action["parameters"])}
    return "<tool_call>%s</tool_call>" % json.dumps({"name": "codegym_step", "arguments": arguments})


class ScriptedPolicy:
    """verl's LLM server client, answering from the rollout's script: the t-th generation of a
    rollout says the calls of the t-th turn of its script, or plain text (no call) past its end.
    A rollout is told by its task text, in the prompt of its first generation."""

    def __init__(self, tokenizer, think_s):
        self.tokenizer = tokenizer
        self.think_s = think_s
        self.expected = []  # (task text, turns) of rollouts not yet seen
        self.scripts = {}  # request id -> the turns still to say
        self.request_ids = []

    def expect(self, task, turns):
        self.expected.append((task, list(turns)))

    async def generate(self, request_id, prompt_ids, sampling_params, **kwargs):
        self.request_ids.append(request_id)
        if request_id not in self.scripts:
            prompt = self.tokenizer.decode(prompt_ids)
            found = next(i for i, (task, _) in enumerate(self.expected) if task in prompt)
            self.scripts[request_id] = self.expected.pop(found)[1]
        await asyncio.sleep(self.think_s)
        turns = self.scripts[request_id]
        text = "".join(tool_call(a) for a in turns.pop(0)) if turns else "I am done."
        return TokenOutput(token_ids=self.tokenizer.encode(text + "<|im_end|>", add_special_tokens=False))


def script(kind, actions):
    if kind == "oracle":
        return [[a] for a in actions]
    if kind == "oracle_parallel":
        return [actions[:2]] + [[a] for a in actions[2:]]
    if kind == "observe":
        return [[actions[0]]] * 64
    raise ValueError(kind)


class RecordingToolAgentLoop(ToolAgentLoop):
    """verl's ToolAgentLoop, keeping the tool messages of its rollout (what the model was shown)
    and, when asked, the rollout's state after it ends."""

    kept = []

    async def _handle_processing_tools_state(self, agent_data):
        before = len(agent_data.messages)
        state = await super()._handle_processing_tools_state(agent_data)
        self.shown.extend(m["content"] for m in agent_data.messages[before:] if m["role"] == "tool")
        if self.keep_agent_data:
            RecordingToolAgentLoop.kept.append(agent_data)
        return state


def verl_config(scenario, tool_config_path):
    """verl's own default trainer config, with the scenario's overrides."""
    import verl

    config = OmegaConf.load(os.path.join(os.path.dirname(verl.__file__), "trainer/config/_generated_ppo_trainer.yaml"))
    overrides = {
        "data.return_raw_chat": True,
        "actor_rollout_ref.rollout.multi_turn.enable": True,
        "actor_rollout_ref.rollout.multi_turn.tool_config_path": tool_config_path,
        "actor_rollout_ref.rollout.multi_turn.format": "hermes",
        "actor_rollout_ref.rollout.multi_turn.max_tool_response_length": 1 << 20,
        "actor_rollout_ref.rollout.prompt_length": 1 << 16,
        "actor_rollout_ref.rollout.response_length": 1 << 16,
        "reward.custom_reward_function.path": os.path.join(EXPORT, "codegym_tool.py"),
        "reward.custom_reward_function.name": "compute_score",
    }
    overrides.update(scenario.get("overrides", {}))
    # Struct mode: a key verl does not have is an error, not a new key (the README's keys are these).
    OmegaConf.set_struct(config, True)
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    return config


def tool_config(scenario):
    """The export's tool_config.yaml with the scenario's settings over its tool's config."""
    config = OmegaConf.load(os.path.join(EXPORT, "tool_config.yaml"))
    for key, value in scenario.get("tool", {}).items():
        config.tools[0].config[key] = value
    path = os.path.join(tempfile.mkdtemp(), "tool_config.yaml")
    OmegaConf.save(config, path)
    return path


def export_rows():
    found = {}
    for split in ("train", "validation"):
        path = os.path.join(EXPORT, split + ".parquet")
        if os.path.exists(path):
            for row in pq.read_table(path).to_pylist():
                found[row["extra_info"]["config_id"]] = row
    return found


async def training_step(make_loop, policy, reward_fn, batch):
    """One step's rollouts, all at once as verl's AgentLoopWorker runs them: a new agent loop per
    rollout, the sample's position as its priority."""
    loops = [make_loop() for _ in batch]
    policy.scripts.clear()
    for row, turns in batch:
        policy.expect(row["prompt"][-1]["content"], turns)

    async def one(priority, loop, row):
        loop.shown = []
        output = await loop.run({"temperature": 1.0}, priority=priority, raw_prompt=row["prompt"],
                                tools_kwargs=row["extra_info"]["tools_kwargs"], extra_info=row["extra_info"])
        fields = {k: v for k, v in output.extra_fields.items() if k.startswith("codegym")}
        # verl's naive reward manager: the row's extra_info updated with the rollout's fields.
        extra_info = dict(row["extra_info"], **output.extra_fields)
        score = reward_fn(data_source=row["data_source"], solution_str="", ground_truth=None, extra_info=extra_info)
        return {"score": score, "fields": fields, "tool_messages": loop.shown, "turns": output.num_turns}

    outcomes = await asyncio.gather(*(one(i, loop, row) for i, (loop, (row, _)) in enumerate(zip(loops, batch))),
                                    return_exceptions=True)
    return [o if isinstance(o, dict) else {"raised": type(o).__name__, "message": str(o)} for o in outcomes]


async def until_released(tool):
    """Waits until the tool holds no instance (30 s at most); returns how many it still holds."""
    deadline = time.monotonic() + 30
    while tool.held_instances and time.monotonic() < deadline:
        gc.collect()
        await asyncio.sleep(0.05)
    return tool.held_instances


async def run(scenario, workload, rows):
    saved = dict(os.environ)
    os.environ.update(scenario.get("env", {}))
    try:
        config = verl_config(scenario, tool_config(scenario))
        tools = load_all_tools(tool_config_path=config.actor_rollout_ref.rollout.multi_turn.tool_config_path,
                               function_tool_path=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    [tool] = tools
    tokenizer = byte_tokenizer()
    policy = ScriptedPolicy(tokenizer, scenario.get("think_s", 0))
    reward_fn = get_custom_reward_fn(config)
    RecordingToolAgentLoop.keep_agent_data = scenario.get("keep_agent_data", False)

    def make_loop():
        return RecordingToolAgentLoop(
            trainer_config=DictConfigWrap(config), server_manager=policy, tokenizer=tokenizer, processor=None,
            dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data), tools=ToolListWrap(tools))

    chosen = list(workload.items())[: scenario["rollouts"]]
    steps, held = [], []
    for _ in range(scenario["steps"]):
        batch = [(rows[c], script(scenario["script"], [json.loads(a) for a in w["actions"]])) for c, w in chosen]
        steps.append(await training_step(make_loop, policy, reward_fn, batch))
        held.append(await until_released(tool))
    await tool.close()
    RecordingToolAgentLoop.kept.clear()
    return {"request_ids": policy.request_ids, "steps": steps, "held_after_step": held,
            "observations": [w["observations"] for _, w in chosen]}


async def main():
    workload, rows = json.load(open(WORKLOAD)), export_rows()
    results = [await run(scenario, workload, rows) for scenario in json.load(open(SCENARIOS))]
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    asyncio.run(main())
