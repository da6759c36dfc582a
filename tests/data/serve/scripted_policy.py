# A scripted policy behind an OpenAI-compatible chat-completions endpoint, for driving trainers'
# rollout code against `codegym serve` without a model: it replays each episode's stored oracle
# actions, one per assistant turn, and records every request so a test can check what the model
# was shown. The episode is the one whose task text the conversation's first user turn holds
# (a workload has one configuration per environment, so the task text names it).
#
# Replies carry the action as the message text (`{"name", "parameters"}`, what verifiers' OpenEnv
# environment parses) or, with `tool_calls=True`, as a tool call of that name (what a harness
# that hands the model the episode's tools expects).
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def first_user_text(messages):
    content = next(m["content"] for m in messages if m["role"] == "user")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content)
    return content


def shows(text, task):
    """Whether `text` holds `task`, as written or JSON-escaped."""
    return task in text or json.dumps(task, ensure_ascii=False)[1:-1] in text


class Policy:
    def __init__(self, workload, tool_calls=False):
        self.workload = workload
        self.tool_calls = tool_calls
        self.first_turns = []
        self.lock = threading.Lock()

    def episode_of(self, messages):
        first = first_user_text(messages)
        matches = [e for e in self.workload if shows(first, e["task"])]
        assert len(matches) == 1, f"{len(matches)} episodes match the first turn: {first[:300]}"
        return matches[0], first

    def reply(self, request):
        messages = request["messages"]
        episode, first = self.episode_of(messages)
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            with self.lock:
                self.first_turns.append({"config_id": episode["config_id"], "text": first, "tools": request.get("tools")})
        action = json.loads(episode["actions"][turn])
        message = {"role": "assistant", "content": json.dumps(action)}
        if self.tool_calls:
            call = {"id": f"call_{turn}", "type": "function",
                    "function": {"name": action["name"], "arguments": json.dumps(action.get("parameters") or {})}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {
            "id": f"scripted-{turn}",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if self.tool_calls else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def serve(self):
        """Starts the endpoint on a free loopback port; returns its base URL (`.../v1`)."""
        policy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    status, body = 200, policy.reply(request)
                except Exception as error:  # the test reads the error in the client's failure
                    status, body = 500, {"error": {"message": repr(error)}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/v1"
