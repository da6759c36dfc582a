"""The real consumers of `codegym export`'s files, driven by tests/it/export.rs: each subcommand
reads an export the way its consumer does, asserts what that consumer needs, and prints one JSON
object of counts for the Rust side to compare with the dataset.

  replay CODEGYM_DIR        plain CPython (run with -I -S: the standard library only) imports every
                            envs/*.py and replays every row's oracle trajectory to reward 1; a wrong
                            answer gets 0
  counts DIR...             pyarrow and DuckDB count the rows of every Parquet file
  hf HF_DIR                 Hugging Face `datasets` loads both configs, all splits; the card agrees;
                            every environment runs on plain CPython with the shipped gymnasium stand-in
  relicense DATA JSON       sets `problems.license` of the problems a JSON object maps (pyarrow)
  schemas HF_DIR VERL_DIR   every tool schema is valid JSON Schema 2020-12; tool_config.yaml is what
                            verl reads; the tool module imports without verl
  protocol VERL_DIR         the tool class, driven as verl's ToolAgentLoop drives it, against a stub
                            of the CodeGym REST API (a protocol test; verl's own agent loop drives
                            the real server in tests/it/verl.rs)
"""
import json
import os
import sys


def emit(result):
    print(json.dumps(result, sort_keys=True))


# ---------------------------------------------------------------- replay (standard library only)

def wrong_like(answer):
    if isinstance(answer, bool):
        return not answer
    if isinstance(answer, int):
        return answer + 1
    if isinstance(answer, float):
        return answer + 1.5
    if isinstance(answer, str):
        return answer + "x"
    if isinstance(answer, list):
        return answer + [0] if answer else [0]
    if isinstance(answer, dict):
        return dict(answer, wrong_key=1)
    return "wrong"


def replay(root):
    import importlib.util

    envs_dir = os.path.join(root, "envs")
    sys.path.insert(0, envs_dir)
    classes = {}
    checked = wrong_checked = 0
    for split in ("train", "validation"):
        path = os.path.join(root, split + ".jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                _, rest = row["ability"].split("@", 1)
                stem, options = rest.split("@", 1)
                env_name = stem.rsplit("__", 1)[1]
                assert stem.startswith(row["code_id"] + "__"), row["ability"]
                if stem not in classes:
                    spec = importlib.util.spec_from_file_location("env_" + stem, os.path.join(envs_dir, stem + ".py"))
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    classes[stem] = getattr(module, env_name)
                cls = classes[stem]
                config = env_name + "@" + options
                steps = json.loads(row["extra_info"]["oracle_trajectory"])
                assert len(steps) == row["extra_info"]["solve_fc_round"], (config, len(steps))
                env = cls.from_env_str(config)
                for action, observation in steps:
                    result = env.step(action)
                    got = result[1] if isinstance(result, tuple) and len(result) == 2 else result
                    assert str(got) == observation, (config, action, got, observation)
                assert env.reward == 1 and "reward=1" in steps[-1][1], (config, steps[-1])
                checked += 1
                last = json.loads(steps[-1][0])
                if last.get("name") != "Done":
                    continue
                env = cls.from_env_str(config)
                for action, _ in steps[:-1]:
                    env.step(action)
                key = "answer" if "answer" in last["parameters"] else next(iter(last["parameters"]))
                answer = last["parameters"][key]
                env.step(json.dumps({"name": "Done", "parameters": {key: wrong_like(answer)}}))
                assert env.reward == 0, (config, "a wrong answer was rewarded", answer)
                wrong_checked += 1
    emit({"rows": checked, "wrong_answers": wrong_checked, "environments": len(classes),
          "python": "%d.%d" % sys.version_info[:2], "stdlib_only": "site" not in sys.modules})


# ---------------------------------------------------------------- counts (pyarrow, DuckDB)

def counts(roots):
    import duckdb
    import pyarrow.parquet as pq

    result = {}
    for root in roots:
        files = {}
        for directory, _, names in os.walk(root):
            for name in sorted(names):
                if name.endswith(".parquet"):
                    path = os.path.join(directory, name)
                    arrow_rows = pq.ParquetFile(path).read().num_rows
                    duck_rows = duckdb.sql("SELECT count(*) FROM read_parquet('%s')" % path.replace("'", "''")).fetchall()[0][0]
                    assert arrow_rows == duck_rows, (path, arrow_rows, duck_rows)
                    files[os.path.relpath(path, root)] = arrow_rows
        result[root] = files
    emit(result)


# ---------------------------------------------------------------- Hugging Face datasets

def hf(root):
    import datasets
    import pyarrow.parquet as pq
    import yaml

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    text = open(os.path.join(root, "README.md")).read()
    card = yaml.safe_load(text.split("---\n")[1])
    loaded = {}
    for info in card["dataset_info"]:
        name = info["config_name"]
        dataset = datasets.load_dataset(root, name)
        for split in info["splits"]:
            assert len(dataset[split["name"]]) == split["num_examples"], (name, split)
        files = sorted(os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns if n.endswith(".parquet"))
        directory = next(c["data_files"][0]["path"].split("/")[0] for c in card["configs"] if c["config_name"] == name)
        schema = pq.read_schema(next(f for f in files if os.path.relpath(f, root).startswith(directory + "/")))
        assert datasets.Features.from_arrow_schema(schema)._to_yaml_list() == info["features"], name
        loaded[name] = {split: len(rows) for split, rows in dataset.items()}
    default = datasets.load_dataset(root)
    assert {s: len(r) for s, r in default.items()} == loaded["configurations"], "configurations is the default config"
    for link in [line[line.index("](") + 2:-1] for line in text.splitlines() if line.startswith("![")]:
        svg = open(os.path.join(root, link)).read()
        assert svg.lstrip().startswith("<svg") and "<text" in svg, link
    row = default[next(iter(default))][0]
    emit({"loaded": loaded, "licenses": card["license"], "plots": text.count("!["),
          "index_type": type(row["extra_info"]["index"]).__name__, "names": [m["name"] for m in row["prompt"]],
          "hub": {key: card.get(key) for key in ("license_name", "language", "pretty_name", "size_categories",
                                                 "task_categories", "tags")},
          "license_table": license_table(text), "stepped": step_environments(root, default)})


def license_table(text):
    """The rows of the card's licence table, each a list of cells read back as Markdown renders
    them: split at unescaped `|`, backslash escapes undone, `<br>` a line break."""
    lines = text.split("## Licences", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|")][2:]
    table = []
    for line in rows:
        cells, cell, escaped = [], "", False
        for c in line.strip()[1:-1]:
            if escaped:
                cell, escaped = cell + "\\" + c, False
            elif c == "\\":
                escaped = True
            elif c == "|":
                cells.append(cell)
                cell = ""
            else:
                cell += c
        cells.append(cell)
        table.append([unescape(c.strip()) for c in cells])
    return table


def unescape(cell):
    out, i = "", 0
    cell = cell.replace("<br>", "\n").replace("&#32;", " ")
    while i < len(cell):
        if cell[i] == "\\" and i + 1 < len(cell):
            i += 1
        out += cell[i]
        i += 1
    return out


def step_environments(root, rows):
    """Runs every exported environment as the card says: its `env_code` exec'd with the export's
    environments/ first on the path (for the gymnasium stand-in), one configuration replayed to reward 1."""
    import datasets

    sys.path.insert(0, os.path.join(root, "environments"))
    envs = datasets.load_dataset(root, "environments")
    stepped = 0
    for split, env_rows in envs.items():
        configs = {}
        for row in rows[split]:
            configs.setdefault(row["extra_info"]["env_str"].split("@", 1)[0], row)
        for env in env_rows:
            namespace = {}
            exec(env["env_code"], namespace)
            row = configs[env["source"] + "__" + env["env_name"]]
            options = row["extra_info"]["env_str"].split("@", 1)[1]
            instance = namespace[env["env_name"]].from_env_str(env["env_name"] + "@" + options)
            trajectory = row["extra_info"]["oracle_trajectory"]
            if trajectory is None:
                assert instance.step(json.dumps({"name": "Observe", "parameters": {}})), env["env_name"]
            else:
                for action, _ in json.loads(trajectory):
                    instance.step(action)
                assert instance.reward == 1, (env["env_name"], options)
            stepped += 1
    gymnasium = sys.modules["gymnasium"]
    assert os.path.samefile(gymnasium.__file__, os.path.join(root, "environments", "gymnasium.py")), gymnasium.__file__
    return stepped


# ---------------------------------------------------------------- editing a dataset's licences

def relicense(data, mapping_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    mapping = json.load(open(mapping_path))
    changed = 0
    for name in sorted(os.listdir(os.path.join(data, "problems"))):
        path = os.path.join(data, "problems", name)
        table = pq.read_table(path)
        ids = table["problem_id"].to_pylist()
        old = table["license"].to_pylist()
        new = [mapping.get(pid, license) for pid, license in zip(ids, old)]
        changed += sum(pid in mapping for pid in ids)
        index = table.schema.get_field_index("license")
        table = table.set_column(index, table.schema.field(index), pa.array(new, type=pa.string()))
        pq.write_table(table, path)
    emit({"changed": changed})


# ---------------------------------------------------------------- tool schemas and verl's config

def hide_verl():
    """Makes verl and torch unimportable, installed or not (the tool module must do without)."""

    class Hidden:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("verl", "torch"):
                raise ImportError("hidden: %s" % name)

    sys.meta_path.insert(0, Hidden())


def schemas(hf_root, verl_root):
    import importlib
    import jsonschema
    import pyarrow.parquet as pq
    import yaml

    tools = []
    for directory, _, names in os.walk(os.path.join(hf_root, "environments")):
        for name in [n for n in names if n.endswith(".parquet")]:
            for text in pq.read_table(os.path.join(directory, name), columns=["tool_schemas"])["tool_schemas"].to_pylist():
                tools.extend(json.loads(text))
    config = yaml.safe_load(open(os.path.join(verl_root, "tool_config.yaml")))
    [entry] = config["tools"]
    assert entry["config"]["type"] == "native" and entry["config"]["server_url"].startswith("http")
    assert entry["tool_schema"]["type"] == "function"
    tools.append(entry["tool_schema"]["function"])
    typed = 0
    for tool in tools:
        assert set(tool) == {"name", "description", "parameters"}, tool
        parameters = tool["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        assert parameters["type"] == "object" and "properties" in parameters and "required" in parameters, tool
        for prop in parameters["properties"].values():
            assert "type" in prop, (tool["name"], prop)  # verl's property schema requires a type
            typed += prop["type"] != "string"
        jsonschema.Draft202012Validator(parameters)  # usable as a validator too
    # verl imports the class by its dotted name, with the export's directory on the path. The
    # module must import without verl (and torch), installed or not: both are hidden here.
    sys.path.insert(0, verl_root)
    module_name, class_name = entry["class_name"].rsplit(".", 1)

    hide_verl()
    module = importlib.import_module(module_name)
    assert not any(name.split(".")[0] in ("verl", "torch") for name in sys.modules), "imported without verl"
    cls = getattr(module, class_name)
    tool = cls(config=entry["config"], tool_schema=entry["tool_schema"])
    assert tool.name == "codegym_step"
    table = pq.read_table(os.path.join(verl_root, "train.parquet")).to_pylist()
    row = table[0]
    assert row["agent_name"] == "tool_agent" and "ground_truth" in row["reward_model"]
    assert row["reward_model"]["ground_truth"] is None
    assert row["extra_info"]["need_tools_kwargs"] is True
    create = row["extra_info"]["tools_kwargs"]["codegym_step"]["create_kwargs"]
    assert create["env_str"] == row["extra_info"]["env_str"] and create["config_id"] == row["extra_info"]["config_id"]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    emit({"tools": len(tools), "typed_parameters": typed, "verl_rows": len(table)})


# ---------------------------------------------------------------- the tool class vs a stub server

def protocol(verl_root):
    """verl's ToolAgentLoop, call for call, against a stub of `codegym serve`'s CodeGym API."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pyarrow.parquet as pq
    import yaml

    requests = []

    class Stub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            status, answer = 200, {}
            if self.path == "/get_instance":
                answer = {"instance_id": "inst-%d" % sum(p == "/get_instance" for p, _ in requests)}
            elif self.path == "/start":
                answer = {"observation": "started " + body["env_str"]}
            elif self.path == "/step":
                action = json.loads(body["action"])
                if action["name"] == "Unknown":
                    status, answer = 400, {"error": "no tool named Unknown"}
                else:
                    done = action["name"] == "Done"
                    answer = {"observation": "ran " + action["name"], "reward": 1.0 if done else 0.0, "done": done}
            elif self.path == "/reward":
                answer = {"reward": 0.0}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.path.insert(0, verl_root)
    hide_verl()
    import codegym_tool

    entry = yaml.safe_load(open(os.path.join(verl_root, "tool_config.yaml")))["tools"][0]
    entry["config"]["server_url"] = "http://127.0.0.1:%d" % server.server_address[1]
    tool = codegym_tool.CodegymStepTool(config=entry["config"], tool_schema=entry["tool_schema"])
    row = pq.read_table(os.path.join(verl_root, "train.parquet")).slice(0, 1).to_pylist()[0]
    kwargs = row["extra_info"]["tools_kwargs"]["codegym_step"]
    # The oracle's calls of this configuration, as the model would make them through codegym_step.
    actions = [{"name": "Observe", "parameters": {}}, {"name": "Unknown", "parameters": {"x": 1}},
               {"name": "Done", "parameters": {"answer": [1, 2]}}]

    class AgentData:  # the part of verl's AgentData a tool sees
        def __init__(self, request_id):
            self.request_id = request_id
            self.extra_fields = {}

    async def call(agent, name, arguments):
        # ToolAgentLoop._call_tool: create, execute with the parsed arguments, release, every call.
        instance_id, _ = await tool.create(create_kwargs=kwargs.get("create_kwargs", {}))
        try:
            response, reward, metrics = await tool.execute(instance_id, {"name": name, "arguments": arguments}, agent_data=agent)
        finally:
            await tool.release(instance_id)
        return instance_id, response.text, reward

    async def rollout():
        agent = AgentData("request-1")
        texts, rewards = [], []
        for action in actions:
            _, text, reward = await call(agent, action["name"], json.dumps(action["parameters"]))
            texts.append(text)
            rewards.append(reward)
        malformed = await call(AgentData("request-2"), "Observe", "[1, 2]")
        after_done = await call(agent, "Observe", "{}")
        await tool.close()
        return agent, texts, rewards, malformed, after_done

    agent, texts, rewards, malformed, after_done = asyncio.run(rollout())
    paths = [p for p, _ in requests]
    assert paths == ["/get_instance", "/start", "/step", "/step", "/step", "/release_instance"], paths
    assert requests[0][1] == {"lease_s": entry["config"]["lease_s"]}, requests[0]
    start = requests[1][1]
    assert start == {"instance_id": "inst-1", "env_str": kwargs["create_kwargs"]["env_str"]}, start
    steps = [body for p, body in requests if p == "/step"]
    assert all(body["instance_id"] == "inst-1" for body in steps), "one session across per-call create/release"
    assert [json.loads(body["action"]) for body in steps] == actions, steps
    assert all(isinstance(body["action"], str) for body in steps), "the action is JSON text"
    assert texts[0] == "ran Observe" and "no tool named Unknown" in texts[1] and texts[2] == "ran Done", texts
    assert rewards == [0.0, 0.0, 1.0], rewards
    assert agent.extra_fields == {"codegym_reward": 1.0, "codegym_error": 0}, agent.extra_fields
    score = codegym_tool.compute_score
    assert score("codegym_v1", "", None, extra_info=agent.extra_fields) == {"score": 1.0, "codegym_error": 0}
    assert score("codegym_v1", "", None, extra_info={"tool_rewards": [0.0, 1.0]})["score"] == 1.0
    assert score("codegym_v1", "", None, extra_info={}) == {"score": 0.0, "codegym_error": 0}
    assert malformed[1].startswith("Error:") and "JSON object" in malformed[1], malformed
    assert after_done[1].startswith("The episode is over"), after_done
    assert paths == [p for p, _ in requests], "neither a malformed call nor a call after Done reaches the server"
    # Without agent_data (a caller that keeps one tool instance per rollout), the episode lives from
    # create to release.
    async def per_instance():
        instance_id, _ = await tool.create(create_kwargs=kwargs.get("create_kwargs", {}))
        for action in actions[:2]:
            await tool.execute(instance_id, {"name": action["name"], "arguments": json.dumps(action["parameters"])})
        reward = await tool.calc_reward(instance_id)
        await tool.release(instance_id)
        await tool.close()
        return reward

    before = len(requests)
    assert asyncio.run(per_instance()) == 0.0
    paths = [p for p, _ in requests[before:]]
    assert paths == ["/get_instance", "/start", "/step", "/step", "/release_instance"], paths
    server.shutdown()

    async def unreachable():
        client = codegym_tool.CodegymClient("http://127.0.0.1:%d" % server.server_address[1], timeout_s=2)
        try:
            await client.call("/get_instance", {})
        finally:
            await client.close()

    try:
        asyncio.run(unreachable())
        raise AssertionError("an unreachable server must raise")
    except codegym_tool.CodegymError as e:
        assert "cannot reach codegym serve" in str(e) and e.fault is codegym_tool.Fault.SERVER, e
    emit({"requests": len(requests), "reward": rewards[-1]})


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"replay": lambda: replay(*args), "counts": lambda: counts(args), "hf": lambda: hf(*args),
     "relicense": lambda: relicense(*args),
     "schemas": lambda: schemas(*args), "protocol": lambda: protocol(*args)}[command]()
