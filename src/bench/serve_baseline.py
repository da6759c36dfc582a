# The baseline of `codegym bench serve`: the CodeGym release's step mechanism, as its env server
# runs it, without its HTTP layer: a warm worker per thread holds its sessions' environments; each
# step pickles the environment, runs the step in a forked `multiprocessing.Process` that unpickles
# it, steps it and sends back the observation and the new state through a queue, and the worker
# keeps the new state only when the child succeeded (the release uses dill; the sandbox has only
# pickle, so both sides use pickle).
#
# The environments import `gymnasium`: the sandbox's stand-in is written beside this script.
#
# Input (stdin): {"mode": "saturate" | "paced" | "idle", "workers", "sessions", "steps",
# "pause", "seconds", "timeout", "envs": {env_id: [env_name, source]},
# "episodes": [[env_id, config, [action, ...]], ...], and for "paced" optionally "hostile" (a
# count of sessions replaying "hostile_episode" without pause)}. Output (stdout): one JSON object.
import json
import multiprocessing
import pickle
import queue
import sys
import time
import traceback
import types


def load_modules(envs):
    classes = {}
    for env_id, (env_name, source) in envs.items():
        name = "baseline_env_" + env_id
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, name, "exec"), module.__dict__)
        classes[env_id] = getattr(module, env_name)
    return classes


def step_in_process(env_bytes, action, results):
    try:
        env = pickle.loads(env_bytes)
        status, observation = env.step(action)
        results.put((status, observation, pickle.dumps(env)))
    except Exception as error:
        results.put(("error", str(error)))


def forked_step(env, action, timeout):
    """One step as the release runs it: a forked process per step, the state kept on success."""
    results = multiprocessing.Queue()
    child = multiprocessing.Process(target=step_in_process, args=(pickle.dumps(env), action, results))
    child.start()
    try:
        result = results.get(timeout=timeout)
    except queue.Empty:
        child.kill()
        result = ("error", "Step timed out.")
    finally:
        child.join(timeout=1)
        if child.is_alive():
            child.kill()
            child.join()
        child.close()
        results.close()
        results.join_thread()
    if result[0] == "error":
        return env, "Error: " + result[1]
    return pickle.loads(result[2]), result[1]


class Session:
    def __init__(self, classes, episodes, first):
        self.classes, self.episodes, self.next = classes, episodes, first
        self.start()

    def start(self):
        env_id, config, actions = self.episodes[self.next % len(self.episodes)]
        self.next += 1
        self.env = self.classes[env_id].from_env_str(config)
        self.actions, self.position = actions, 0

    def step(self, timeout):
        """One step; returns the reward when the episode ended (and starts the next one)."""
        self.env, _observation = forked_step(self.env, self.actions[self.position], timeout)
        self.position += 1
        if self.position < len(self.actions):
            return None
        reward = getattr(self.env, "reward", 0)
        self.start()
        return reward


def saturate(job, classes, worker):
    sessions = [Session(classes, job["episodes"], worker + i * job["workers"]) for i in range(job["sessions"] // job["workers"])]
    steps, rewards, started = 0, [], time.monotonic()
    while steps < job["steps"] // job["workers"]:
        for session in sessions:
            reward = session.step(job["timeout"])
            steps += 1
            if reward is not None:
                rewards.append(reward)
    return {"steps": steps, "seconds": time.monotonic() - started, "episodes": len(rewards), "rewarded": sum(1 for r in rewards if r == 1)}


def paced(job, classes, worker):
    count = job["sessions"] // job["workers"]
    sessions = [Session(classes, job["episodes"], worker + i * job["workers"]) for i in range(count)]
    # Hostile neighbours (every step spins to the timeout) share the workers, never pause, and are
    # not measured.
    hostile = [Session(classes, [job["hostile_episode"]], 0) for i in range(job.get("hostile", 0)) if i % job["workers"] == worker]
    everyone = sessions + hostile
    started = time.monotonic()
    due = [started + job["pause"] * i / count for i in range(count)] + [started] * len(hostile)
    latencies = []
    while time.monotonic() - started < job["seconds"]:
        i = min(range(len(everyone)), key=due.__getitem__)
        time.sleep(max(0.0, due[i] - time.monotonic()))
        everyone[i].step(job["timeout"])
        done = time.monotonic()
        if i < count:
            latencies.append(done - due[i])
            due[i] = done + job["pause"]
        else:
            due[i] = done
    return {"latencies": latencies}


def idle(job, classes, worker):
    sessions = [Session(classes, job["episodes"], i) for i in range(job["sessions"])]
    # VmRSS, not ru_maxrss: after exec, ru_maxrss still counts the parent's pages this process was forked with.
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"sessions": len(sessions), "rss_mb": rss_kb / 1024}


def worker_main(job, worker, output):
    try:
        classes = load_modules(job["envs"])
        mode = {"saturate": saturate, "paced": paced, "idle": idle}[job["mode"]]
        output.put(mode(job, classes, worker))
    except BaseException:
        output.put({"error": traceback.format_exc()})


def main():
    job = json.load(sys.stdin)
    multiprocessing.set_start_method("fork")
    if job["mode"] == "idle":
        print(json.dumps(idle(job, load_modules(job["envs"]), 0)))
        return
    output = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=worker_main, args=(job, w, output)) for w in range(job["workers"])]
    for worker in workers:
        worker.start()
    results = [output.get() for _ in workers]
    for worker in workers:
        worker.join()
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        sys.exit("a baseline worker failed:\n" + failed[0])
    if job["mode"] == "saturate":
        seconds = max(r["seconds"] for r in results)
        summary = {key: sum(r[key] for r in results) for key in ("steps", "episodes", "rewarded")}
        print(json.dumps(dict(summary, seconds=seconds)))
    else:
        print(json.dumps({"latencies": sorted(l for r in results for l in r["latencies"])}))


if __name__ == "__main__":
    main()
