#!/usr/bin/env python3
"""Checks hand-written model responses in data-samples/llm/authored/<source_id>/ before they are
recorded: parses them the way codegym does and runs everything in the codegym sandbox.

    python3 data-samples/llm/check_authored.py cgs_0001 [cgs_0002 ...]

Per problem it prints: the environment class found, its self-test output, then per configuration
its difficulty, the reference answer, and, for the environment's own solve and every authored
solver candidate, pass/fail with the number of tool calls. Files per problem:
  env.md                  the environment-stage response (<task>...</task><env>...</env>)
  configs-1.md, -2.md     the two configuration samples (15 lines `EnvName@{json}` each)
  oracle-1.md ...         solver candidates (a `def solve(self):` somewhere in the text)
Needs a codegym binary: $CODEGYM_BIN, else `codegym` on PATH.
"""
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("CODEGYM_BIN", "codegym")


def last_tag(text, tag):
    text = text.rsplit("</think>", 1)[-1]
    start = text.rfind("<%s>" % tag)
    if start < 0:
        return None
    end = text.find("</%s>" % tag, start)
    if end < 0:
        return None
    return text[start + len(tag) + 2 : end].strip()


def unfence(code):
    m = re.search(r"```[a-zA-Z0-9_-]*\n(.*?)```", code, re.S)
    return m.group(1) if m else code


def env_class(code):
    for node in ast.parse(code).body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(i, ast.FunctionDef) and i.name == "from_env_str" for i in node.body
        ):
            return node.name
    return None


def config_lines(text, env_name):
    out = []
    position = 0
    for line in text.rsplit("</think>", 1)[-1].splitlines():
        line = line.strip()
        m = re.match(r"^(\w+)@(.*)$", line)
        if not m:
            continue
        position += 1
        band = "easy" if position <= 5 else "medium" if position <= 10 else "hard" if position <= 15 else "unknown"
        try:
            options = json.loads(m.group(2))
            ok = isinstance(options, dict) and m.group(1) == env_name
        except ValueError:
            ok = False
        out.append((band, line, ok))
    return out


def solver(text):
    text = text.rsplit("</think>", 1)[-1]
    lines = text.splitlines()
    starts = [i for i, l in enumerate(lines) if re.match(r"^\s*def solve\s*\(\s*self", l)]
    if not starts:
        return None
    i = starts[-1]
    indent = len(lines[i]) - len(lines[i].lstrip())
    body = [lines[i]]
    for l in lines[i + 1 :]:
        if l.strip().startswith("```"):
            break
        if l.strip() and len(l) - len(l.lstrip()) <= indent:
            break
        body.append(l)
    return textwrap.dedent("\n".join(body)).rstrip() + "\n"


RUNNER = r'''
import json, sys
SOURCE = %(source)r
NAME = %(name)r
CONFIGS = %(configs)r
SOLVER = %(solver)r
ns = {"__name__": "env_module"}
exec(compile(SOURCE, "<env>", "exec"), ns)
cls = ns[NAME]
if SOLVER is not None:
    sns = {}
    exec(SOLVER, sns)
    cls.solve = sns["solve"]
for cfg in CONFIGS:
    try:
        ref = cls.from_env_str(cfg).get_ref_answer()
        env = cls.from_env_str(cfg)
        msg = env.solve()
        print(json.dumps({"ref": str(ref)[:60], "ref_len": len(str(ref)), "pass": "reward=1" in str(msg), "calls": env.step_count}))
    except Exception as e:
        print(json.dumps({"error": repr(e)[:200]}))
'''


def sandbox(program, timeout_ms=20000):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(program)
    try:
        out = subprocess.run([BIN, "sandbox", "run", f.name, "--json", "--timeout-ms", str(timeout_ms), "--memory-mb", "256"],
                             capture_output=True, text=True)
        return json.loads(out.stdout)
    finally:
        os.unlink(f.name)


def check(source_id):
    d = os.path.join(HERE, "authored", source_id)
    print("=" * 20, source_id)
    env_text = open(os.path.join(d, "env.md")).read()
    task, env = last_tag(env_text, "task"), last_tag(env_text, "env")
    if task is None or env is None:
        print("UNPARSEABLE env.md (no <task> or <env>)")
        return
    code = unfence(env)
    name = env_class(code)
    print("class:", name, "| task text:", task[:80].replace("\n", " "))
    selftest = sandbox(code, 5000)
    print("self-test:", selftest["verdict"], selftest["exit_code"], "| stdout:", selftest["stdout"][-300:].replace("\n", " | "), selftest["stderr"][-300:])
    configs, seen = [], set()
    for k in (1, 2):
        p = os.path.join(d, "configs-%d.md" % k)
        if not os.path.exists(p):
            continue
        for band, line, ok in config_lines(open(p).read(), name):
            if not ok:
                print("  BAD config line:", line[:100])
            elif line in seen:
                print("  duplicate:", line[:100])
            else:
                seen.add(line)
                configs.append((band, line))
    candidates = [("own", None)]
    for f in sorted(os.listdir(d)):
        if f.startswith("oracle-"):
            s = solver(open(os.path.join(d, f)).read())
            if s is None:
                print("  NO SOLVER in", f)
            else:
                candidates.append((f, s))
    results = {}
    for label, s in candidates:
        r = sandbox(RUNNER % {"source": code, "name": name, "configs": [c for _, c in configs], "solver": s}, 60000)
        rows = [json.loads(l) for l in r["stdout"].splitlines() if l.startswith("{")]
        results[label] = rows
        if r["verdict"] != "ok":
            print("  candidate", label, "verdict", r["verdict"], r["stderr"][-200:])
    for i, (band, cfg) in enumerate(configs):
        own = results["own"][i] if i < len(results["own"]) else {}
        cells = []
        for label, _ in candidates:
            row = results[label][i] if i < len(results[label]) else None
            cells.append("-" if row is None else ("E" if "error" in row else ("P%d" % row["calls"] if row["pass"] else "F%d" % row["calls"])))
        print("  %-6s ref=%-24s len=%-3s %s  %s" % (band, own.get("ref", own.get("error", "?"))[:24], own.get("ref_len", "?"), " ".join(cells), cfg[:60]))
    print("  configs kept after dedup:", len(configs))


for sid in sys.argv[1:]:
    check(sid)
