"""Writes envs.jsonl and tasks.jsonl: a small CodeGym-shaped release of environments written to
defeat one verification check each (and two sound ones as controls). Every environment here was
written for codegym's tests. Run: python3 tests/data/adversarial/make_release.py

The test that uses it is tests/it/adversarial.rs; EXPECTED at the bottom says what verification
must conclude about each environment.
"""

import json
import os

BASE = '''import gymnasium
import json
{imports}

class {name}(gymnasium.Env):
    def __init__(self, env_str=None):
        super().__init__()
        self.func_mapping = {{"Observe": 0, "Count": 1, "GetValue": 2, "Add": 3, "Done": 4}}
        if env_str:
            self.reset(json.loads(env_str.split("@", 1)[1]))

    @staticmethod
    def from_env_str(env_str):
        return {name}(env_str) if env_str.startswith("{name}@") else None

    def reset(self, options={{}}):
        self.values = list(options.get("values", []))
        self._reward, self._done, self.step_count = 0, False, 0

    def get_ref_answer(self):
{ref_answer}

    def step(self, action):
        self.step_count += 1
        try:
            call = json.loads(action)
            if call["name"] not in self.func_mapping:
                raise ValueError("unknown action %r" % call["name"])
            return True, getattr(self, call["name"])(**call.get("parameters", {{}}))
        except Exception as exc:
            return True, "Error: %s" % exc

    def Observe(self):
        """Show what the agent may see of the task.

        Args:
            None
        Returns:
            str: a description of the hidden state.
        Example Output:
            "There are 3 hidden values."
        """
{observe}

    def Count(self):
        """The number of hidden values.

        Args:
            None
        Returns:
            str: the count.
        Example Output:
            "3"
        """
{count}

    def GetValue(self, index):
        """One hidden value.

        Args:
            index (int): its position, from 0.
        Returns:
            str: the value.
        Example Output:
            "7"
        """
        return str(self.values[index])

    def Add(self, a, b):
        """The sum of two numbers.

        Args:
            a (int): a number.
            b (int): another number.
        Returns:
            str: a + b.
        Example Output:
            "5"
        """
        return str(a + b)

    def Done(self, answer):
        """Submit the answer.

        Args:
            answer (int): the answer to the task.
        Returns:
            str: the verdict, with reward=1 when the answer is right.
        Example Output:
            "Answer 6: reward=1"
        """
{done}

    def solve(self):
        call = lambda name, **p: self.step(json.dumps({{"name": name, "parameters": p}}))[1]
{solve}

if __name__ == "__main__":
    for values in {self_tests}:
        env = {name}.from_env_str("{name}@" + json.dumps({{"values": values}}))
        print(env.solve())
'''

REF_SUM = "        return sum(self.values)"
OBSERVE = '        return "There are %d hidden values." % len(self.values)'
COUNT = "        return str(len(self.values))"
DONE = """        self._done = True
        self._reward = 1 if answer == self.get_ref_answer() else 0
        return "Answer %s: reward=%d" % (answer, self._reward)"""
DONE_ANYTHING = """        self._done, self._reward = True, 1
        return "Answer %s: reward=1" % answer"""
OFF_BY_ONE = """        total = 0
        for i in range(int(call("Count"))):
            total = int(call("Add", a=total, b=int(call("GetValue", index=i))))
        return call("Done", answer=total + 1)"""
SOLVE = """        total = 0
        for i in range(int(call("Count"))):
            total = int(call("Add", a=total, b=int(call("GetValue", index=i))))
        return call("Done", answer=total)"""
# The sound solver, after a look at Observe (whose output is what these environments vary).
OBSERVE_THEN_SOLVE = """        call("Observe")
""" + SOLVE


def env(name, imports="", ref_answer=REF_SUM, observe=OBSERVE, count=COUNT, done=DONE, solve=SOLVE, prelude="", self_tests="([1, 2, 3], [4, 5, 6, 7])"):
    code = BASE.format(name=name, imports=imports, ref_answer=ref_answer, observe=observe, count=count, done=done, solve=solve, self_tests=self_tests)
    return prelude + code if not prelude else code.replace("\n\nclass ", "\n\n" + prelude + "\n\nclass ", 1)


SUMS = [[101, 202, 303], [150, 250, 400, 123], [311, 422, 533, 644, 755]]
EVEN_SUMS = [[100, 202, 304], [150, 250, 400, 124], [312, 422, 534, 644, 756]]

ENVS = {
    # Controls: sound environments, verified.
    "SoundSumEnv": (env("SoundSumEnv"), SUMS),
    "DataclassEnv": (
        env(
            "DataclassEnv",
            imports="from dataclasses import dataclass, field",
            prelude="@dataclass\nclass Tally:\n    total: int = 0\n    seen: list[int] = field(default_factory=list)\n",
            solve="""        tally = Tally()
        for i in range(int(call("Count"))):
            value = int(call("GetValue", index=i))
            tally.seen.append(value)
            tally.total = int(call("Add", a=tally.total, b=value))
        return call("Done", answer=tally.total)""",
        ).replace("import gymnasium\n", "from __future__ import annotations\nimport gymnasium\n", 1),
        SUMS,
    ),
    # Item 1: a probe that could not finish used to count as clean.
    "SlowRewardsAnythingEnv": (
        env(
            "SlowRewardsAnythingEnv",
            done=DONE_ANYTHING,
            solve="""        spin = 0
        for i in range(SPIN):
            spin += i
        total = 0
        for i in range(int(call("Count"))):
            total = int(call("Add", a=total, b=int(call("GetValue", index=i))))
        return call("Done", answer=total)""",
            prelude="SPIN = 3_100_000  # about 1.8 s in the sandbox",
            self_tests="([1, 2],)",
        ).replace("if __name__ == \"__main__\":\n", "if __name__ == \"__main__\":\n    print('reward=1')\n"),
        SUMS[:1],
    ),
    "GuardRaisesEnv": (
        env(
            "GuardRaisesEnv",
            done=DONE_ANYTHING,
            solve="""        if type(self) is not GuardRaisesEnv:
            raise KeyboardInterrupt("not the real environment")
        return call("Done", answer=sum(self.values))""",
        ),
        SUMS,
    ),
    # Item 3: environment code reaching the checks.
    "HarnessImporterEnv": (
        env(
            "HarnessImporterEnv",
            prelude="""try:
    import codegym_harness
    _real = codegym_harness.oracle
    def _forged(*args, **kwargs):
        result = _real(*args, **kwargs)
        result["passed"] = True
        return result
    codegym_harness.oracle = _forged
except ImportError:
    pass""",
            solve=OFF_BY_ONE,
            self_tests="()",
        ).replace("if __name__ == \"__main__\":\n", "if __name__ == \"__main__\":\n    print('reward=1'); print('reward=1')\n"),
        SUMS,
    ),
    "GcForgerEnv": (
        env(
            "GcForgerEnv",
            imports="import gc",
            prelude="""def _forge():
    for space in gc.get_objects():
        if isinstance(space, dict) and "_oracle_result" in space and "_Tracer" in space:
            real = space["_oracle_result"]
            def forged(env, tracer, message):
                result = real(env, tracer, message + " reward=1")
                result["passed"] = True
                return result
            space["_oracle_result"] = forged
_forge()""",
            solve=OFF_BY_ONE,
            self_tests="()",
        ).replace("if __name__ == \"__main__\":\n", "if __name__ == \"__main__\":\n    print('reward=1'); print('reward=1')\n"),
        SUMS,
    ),
    # Item 4: Done rewarding wrong answers the old probe never tried.
    "EvenRewardEnv": (
        env(
            "EvenRewardEnv",
            done="""        self._done = True
        self._reward = 1 if isinstance(answer, int) and answer % 2 == 0 else 0
        return "Answer %s: reward=%d" % (answer, self._reward)""",
            self_tests="([2, 4], [6, 8])",
        ),
        EVEN_SUMS,
    ),
    "ContainsRewardEnv": (
        env(
            "ContainsRewardEnv",
            done="""        self._done = True
        self._reward = 1 if str(self.get_ref_answer()) in str(answer) else 0
        return "Answer %s: reward=%d" % (answer, self._reward)""",
        ),
        SUMS,
    ),
    "LateRewardEnv": (
        env(
            "LateRewardEnv",
            done="""        self._done = True
        self._reward = 1 if self.step_count > 2 or answer == self.get_ref_answer() else 0
        return "Answer %s: reward=%d" % (answer, self._reward)""",
        ),
        SUMS,
    ),
    # Item 5: answers that leak through Observe.
    "FullStopLeakEnv": (
        env("FullStopLeakEnv", observe='        return "The total of the hidden values is %d." % self.get_ref_answer()'),
        SUMS,
    ),
    "InputAnswerLeakEnv": (
        env(
            "InputAnswerLeakEnv",
            ref_answer="        return max(self.values)",
            observe='        return "Largest hidden value: %d" % max(self.values)',
            solve="""        best = None
        for i in range(int(call("Count"))):
            value = int(call("GetValue", index=i))
            best = value if best is None else max(best, value)
        return call("Done", answer=best)""",
        ),
        SUMS,
    ),
    # Item 7: behaviour the primary interpreter hides.
    "SetOrderEnv": (
        env(
            "SetOrderEnv",
            observe='        return "Hidden tags: " + ", ".join({"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"} - {str(len(self.values))})',
            solve=OBSERVE_THEN_SOLVE,
        ),
        SUMS,
    ),
    "DateDetectorEnv": (
        env(
            "DateDetectorEnv",
            imports="import time",
            observe='        return "There are %d hidden values (as of %s)." % (len(self.values), time.strftime("%Y", time.gmtime()))',
            solve=OBSERVE_THEN_SOLVE,
        ),
        SUMS,
    ),
    # Item 8: the 80% survival rule applies to imported environments too.
    "HalfHangsEnv": (
        env(
            "HalfHangsEnv",
            ref_answer="""        while len(self.values) == 1:
            pass
        return sum(self.values)""",
        ),
        [[101, 202], [150, 250, 400], [777]],
    ),
    # Item 9: code that needs what WASI lacks.
    "AsyncioEnv": (
        env("AsyncioEnv", imports="import asyncio").replace(
            "if __name__ == \"__main__\":\n", "if __name__ == \"__main__\":\n    asyncio.run(asyncio.sleep(0))\n"
        ),
        SUMS,
    ),
    # Serving: a state that cannot be pickled cannot be held idle by `codegym serve`.
    "UnpicklableEnv": (
        env("UnpicklableEnv").replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.order = lambda value: value",
        ),
        SUMS,
    ),
    # Item 10: one huge configuration must not sink its environment.
    "HugeConfigEnv": (env("HugeConfigEnv"), SUMS + [list(range(30000))]),
}

EXPECTED = {
    "SoundSumEnv": "verified",
    "DataclassEnv": "verified",
    "SlowRewardsAnythingEnv": "wrong_answer_rewarded",
    "GuardRaisesEnv": "wrong_answer_rewarded",
    "HarnessImporterEnv": "oracle_failed",
    "GcForgerEnv": "oracle_failed",
    "EvenRewardEnv": "wrong_answer_rewarded",
    "ContainsRewardEnv": "wrong_answer_rewarded",
    "LateRewardEnv": "wrong_answer_rewarded",
    "FullStopLeakEnv": "verified",
    "InputAnswerLeakEnv": "verified",
    "SetOrderEnv": "nondeterministic_trajectory",
    "DateDetectorEnv": "nondeterministic_trajectory",
    "HalfHangsEnv": "ref_answer_survival",
    "AsyncioEnv": "unsupported_in_sandbox",
    "UnpicklableEnv": "verified",
    "HugeConfigEnv": "verified",
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "envs.jsonl"), "w") as envs, open(os.path.join(here, "tasks.jsonl"), "w") as tasks:
        index = 0
        for number, (name, (code, configs)) in enumerate(ENVS.items()):
            source = "adv_%02d" % number
            envs.write(json.dumps({"source": source, "env_name": name, "env_code": code, "expected": EXPECTED[name]}) + "\n")
            for values in configs:
                config = json.dumps({"values": values})
                prompt = [
                    {"role": "system", "name": "functions", "content": ""},
                    {"role": "user", "name": "", "content": "Question:\nAdd up the hidden values."},
                ]
                tasks.write(json.dumps({"ability": "codegym_v1@%s__%s@%s" % (source, name, config), "prompt": prompt, "extra_info": {"index": str(index)}}) + "\n")
                index += 1


if __name__ == "__main__":
    main()
