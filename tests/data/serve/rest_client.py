# Drives `codegym serve`'s CodeGym REST API the way a release-style rollout client does, with
# nothing but urllib: get an instance, start an env_str (its answer opens with the task text, then
# the instructions and the tools, then the environment's own `observation`), step the stored oracle actions (JSON text),
# read is_done and reward, reset, submit a wrong answer, stop and release. Every episode must see
# the stored observations and end with reward 1; a wrong Done gets 0; a step after Done is refused
# with a 4xx and an {"error"} body.
#
# Usage: python rest_client.py URL WORKLOAD.json   (workload: [{env_str, actions, observations,
# wrong_answer, task, tools}]). Prints one JSON summary; exits non-zero on the first mismatch.
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def post(base, path, body):
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def refused(base, path, body):
    try:
        post(base, path, body)
    except urllib.error.HTTPError as error:
        assert 400 <= error.code < 500, error.code
        return error.code, json.loads(error.read())["error"]
    raise AssertionError("%s was accepted: %r" % (path, body))


def episode_run(base, episode):
    instance = post(base, "/get_instance", {})["instance_id"]
    started = post(base, "/start", {"instance_id": instance, "env_str": episode["env_str"]})
    assert list(started) == ["task", "instructions", "instructions_version", "available_tools", "observation"], started
    assert started["task"] == episode["task"], (started["task"], episode["task"])
    assert [tool["name"] for tool in started["available_tools"]] == episode["tools"], started["available_tools"]
    first = started["observation"]
    assert post(base, "/is_done", {"instance_id": instance}) == {"done": False}
    for i, action in enumerate(episode["actions"]):
        answer = post(base, "/step", {"instance_id": instance, "action": action})
        assert answer["observation"] == episode["observations"][i], (episode["env_str"], i, answer)
        assert answer["done"] == (i == len(episode["actions"]) - 1), (episode["env_str"], i, answer)
    assert post(base, "/is_done", {"instance_id": instance}) == {"done": True}
    assert post(base, "/reward", {"instance_id": instance}) == {"reward": 1.0}
    code, message = refused(base, "/step", {"instance_id": instance, "action": episode["actions"][-1]})
    assert code == 409 and "the episode is over" in message, (code, message)
    assert post(base, "/reset", {"instance_id": instance}) == started
    done = json.dumps({"name": "Done", "parameters": {"answer": episode["wrong_answer"]}})
    answer = post(base, "/step", {"instance_id": instance, "action": done})
    assert answer["done"] is True and answer["reward"] == 0.0, answer
    assert post(base, "/stop", {"instance_id": instance}) == {}
    assert post(base, "/release_instance", {"instance_id": instance}) == {}
    code, _ = refused(base, "/step", {"instance_id": instance, "action": done})
    assert code == 404, code
    return len(episode["actions"])


def main():
    base, workload = sys.argv[1], json.load(open(sys.argv[2]))
    with ThreadPoolExecutor(4) as pool:
        steps = list(pool.map(lambda episode: episode_run(base, episode), workload))
    print(json.dumps({"episodes": len(steps), "rewarded": len(steps), "steps": sum(steps)}))


main()
