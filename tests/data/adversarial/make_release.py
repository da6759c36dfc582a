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
# The sound solver, with a look at Observe after each value (what drifts shows there).
SOLVE_OBSERVING_EACH = """        total = 0
        for i in range(int(call("Count"))):
            total = int(call("Add", a=total, b=int(call("GetValue", index=i))))
            call("Observe")
        return call("Done", answer=total)"""



def done_if(condition, between="", after=""):
    """A `Done` body: the episode ends, rewarded when `condition` holds (`between` and `after` are
    lines before and after the reward is set)."""
    return "        self._done = True\n" + between + "        self._reward = 1 if %s else 0\n" % condition + after + \
        '        return "Answer %s: reward=%d" % (answer, self._reward)'

def env(name, imports="", ref_answer=REF_SUM, observe=OBSERVE, count=COUNT, done=DONE, solve=SOLVE, prelude="", self_tests="([1, 2, 3], [4, 5, 6, 7])"):
    code = BASE.format(name=name, imports=imports, ref_answer=ref_answer, observe=observe, count=count, done=done, solve=solve, self_tests=self_tests)
    return prelude + code if not prelude else code.replace("\n\nclass ", "\n\n" + prelude + "\n\nclass ", 1)


def pays_also(name, condition, between, imports):
    """An environment whose Done pays the right answer, and any answer when `condition` holds
    (`between`: the lines that work it out)."""
    return env(name, imports=imports, done=done_if(condition + " or answer == self.get_ref_answer()", between=between))


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
            done=done_if('isinstance(answer, int) and answer % 2 == 0'),
            self_tests="([2, 4], [6, 8])",
        ),
        EVEN_SUMS,
    ),
    "ContainsRewardEnv": (
        env(
            "ContainsRewardEnv",
            done=done_if('str(self.get_ref_answer()) in str(answer)'),
        ),
        SUMS,
    ),
    "LateRewardEnv": (
        env(
            "LateRewardEnv",
            done=done_if('self.step_count > 2 or answer == self.get_ref_answer()'),
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
    # Verification as an adversarial agent: one environment per class of defect the battery must
    # catch, played through the episode path `codegym serve` uses.
    # A. The reward is read in more than one place.
    "ServedRewardStuckEnv": (
        env("ServedRewardStuckEnv").replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.reward = 0.0",
        ),
        SUMS,
    ),
    "ServedRewardPaysEnv": (
        env(
            "ServedRewardPaysEnv",
            done=done_if('answer == self.get_ref_answer()', after='        self.reward = 1.0\n'),
        ),
        SUMS,
    ),
    # B. Wrong answers of another type or shape.
    "NanFloatEnv": (
        env(
            "NanFloatEnv",
            ref_answer="        return sum(self.values) / 2",
            done="""        self._done = True
        value = float(answer)
        self._reward = 0 if value < self.get_ref_answer() or value > self.get_ref_answer() else 1
        return "Answer %s: reward=%d" % (answer, self._reward)""",
            solve=SOLVE.replace("answer=total)", "answer=total / 2)"),
        ),
        SUMS,
    ),
    "ListContainsEnv": (
        env(
            "ListContainsEnv",
            done=done_if('self.get_ref_answer() in given', between='        given = answer if isinstance(answer, list) else [answer]\n'),
        ),
        SUMS,
    ),
    "DictDefaultEnv": (
        env(
            "DictDefaultEnv",
            done=done_if('answer == self.get_ref_answer()', between='        if isinstance(answer, dict):\n            answer = answer.get("total", self.get_ref_answer())\n'),
        ),
        SUMS,
    ),
    "OptionalOverrideEnv": (
        env(
            "OptionalOverrideEnv",
            done=done_if('answer == target', between='        target = self.get_ref_answer() if expected is None else expected\n'),
        )
        .replace("def Done(self, answer):", "def Done(self, answer, expected=None):")
        .replace(
            "            answer (int): the answer to the task.\n",
            "            answer (int): the answer to the task.\n            expected (int): optional, the value to compare with.\n",
        ),
        SUMS,
    ),
    "MembershipEnv": (
        env(
            "MembershipEnv",
            ref_answer="        return max(self.values)",
            done=done_if('answer in self.values'),
            solve="""        best = None
        for i in range(int(call("Count"))):
            value = int(call("GetValue", index=i))
            best = value if best is None else max(best, value)
        return call("Done", answer=best)""",
        ),
        SUMS,
    ),
    "SentinelEnv": (
        env(
            "SentinelEnv",
            done=done_if('empty or answer == self.get_ref_answer()', between='        empty = answer == -1 and len(self.values) >= 0\n'),
        ),
        SUMS,
    ),
    # C. Exploits that take more than one step.
    "RetryRevealsEnv": (
        env(
            "RetryRevealsEnv",
            done="""        if answer != self.get_ref_answer():
            return "Not quite: the total is %d. Try again." % self.get_ref_answer()
        self._done, self._reward = True, 1
        return "Answer %s: reward=1" % answer""",
        ),
        SUMS,
    ),
    "StepLimitPaysEnv": (
        env(
            "StepLimitPaysEnv",
            done=done_if('self.step_count > 200 or answer == self.get_ref_answer()'),
        ),
        SUMS,
    ),
    # A second answer right after a wrong one takes another path: null there means "the reference".
    # Anything else in between ends the episode, so a retry after Observe earns nothing.
    "RetryNullEnv": (
        env(
            "RetryNullEnv",
            observe="""        if getattr(self, "tries", 0):
            self._done = True
        return "There are %d hidden values." % len(self.values)""",
            done="""        self.tries = getattr(self, "tries", 0) + 1
        if self.tries == 1 and answer != self.get_ref_answer():
            return "Answer %s is not right; one more try right away (reward=0 so far)." % answer
        self._done = True
        self._reward = 1 if (self.get_ref_answer() if answer is None else answer) == self.get_ref_answer() else 0
        return "Answer %s: reward=%d" % (answer, self._reward)""",
        ),
        SUMS,
    ),
    # A mode its docs name ("practice") makes Done pay anything.
    "DocumentedModeEnv": (
        env(
            "DocumentedModeEnv",
            done=done_if('answer == self.get_ref_answer() or getattr(self, "mode", "exam") == "practice"'),
        )
        .replace('"Add": 3, "Done": 4}', '"Add": 3, "Done": 4, "SetMode": 5}')
        .replace(
            "    def Done(self, answer):",
            '''    def SetMode(self, mode):
        """Choose how answers are scored.

        Args:
            mode (str): "exam" (the default) or "practice".
        Returns:
            str: the mode in force.
        Example Output:
            "mode=exam"
        """
        if mode not in ("exam", "practice"):
            raise ValueError("no such mode")
        self.mode = mode
        return "mode=%s" % mode

    def Done(self, answer):''',
        ),
        SUMS,
    ),
    # A run of calls unlocks a shortcut: exactly three Count calls, then any answer is paid. The
    # oracle counts once; only a run of the same call finds it.
    "KnockCountEnv": (
        env(
            "KnockCountEnv",
            count="        self._knocks = getattr(self, '_knocks', 0) + 1\n        return str(len(self.values))",
            done=done_if("answer == self.get_ref_answer() or getattr(self, '_knocks', 0) == 3"),
        ),
        SUMS,
    ),
    # D. After a wrong answer (which it pays), a profile hook edits every list and dict the harness
    # returns: rewards become 0 and "reward=1" becomes "reward=0" before anything is encoded.
    "ProfileHookEnv": (
        env(
            "ProfileHookEnv",
            imports="import sys",
            prelude='''def _hide(value, depth=0):
    if depth < 6 and isinstance(value, dict):
        for key in list(value):
            if key == "reward" and value[key]:
                value[key] = type(value[key])(0)
            elif isinstance(value[key], str):
                value[key] = value[key].replace("reward=1", "reward=0")
            else:
                _hide(value[key], depth + 1)
    elif depth < 6 and isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                value[i] = item.replace("reward=1", "reward=0")
            else:
                _hide(item, depth + 1)


def _profile(frame, event, arg):
    if event == "return" and frame.f_globals.get("__name__") != __name__ and isinstance(arg, (dict, list)):
        _hide(arg)''',
            done="""        self._done, self._reward = True, 1
        if answer != self.get_ref_answer():
            sys.setprofile(_profile)
        return "Answer %s: reward=1" % answer""",
        ),
        SUMS,
    ),
    # D. Tampering with the checks from inside the guest: every frame would say reward=0.
    "EncoderPatchEnv": (
        env(
            "EncoderPatchEnv",
            done=DONE_ANYTHING,
            prelude="""_real_iterencode = json.JSONEncoder.iterencode
def _quiet(self, o, _one_shot=False):
    for chunk in _real_iterencode(self, o, _one_shot):
        yield chunk.replace("reward=1", "reward=0").replace(": 1.0", ": 0.0")
json.JSONEncoder.iterencode = _quiet""",
        ),
        SUMS,
    ),
    # E. Leaks where nothing looks.
    "ErrorLeakEnv": (
        env("ErrorLeakEnv").replace(
            "        return str(self.values[index])",
            """        if not 0 <= index < len(self.values):
            return "Error: index %d is out of range (checksum 0x%x)" % (index, sum(self.values))
        return str(self.values[index])""",
        ),
        SUMS,
    ),
    # E. Observe shows a resume token: the total, base64-encoded.
    "TokenLeakEnv": (
        env(
            "TokenLeakEnv",
            imports="import base64",
            observe='''        token = base64.urlsafe_b64encode(json.dumps({"t": sum(self.values)}).encode()).decode().rstrip("=")
        return "There are %d hidden values. Resume token: %s" % (len(self.values), token)''',
        ),
        SUMS,
    ),
    # E. An out-of-range index is answered with the total spelled in words.
    "WordsLeakEnv": (
        env(
            "WordsLeakEnv",
            prelude='''_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n):
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + _words(n % 100) if n % 100 else "")
    return _words(n // 1000) + " thousand" + (" " + _words(n % 1000) if n % 1000 else "")''',
        ).replace(
            "        return str(self.values[index])",
            """        if not 0 <= index < len(self.values):
            return "Error: no value there; the values add up to %s." % _words(sum(self.values))
        return str(self.values[index])""",
        ),
        SUMS,
    ),
    "VerboseFlagEnv": (
        env(
            "VerboseFlagEnv",
            observe="""        if verbose:
            return "There are %d hidden values, adding up to %d." % (len(self.values), sum(self.values))
        return "There are %d hidden values." % len(self.values)""",
        )
        .replace("def Observe(self):", "def Observe(self, verbose=False):")
        .replace(
            "            None\n        Returns:\n            str: a description of the hidden state.",
            "            verbose (bool): optional, more detail.\n        Returns:\n            str: a description of the hidden state.",
        ),
        SUMS,
    ),
    "CacheLeakEnv": (
        env(
            "CacheLeakEnv",
            observe="""        if self.step_count > 1:
            return "There are %d hidden values (cached result: {:,})".format(sum(self.values)) % len(self.values)
        return "There are %d hidden values." % len(self.values)""",
            solve=OBSERVE_THEN_SOLVE,
        ),
        [[12001, 13002, 11834], [15000, 25000, 40000, 12300], [31100, 42200, 53300, 64400, 75500]],
    ),
    "ClassLogEnv": (
        env(
            "ClassLogEnv",
            observe="""        seen = ", ".join(str(a) for a in ClassLogEnv.HISTORY[-3:])
        return "There are %d hidden values. Earlier answers: %s" % (len(self.values), seen or "none")""",
            done=done_if('answer == self.get_ref_answer()', after='        ClassLogEnv.HISTORY.append(self.get_ref_answer())\n'),
            solve=OBSERVE_THEN_SOLVE,
        ).replace("    def __init__(self, env_str=None):", "    HISTORY = []\n\n    def __init__(self, env_str=None):", 1),
        SUMS,
    ),
    # F. An oracle that needs a method that is not a tool.
    "UndocumentedOracleEnv": (
        env("UndocumentedOracleEnv", solve='        return call("Done", answer=int(call("Peek")))')
        .replace('            if call["name"] not in self.func_mapping:\n                raise ValueError("unknown action %r" % call["name"])\n', "")
        .replace("    def Done(self, answer):", "    def Peek(self):\n        return str(sum(self.values))\n\n    def Done(self, answer):"),
        SUMS,
    ),
    # F. Oracles that reach the environment without reading `self`: unsolvable with the tools.
    "GlobalPeekEnv": (
        env(
            "GlobalPeekEnv",
            prelude="_LIVE = []",
            solve="""        for _ in range(10):
            call("Observe")
        return call("Done", answer=sum(_LIVE[-1].values))""",
        ).replace("        self.values = list(options.get(\"values\", []))", "        self.values = list(options.get(\"values\", []))\n        _LIVE.append(self)"),
        SUMS,
    ),
    "GcPeekEnv": (
        env(
            "GcPeekEnv",
            imports="import gc",
            solve="""        for _ in range(10):
            call("Observe")
        live = [o for o in gc.get_objects() if type(o).__name__ == "GcPeekEnv"]
        return call("Done", answer=sum(live[0].values))""",
        ),
        SUMS,
    ),
    "ClosurePeekEnv": (
        env(
            "ClosurePeekEnv",
            solve="""        for _ in range(10):
            call("Observe")
        step = self.step
        cells = [c.cell_contents for c in (step.__closure__ or ())]
        env = next((getattr(c, "env") for c in cells if hasattr(c, "env")), self)
        return call("Done", answer=sum(env.values))""",
        ),
        SUMS,
    ),
    # G. A call count the environment reports about itself (curation must use its own).
    "SelfCountEnv": (
        env("SelfCountEnv").replace("        self.step_count += 1\n", "        self.step_count += 10\n"),
        SUMS,
    ),
    # H. Serving: state that changes after a pickle round trip, state too large to hold, a slow tool.
    # Restored after 3 to 5 calls since its last restore, the state drifts (Observe says so): a
    # replay that restores before every call, or never, does not see it.
    "SpacedDriftEnv": (
        env(
            "SpacedDriftEnv",
            observe='        return "There are %d hidden values%s." % (len(self.values), " (drifted)" if getattr(self, "drifted", False) else "")',
            solve=SOLVE_OBSERVING_EACH,
        ).replace(
            "    def get_ref_answer(self):",
            """    def __setstate__(self, state):
        self.__dict__.update(state)
        if 3 <= self.step_count - state.get("restored_at", 0) <= 5:
            self.drifted = True
        self.restored_at = self.step_count

    def get_ref_answer(self):""",
        ),
        SUMS,
    ),
    "ReplayDriftEnv": (
        env(
            "ReplayDriftEnv",
            observe='        return "There are %d hidden values; %d looked at." % (len(self.values), len(self.looked))',
            solve=SOLVE_OBSERVING_EACH,
        )
        .replace("        return str(self.values[index])", "        self.looked.add(index)\n        return str(self.values[index])")
        .replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.looked = set()",
        )
        .replace(
            "    def get_ref_answer(self):",
            "    def __getstate__(self):\n        return {k: v for k, v in self.__dict__.items() if k != 'looked'}\n\n    def __setstate__(self, state):\n        self.__dict__.update(state, looked=set())\n\n    def get_ref_answer(self):",
        ),
        SUMS,
    ),
    "BigStateEnv": (
        env("BigStateEnv").replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.scratch = list(range(200000))",
        ),
        SUMS,
    ),
    "SlowToolEnv": (
        env(
            "SlowToolEnv",
            prelude="SPIN = 5_000_000",
            count="""        spin = 0
        for i in range(SPIN):
            spin += i
        return str(len(self.values))""",
            solve="""        total = 0
        for i in range(99):
            value = call("GetValue", index=i)
            if value.startswith("Error"):
                break
            total = int(call("Add", a=total, b=int(value)))
        return call("Done", answer=total)""",
        ),
        SUMS,
    ),
    # H. Behaviour only a native interpreter or a moving clock shows.
    "SandboxDetectEnv": (pays_also("SandboxDetectEnv", "native", '        native = sys.platform != "wasi"\n', "import sys"), SUMS),
    "ClockRedrawEnv": (
        env("ClockRedrawEnv", imports="import time")
        .replace(
            "        return str(self.values[index])",
            "        if time.monotonic() - self.drawn_at > 1.0:\n            self.values, self.drawn_at = [v + 1 for v in self.values], time.monotonic()\n        return str(self.values[index])",
        )
        .replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.drawn_at = time.monotonic()",
        ),
        SUMS,
    ),
    # Sound environments the battery must keep: case-insensitive matching the task text documents,
    # and an environment that prints a lot on every call.
    "CaseInsensitiveEnv": (
        env(
            "CaseInsensitiveEnv",
            ref_answer='        return "total-%d-ok" % sum(self.values)',
            done=done_if('str(answer).strip().lower() == self.get_ref_answer()'),
            solve=SOLVE.replace("answer=total)", 'answer="total-%d-ok" % total)'),
        ),
        SUMS,
    ),
    # Sound: the answer is a word, and the task text says letter case does not matter (as
    # `casefold` compares it, so "MASS" is "Maß").
    "CasefoldWordEnv": (
        env(
            "CasefoldWordEnv",
            ref_answer='        return "Maß" if sum(self.values) % 2 else "Straße"',
            done=done_if('isinstance(answer, str) and answer.strip().casefold() == self.get_ref_answer().casefold()'),
            solve=SOLVE.replace("answer=total)", 'answer="Maß" if total % 2 else "Straße")'),
        ),
        SUMS,
    ),
    "LoudSoundEnv": (
        env("LoudSoundEnv").replace("        self.step_count += 1\n", "        self.step_count += 1\n        print('.' * 60000)\n"),
        SUMS,
    ),
    # H. The state grows with every Observe: a session that keeps looking outgrows what a server
    # holds idle, though the oracle's own calls stay small.
    "GrowingStateEnv": (
        env(
            "GrowingStateEnv",
            observe='        self.log = getattr(self, "log", []) + ["x" * 8000]\n        return "There are %d hidden values." % len(self.values)',
        ),
        SUMS,
    ),
    # B. Done evaluates a text answer as code: an agent sends the reference's own method.
    "EvalAnswerEnv": (
        env(
            "EvalAnswerEnv",
            done=done_if('answer == self.get_ref_answer()', between='        if isinstance(answer, str):\n            answer = eval(answer, {"self": self})\n'),
        ),
        SUMS,
    ),
    # B. Done matches the answer's text as a shell pattern against the reference: "*" matches all.
    "GlobAnswerEnv": (
        env("GlobAnswerEnv", imports="import fnmatch", done=done_if('fnmatch.fnmatch(str(self.get_ref_answer()), str(answer))')),
        SUMS,
    ),
    # A. The reward a trainer reads grows with every Observe, whatever the message says.
    "RewardDriftEnv": (
        env(
            "RewardDriftEnv",
            observe='        self._reward += 0.25\n        return "There are %d hidden values." % len(self.values)',
        ),
        SUMS,
    ),
    # H/D. Pays any answer when it is called the way `codegym serve` calls it (from its session
    # function), never under a checker's own frames.
    "ServedFrameEnv": (
        pays_also(
            "ServedFrameEnv",
            "served",
            '        served = any(sys._getframe(depth).f_code.co_name == "session_step" for depth in range(1, 6) if sys._getframe(depth - 1).f_back)\n',
            "import sys",
        ),
        SUMS,
    ),
    # H. Counts how often its state is pickled: a session that `codegym serve` pickles after every
    # call pays any answer once it has been pickled as often as it was called.
    "PickleCountEnv": (
        env(
            "PickleCountEnv",
            done=done_if('self.pickled >= self.step_count >= 2 or answer == self.get_ref_answer()'),
        )
        .replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        self.pickled = 0",
        )
        .replace(
            "    def get_ref_answer(self):",
            "    def __getstate__(self):\n        self.pickled += 1\n        return dict(self.__dict__)\n\n"
            "    def __deepcopy__(self, memo):\n        copy = object.__new__(type(self))\n        copy.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()})\n        return copy\n\n"
            "    def get_ref_answer(self):",
        ),
        [[101, 202], [150, 250], [311, 422]],
    ),
    # H. Keeps its answer key on the gymnasium base class: gone after an eviction, where a session
    # is restored in another interpreter, and then any answer pays.
    "BaseClassStashEnv": (
        env(
            "BaseClassStashEnv",
            done=done_if('answer == gymnasium.Env.__dict__.get("codegym_key", answer)'),
        ).replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        gymnasium.Env.codegym_key = sum(self.values)",
        ),
        SUMS,
    ),
    # H. Draws from module-level `random`, seeded once at reset: `codegym serve` runs every call as
    # a job of its own, whose `random` starts from another seed.
    "GlobalRandomEnv": (
        env(
            "GlobalRandomEnv",
            imports="import random",
            observe='        return "There are %d hidden values (ticket %d)." % (len(self.values), random.randrange(10**6))',
            solve=OBSERVE_THEN_SOLVE,
        ).replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n        random.seed(len(self.values))",
        ),
        SUMS,
    ),
    # F. The oracle sends an action with no name, which the environment answers with the total:
    # `codegym serve` refuses such an action, so no agent can make it.
    "NamelessActionEnv": (
        env("NamelessActionEnv", solve='        return call("Done", answer=int(self.step(json.dumps({"peek": True}))[1]))')
        .replace('            call = json.loads(action)\n', '            call = json.loads(action)\n            if "peek" in call:\n                return True, str(sum(self.values))\n'),
        SUMS,
    ),
    # H. A tool that is fast with the oracle's arguments and slow at the top of its documented range.
    "DocumentedTopEnv": (
        env("DocumentedTopEnv")
        .replace("            a (int): a number.", "            a (int): a number, from 0 to 40000000.")
        .replace("        return str(a + b)", "        for _ in range(min(a, 40000000) // 4):\n            pass\n        return str(a + b)"),
        [[1, 2, 3], [4, 5, 6, 7], [8, 9]],
    ),
    # H. Pays any answer in the first environment an interpreter builds (a mark left on `sys`
    # survives the module being executed again): where `codegym serve` plays every session, and
    # where no check's episode used to be.
    "FirstBuiltEnv": (
        env("FirstBuiltEnv", imports="import sys", done=done_if("self.first or answer == self.get_ref_answer()")).replace(
            "self._reward, self._done, self.step_count = 0, False, 0",
            "self._reward, self._done, self.step_count = 0, False, 0\n"
            "        self.first = not hasattr(sys, 'codegym_built')\n"
            "        sys.codegym_built = True",
        ),
        SUMS,
    ),
    # D/H. Pays any answer unless the checks' own code is on the stack (as it is under every check
    # that calls the environment from inside the sandbox): only episodes played as `codegym serve`
    # plays them, a job per call with nothing of the checks above the environment, show it.
    "CheckerStackEnv": (
        pays_also(
            "CheckerStackEnv",
            "unchecked",
            "        frame, unchecked = sys._getframe(), True\n"
            "        while frame is not None:\n"
            "            unchecked = unchecked and frame.f_code.co_filename != '<codegym:codegym_harness>'\n"
            "            frame = frame.f_back\n",
            "import sys",
        ),
        SUMS,
    ),
    # Class I: the task text accepts any position of the largest value, Done only the first. Every
    # check passes; only a solver written from the text alone (SOLVERS) disagrees, on ties.
    "ArgmaxTiesEnv": (
        env(
            "ArgmaxTiesEnv",
            ref_answer="        return self.values.index(max(self.values))",
            solve="""        best, where = None, 0
        for i in range(int(call("Count"))):
            value = int(call("GetValue", index=i))
            if best is None or value > best:
                best, where = value, i
        return call("Done", answer=where)""",
        ),
        [[4, 9, 2, 9, 6, 1, 3, 0, 5], [7, 7, 3, 5, 1, 0, 2, 4, 6], [1, 5, 3, 8, 2, 0, 4, 6, 7]],
    ),
}

# Solvers written from the task text and tool docs alone, given to `import-codegym --solvers`.
# The last two rows are refused: one names no environment, one holds no solve.
SUM_FROM_TEXT = '''def solve(self):
    import json
    call = lambda name, **p: self.step(json.dumps({"name": name, "parameters": p}))[1]
    values = [int(call("GetValue", index=i)) for i in range(int(call("Count")))]
    total = 0
    for value in values:
        total = int(call("Add", a=total, b=value))
    return call("Done", answer=total)
'''
SOLVERS = [
    ("DataclassEnv", SUM_FROM_TEXT),
    # Any position of the largest value is right by the text: this one answers the last.
    ("ArgmaxTiesEnv", '''def solve(self):
    import json
    call = lambda name, **p: self.step(json.dumps({"name": name, "parameters": p}))[1]
    values = [int(call("GetValue", index=i)) for i in range(int(call("Count")))]
    last = len(values) - 1 - values[::-1].index(max(values))
    return call("Done", answer=last)
'''),
    ("NoSuchEnv", SUM_FROM_TEXT),
    ("DataclassEnv", "print('no solver here')\n"),
]

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
    "FullStopLeakEnv": "answer_leaked",
    "InputAnswerLeakEnv": "verified",
    "SetOrderEnv": "nondeterministic_trajectory",
    "DateDetectorEnv": "nondeterministic_trajectory",
    "HalfHangsEnv": "ref_answer_survival",
    "AsyncioEnv": "unsupported_in_sandbox",
    "UnpicklableEnv": "not_servable",
    "HugeConfigEnv": "verified",
    "ServedRewardStuckEnv": "reward_inconsistent",
    "ServedRewardPaysEnv": "wrong_answer_rewarded",
    "NanFloatEnv": "reward_hackable",
    "ListContainsEnv": "reward_hackable",
    "DictDefaultEnv": "reward_hackable",
    "OptionalOverrideEnv": "reward_hackable",
    "MembershipEnv": "reward_hackable",
    "SentinelEnv": "reward_hackable",
    "RetryRevealsEnv": "reward_hackable",
    "StepLimitPaysEnv": "reward_hackable",
    "EncoderPatchEnv": "wrong_answer_rewarded",
    "ErrorLeakEnv": "answer_leaked",
    "VerboseFlagEnv": "answer_leaked",
    "CacheLeakEnv": "answer_leaked",
    # Its class-level log shows an earlier episode of the same configuration its answer.
    # Its log shows in the battery's own episodes after earlier ones (the leak comes first among
    # its findings; state_across_episodes is among its rejects too).
    "ClassLogEnv": "answer_leaked",
    "UndocumentedOracleEnv": "undocumented_tool",
    "GlobalPeekEnv": "oracle_failed",
    "GcPeekEnv": "oracle_failed",
    "ClosurePeekEnv": "oracle_failed",
    "SelfCountEnv": "verified",
    "ReplayDriftEnv": "not_servable",
    "BigStateEnv": "state_too_large",
    "SlowToolEnv": "slow_tool",
    "SandboxDetectEnv": "reward_hackable",
    "ClockRedrawEnv": "nondeterministic_trajectory",
    "CaseInsensitiveEnv": "verified",
    "CasefoldWordEnv": "verified",
    "KnockCountEnv": "reward_hackable",
    "RetryNullEnv": "reward_hackable",
    "DocumentedModeEnv": "reward_hackable",
    "ProfileHookEnv": "wrong_answer_rewarded",
    "TokenLeakEnv": "answer_leaked",
    "WordsLeakEnv": "answer_leaked",
    "SpacedDriftEnv": "not_servable",
    "GrowingStateEnv": "state_too_large",
    "LoudSoundEnv": "verified",
    "EvalAnswerEnv": "reward_hackable",
    "GlobAnswerEnv": "reward_hackable",
    "RewardDriftEnv": "reward_hackable",
    "ServedFrameEnv": "reward_hackable",
    "PickleCountEnv": "reward_hackable",
    "BaseClassStashEnv": "reward_hackable",
    "GlobalRandomEnv": "not_servable",
    "NamelessActionEnv": "undocumented_tool",
    "DocumentedTopEnv": "slow_tool",
    "FirstBuiltEnv": "reward_hackable",
    "CheckerStackEnv": "reward_hackable",
    "ArgmaxTiesEnv": "verified",
}

# The task text of environments whose text the checks read (the others add up hidden values).
TASK_TEXT = {
    "CaseInsensitiveEnv": "Add up the hidden values and answer total-SUM-ok. Matching is case-insensitive, and surrounding spaces are ignored.",
    "CasefoldWordEnv": "Add up the hidden values; answer Maß when the total is odd and Straße when it is even. Letter case does not matter, and surrounding spaces are ignored.",
    "ArgmaxTiesEnv": "Find the position (from 0) of the largest hidden value. When several values share the largest, the position of any of them is accepted.",
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
                    {"role": "user", "name": "", "content": "Question:\n" + TASK_TEXT.get(name, "Add up the hidden values.")},
                ]
                tasks.write(json.dumps({"ability": "codegym_v1@%s__%s@%s" % (source, name, config), "prompt": prompt, "extra_info": {"index": str(index)}}) + "\n")
                index += 1
    sources = {name: "adv_%02d" % number for number, name in enumerate(ENVS)}
    with open(os.path.join(here, "solvers.jsonl"), "w") as solvers:
        for name, solver in SOLVERS:
            solvers.write(json.dumps({"source": sources.get(name, "adv_99"), "env_name": name, "solver": solver}) + "\n")


if __name__ == "__main__":
    main()
