# The baseline of `codegym bench export`: the same export the way a Python team would write it,
# vectorised with pyarrow compute and pandas (no per-row Python loop): read the two tables, keep the
# kept configurations, join their environments, build the rows' columns, write the files, hash
# them into a manifest. It writes the files `codegym export` writes, except the dataset card and
# its plots. Usage: python export_baseline.py SPEC.json, where SPEC names the dataset, the format,
# the output directory and the texts of the prompts; or `compare OURS THEIRS FORMAT`, which checks
# that two exports hold the same rows.
import hashlib
import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW_GROUP_BYTES = 100 << 20


def const(value, n):
    return pa.repeat(value, n)


def read(spec):
    data = spec["data"]
    envs = pq.read_table(os.path.join(data, "environments"), columns=[
        "env_id", "source_id", "env_name", "env_code", "task_text", "tool_docs", "tool_schemas", "tool_count"])
    splits = pq.read_table(os.path.join(data, "splits"), columns=["env_id", "split"]).combine_chunks()
    at = pc.index_in(envs["env_id"], value_set=splits["env_id"])
    envs = envs.append_column("split", pc.take(splits["split"], at))
    configs = pq.read_table(os.path.join(data, "task_configs"), columns=[
        "config_id", "env_id", "config", "difficulty", "source_index", "oracle_calls", "reference_pass_rate",
        "oracle_trajectory", "kept"])
    configs = configs.filter(configs["kept"])
    # One contiguous array per column (the struct and list builders below take arrays), with 64-bit
    # offsets: a million rows of prompts and trajectories are more than 2 GB of text.
    return large(envs).combine_chunks(), large(configs).combine_chunks()


def large(table):
    fields = [pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in table.schema]
    return table.cast(pa.schema(fields))


def join(*parts, sep=""):
    """Element-wise concatenation of columns and constants, all as large strings."""
    parts = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else pc.cast(p, pa.large_string()) for p in parts]
    return pc.binary_join_element_wise(*parts, pa.scalar(sep, pa.large_string()))


def column(table, name):
    chunked = table.column(name)
    assert chunked.num_chunks <= 1, name
    return chunked.chunk(0) if chunked.num_chunks else pa.array([], chunked.type)


def joined(spec, envs, configs):
    """The configurations with what the rows need of their environments, by vectorised take."""
    e = lambda name: column(envs, name)
    pos = pc.index_in(column(configs, "env_id"), value_set=e("env_id"))
    split = pc.if_else(pc.equal(pc.fill_null(e("split"), "train"), "validation"), "validation", "train")
    code_id = pc.replace_substring_regex(e("source_id"), "[^A-Za-z0-9._-]", "_")
    stem = join(code_id, e("env_name"), sep="__")
    options = pc.list_element(pc.split_pattern(column(configs, "config"), "@", max_splits=1), 1)
    env_str = join(pc.take(stem, pos), options, sep="@")
    task = pc.utf8_trim_whitespace(pc.fill_null(e("task_text"), ""))
    if spec["format"] == "verl":
        system = join(spec["verl_system_prefix"], pc.utf8_trim_whitespace(e("tool_docs")))
        user = join(spec["verl_user_prefix"], task)
    else:
        system = e("tool_docs")
        user = join(spec["codegym_user_prefix"], task)
    return {
        "split": pc.take(split, pos),
        "code_id": pc.take(code_id, pos),
        "env_str": env_str,
        "system": pc.take(system, pos),
        "user": pc.take(user, pos),
    }


def prompt(system, user, named):
    n = len(system)
    contents = pc.take(pa.concat_arrays([system, user]),
                       pa.array(np.column_stack([np.arange(n), np.arange(n) + n]).ravel()))
    roles = pc.take(pa.array(["system", "user"]), pa.array(np.tile([0, 1], n)))
    fields = [roles]
    names = ["role"]
    if named:
        fields.append(pc.take(pa.array(["functions", ""]), pa.array(np.tile([0, 1], n))))
        names.append("name")
    fields.append(contents)
    names.append("content")
    messages = pa.StructArray.from_arrays(fields, names=names)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), messages)


def reward_model(n):
    return pa.StructArray.from_arrays([const("agent_env", n), pa.nulls(n)], names=["style", "ground_truth"])


def rows(spec, part, j, split):
    n = part.num_rows
    max_round = spec["plugin_call_max_round"]
    ability = join("codegym_v1@", j["env_str"])
    part = {name: column(part, name) for name in part.column_names}
    calls = pc.cast(part["oracle_calls"], pa.int64())
    if spec["format"] == "verl":
        create = pa.StructArray.from_arrays([j["env_str"], part["config_id"]], names=["env_str", "config_id"])
        step = pa.StructArray.from_arrays([pa.StructArray.from_arrays([create], names=["create_kwargs"])], names=["codegym_step"])
        extra = pa.StructArray.from_arrays([
            pa.array(np.arange(n, dtype=np.int64)), const(True, n), step, part["config_id"], j["env_str"],
            const(split, n), part["difficulty"], calls, const(max_round, n), part["reference_pass_rate"]],
            names=["index", "need_tools_kwargs", "tools_kwargs", "config_id", "env_str", "split", "difficulty",
                   "solve_fc_round", "plugin_call_max_round", "reference_pass_rate"])
        return pa.table({
            "data_source": const("codegym_v1", n), "agent_name": const("tool_agent", n),
            "prompt": prompt(j["system"], j["user"], False), "ability": ability,
            "reward_model": reward_model(n), "extra_info": extra})
    extra = pa.StructArray.from_arrays([
        pa.array(np.arange(n).astype(str)), calls, const(max_round, n), part["config_id"], j["env_str"],
        const(split, n), part["difficulty"], part["reference_pass_rate"], part["oracle_trajectory"], part["source_index"]],
        names=["index", "solve_fc_round", "plugin_call_max_round", "config_id", "env_str", "split", "difficulty",
               "reference_pass_rate", "oracle_trajectory", "source_index"])
    return pa.table({
        "data_source": const("codegym_v1", n), "ability": ability, "code_id": j["code_id"],
        "prompt": prompt(j["system"], j["user"], True), "answer": const("There is no answer", n),
        "reward_model": reward_model(n), "plugin_call_max_round": const(max_round, n), "extra_info": extra})


def write(table, path):
    per_group = max(1, int(table.num_rows * ROW_GROUP_BYTES / max(table.nbytes, 1)))
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=per_group)


def write_shards(table, directory, split, max_bytes):
    os.makedirs(directory, exist_ok=True)
    per_shard = max(1, int(table.num_rows * max_bytes / max(table.nbytes, 1)))
    count = max(1, -(-table.num_rows // per_shard))
    for i in range(count):
        write(table.slice(i * per_shard, per_shard), os.path.join(directory, "%s-%05d-of-%05d.parquet" % (split, i, count)))


def environments(envs, configs, split_name):
    counts = configs.select(["env_id"]).to_pandas()["env_id"].value_counts()
    frame = envs.select(["env_id", "split"]).to_pandas()
    frame["configurations"] = frame["env_id"].map(counts).fillna(0).astype("int64")
    frame["split"] = np.where(frame["split"] == "validation", "validation", "train")
    keep = (frame["configurations"] > 0) & (frame["split"] == split_name)
    picked = large(envs.filter(pa.array(keep.to_numpy()))).combine_chunks()
    code_id = pc.replace_substring_regex(picked["source_id"], "[^A-Za-z0-9._-]", "_")
    n = picked.num_rows
    return pa.table({
        "source": code_id, "env_name": picked["env_name"], "env_code": picked["env_code"], "env_id": picked["env_id"],
        "source_id": picked["source_id"], "task_text": pc.fill_null(picked["task_text"], ""),
        "tool_docs": picked["tool_docs"], "tool_schemas": picked["tool_schemas"], "tool_count": picked["tool_count"],
        "license": const("CC BY-NC 4.0", n),
        "configurations": pa.array(frame["configurations"][keep].to_numpy())})


def manifest(out, spec, counts):
    files = []
    for root, _, names in os.walk(out):
        for name in names:
            path = os.path.join(root, name)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            files.append({"path": os.path.relpath(path, out), "bytes": os.path.getsize(path), "sha256": digest.hexdigest()})
    files.sort(key=lambda f: f["path"])
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"format": spec["format"], "rows": counts, "files": files}, f, indent=2)


def export(spec):
    started = time.time()
    envs, configs = read(spec)
    j = joined(spec, envs, configs)
    out = spec["out"]
    os.makedirs(out, exist_ok=True)
    counts = {}
    for split in ("train", "validation"):
        mask = pc.equal(j["split"], split)
        part = configs.filter(mask).combine_chunks()
        part_j = {k: v.filter(mask) for k, v in j.items()}
        table = rows(spec, part, part_j, split)
        counts[split] = table.num_rows
        if spec["format"] == "verl":
            write(table, os.path.join(out, split + ".parquet"))
        else:
            write_shards(table, os.path.join(out, "data"), split, spec["max_shard_bytes"])
            write_shards(environments(envs, configs, split), os.path.join(out, "environments"), split, spec["max_shard_bytes"])
        del table, part, part_j
    if spec["format"] == "verl":
        with open(os.path.join(out, "tool_config.yaml"), "w") as f:
            f.write(spec["tool_config"])
    manifest(out, spec, counts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.time() - started, "peak_mb": peak_mb, "rows": sum(counts.values())}))


def compare(ours, theirs, fmt):
    """Whether two exports hold the same rows (values; nullability flags may differ)."""
    pattern = ["train.parquet", "validation.parquet"] if fmt == "verl" else ["data"]
    for name in pattern:
        a = pq.read_table(os.path.join(ours, name))
        b = pq.read_table(os.path.join(theirs, name))
        # The first and last rows as Python values (all of a million rows would take tens of GB).
        ends = lambda t: t.slice(0, 200).to_pylist() + t.slice(max(0, t.num_rows - 200)).to_pylist()
        if a.num_rows != b.num_rows or ends(a) != ends(b):
            print(json.dumps({"same": False, "file": name}))
            return
    print(json.dumps({"same": True}))


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        with open(sys.argv[1]) as f:
            export(json.load(f))
