#!/usr/bin/env python3
"""An OpenAI-compatible chat-completions server on loopback that answers codegym's prompts with the
hand-written answers in data-samples/llm/authored/<question_id>/. `record.sh` runs a live build
against it, so the recording in data-samples/llm/recorded/ is made by codegym's real client.

    python3 data-samples/llm/serve_authored.py PORT_FILE

It binds a free port on 127.0.0.1, writes the port to PORT_FILE, and serves until killed. A
request it has no answer for gets HTTP 400 (the build records that problem as refused).
"""
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
AUTHORED = os.path.join(HERE, "authored")
CORPUS = os.path.join(HERE, "..", "corpus", "problems.jsonl")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load():
    questions = {}
    for line in open(CORPUS, encoding="utf-8"):
        row = json.loads(line)
        questions[row["question_id"]] = row["question"]
    problems = {}
    for qid in sorted(os.listdir(AUTHORED)):
        d = os.path.join(AUTHORED, qid)
        answers = {f: read(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".md")}
        env = answers.get("env.md", "")
        final = env.rsplit("</think>", 1)[-1]
        names = re.findall(r"^class (\w+)\(gymnasium\.Env\)", final, re.M)
        problems[qid] = {
            "question": questions[qid],
            "env_name": names[-1] if names else None,
            "env": env,
            "configs": [answers[f] for f in sorted(answers) if f.startswith("configs-")],
            "oracles": [answers[f] for f in sorted(answers) if f.startswith("oracle-")],
        }
    return problems


PROBLEMS = load()


def answer(user, n):
    if "Rewrite the programming exercise below as an environment." in user:
        for p in PROBLEMS.values():
            if p["question"].strip() in user:
                return [p["env"]]
        return None
    match = re.search(r"Now write the 15 lines for `(\w+)`", user) or re.search(r"Now write `def solve\(self\):` for `(\w+)`", user)
    if not match:
        return None
    kind = "configs" if "15 lines" in match.group(0) else "oracles"
    for p in PROBLEMS.values():
        if p["env_name"] == match.group(1):
            return p[kind][:n] or None
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        choices = answer(user, int(body.get("n", 1)))
        if choices is None:
            self.reply(400, {"error": {"message": "no authored answer for this request"}})
            return
        self.reply(200, {
            "id": "authored",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"} for i, c in enumerate(choices)],
            "usage": {"prompt_tokens": sum(len(m["content"]) for m in body["messages"]) // 4, "completion_tokens": sum(len(c) for c in choices) // 4},
        })

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
