import gymnasium
import ast
import json
import re


class MergeIntervalsEnv(gymnasium.Env):
    """Count how many separate intervals remain after joining every pair that overlaps or touches."""

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.SORT_INTERVALS = 1
        self.GET_INTERVAL = 2
        self.OVERLAPS = 3
        self.MERGE_TWO = 4
        self.ADD_TO_RESULT = 5
        self.COUNT_RESULT = 6
        self.DONE = 7

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "SortIntervals": self.SORT_INTERVALS,
            "GetInterval": self.GET_INTERVAL,
            "Overlaps": self.OVERLAPS,
            "MergeTwo": self.MERGE_TWO,
            "AddToResult": self.ADD_TO_RESULT,
            "CountResult": self.COUNT_RESULT,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "MergeIntervalsEnv@"
        if not env_str.startswith(prefix):
            return None
        return MergeIntervalsEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.intervals = [[int(a), int(b)] for a, b in options.get("intervals", [[0, 1]])]
        self.working = [list(iv) for iv in self.intervals]  # the agent's view, sortable
        self.is_sorted = False
        self.result = []
        self._reward = 0
        self._done = False
        self.step_count = 0
        return "Environment reset."

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def reward(self):
        return float(self._reward)

    def get_ref_answer(self):
        groups = 0
        reach = None
        for lo, hi in sorted(self.intervals):
            if reach is None or lo > reach:
                groups += 1
                reach = hi
            else:
                reach = max(reach, hi)
        return groups

    @staticmethod
    def _as_pair(value, label):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{label} must be a [start, end] pair")
        lo, hi = int(value[0]), int(value[1])
        if lo > hi:
            raise ValueError(f"{label} has start greater than end")
        return lo, hi

    def step(self, action: str):
        self.step_count += 1
        try:
            call = json.loads(action)
            name = call["name"]
            params = call.get("parameters", {}) or {}
            if name not in self.func_mapping:
                raise ValueError(f"unknown action '{name}'")
            action_id = self.func_mapping[name]
            if action_id == self.OBSERVE:
                msg = self.Observe()
            elif action_id == self.SORT_INTERVALS:
                msg = self.SortIntervals()
            elif action_id == self.GET_INTERVAL:
                msg = self.GetInterval(params["index"])
            elif action_id == self.OVERLAPS:
                msg = self.Overlaps(params["first"], params["second"])
            elif action_id == self.MERGE_TWO:
                msg = self.MergeTwo(params["first"], params["second"])
            elif action_id == self.ADD_TO_RESULT:
                msg = self.AddToResult(params["interval"])
            elif action_id == self.COUNT_RESULT:
                msg = self.CountResult()
            elif action_id == self.DONE:
                msg = self.Done(params["answer"])
            else:
                raise ValueError(f"action id {action_id} has no handler")
        except Exception as exc:
            msg = f"Error: {exc}"
        return True, msg

    # ----- tools -----

    def Observe(self):
        """
        Summarise the collection without listing it.

        Args:
            None

        Returns:
            str: How many intervals there are, whether they are sorted, and the size of your result list.

        Example Output:
            "Collection of 5 intervals (unsorted). Result list holds 0 interval(s)."
        """
        order = "sorted by start" if self.is_sorted else "unsorted"
        return (f"Collection of {len(self.working)} intervals ({order}). "
                f"Result list holds {len(self.result)} interval(s).")

    def SortIntervals(self):
        """
        Sort the collection by start point (ties by end point). Later GetInterval calls see the new order.

        Args:
            None

        Returns:
            str: Confirmation.

        Example Output:
            "Sorted 5 intervals by start."
        """
        self.working.sort()
        self.is_sorted = True
        return f"Sorted {len(self.working)} intervals by start."

    def GetInterval(self, index: int):
        """
        Read one interval of the collection in its current order.

        Args:
            index (int): Zero-based position.

        Returns:
            str: The interval as a JSON [start, end] pair (both ends included).

        Example Output:
            "[3, 7]"
        """
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.working):
            raise IndexError(f"index {index} is outside 0..{len(self.working) - 1}")
        return json.dumps(self.working[index])

    def Overlaps(self, first: list, second: list):
        """
        Check whether two closed intervals share at least one point (touching ends count).

        Args:
            first (list): A [start, end] pair.
            second (list): A [start, end] pair.

        Returns:
            str: "true" or "false".

        Example Output:
            "true"
        """
        a_lo, a_hi = self._as_pair(first, "first")
        b_lo, b_hi = self._as_pair(second, "second")
        return "true" if max(a_lo, b_lo) <= min(a_hi, b_hi) else "false"

    def MergeTwo(self, first: list, second: list):
        """
        Join two overlapping intervals into the smallest interval covering both.

        Args:
            first (list): A [start, end] pair.
            second (list): A [start, end] pair that overlaps or touches the first.

        Returns:
            str: The joined interval as a JSON [start, end] pair.

        Example Output:
            "[1, 9]"
        """
        a_lo, a_hi = self._as_pair(first, "first")
        b_lo, b_hi = self._as_pair(second, "second")
        if max(a_lo, b_lo) > min(a_hi, b_hi):
            raise ValueError("the two intervals do not overlap")
        return json.dumps([min(a_lo, b_lo), max(a_hi, b_hi)])

    def AddToResult(self, interval: list):
        """
        Append a finished interval to your result list.

        Args:
            interval (list): A [start, end] pair.

        Returns:
            str: The size of the result list afterwards.

        Example Output:
            "Result list holds 2 interval(s)."
        """
        lo, hi = self._as_pair(interval, "interval")
        self.result.append([lo, hi])
        return f"Result list holds {len(self.result)} interval(s)."

    def CountResult(self):
        """
        Report how many intervals your result list holds.

        Args:
            None

        Returns:
            str: The count as a decimal string.

        Example Output:
            "2"
        """
        return str(len(self.result))

    def Done(self, answer: int):
        """
        Submit the number of separate intervals left once all overlapping ones are joined.
        Ends the episode.

        Args:
            answer (int): The claimed count.

        Returns:
            str: Whether the answer was right, with the reward.

        Example Output:
            "Submitted 2; expected 2. Correct, reward=1"
        """
        ref = self.get_ref_answer()
        correct = isinstance(answer, int) and not isinstance(answer, bool) and answer == ref
        self._reward = 1 if correct else 0
        self._done = True
        verdict = "Correct" if correct else "Wrong"
        return f"Submitted {answer}; expected {ref}. {verdict}, reward={self._reward}"

    # ----- oracle -----

    def solve(self):
        def call(name, **parameters):
            return self.step(json.dumps({"name": name, "parameters": parameters}))[1]

        total = int(re.search(r"of (\d+) intervals", call("Observe")).group(1))
        call("SortIntervals")
        open_run = json.loads(call("GetInterval", index=0))
        for i in range(1, total):
            nxt = json.loads(call("GetInterval", index=i))
            if call("Overlaps", first=open_run, second=nxt) == "true":
                open_run = json.loads(call("MergeTwo", first=open_run, second=nxt))
            else:
                call("AddToResult", interval=open_run)
                open_run = nxt
        call("AddToResult", interval=open_run)
        return call("Done", answer=int(call("CountResult")))


if __name__ == "__main__":
    # self-test 1
    env = MergeIntervalsEnv.from_env_str('MergeIntervalsEnv@{"intervals": [[8, 10], [1, 3], [2, 6], [15, 18]]}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2: touching ends join
    env = MergeIntervalsEnv.from_env_str('MergeIntervalsEnv@{"intervals": [[4, 5], [1, 4], [6, 6]]}')
    print(env.solve())
    print("step count:", env.step_count)
