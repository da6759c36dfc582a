import gymnasium
import ast
import json


class MaxSubarraySumEnv(gymnasium.Env):
    """Find the largest sum of a non-empty contiguous run of a hidden integer array."""

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.GET_LENGTH = 1
        self.GET_ELEMENT = 2
        self.EXTEND_OR_RESTART = 3
        self.UPDATE_BEST = 4
        self.DONE = 5

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "GetLength": self.GET_LENGTH,
            "GetElement": self.GET_ELEMENT,
            "ExtendOrRestart": self.EXTEND_OR_RESTART,
            "UpdateBest": self.UPDATE_BEST,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "MaxSubarraySumEnv@"
        if not env_str.startswith(prefix):
            return None
        return MaxSubarraySumEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.nums = list(options.get("nums", [1]))
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
        # Kadane's scan over the hidden array.
        best = self.nums[0]
        running = self.nums[0]
        for value in self.nums[1:]:
            running = max(value, running + value)
            best = max(best, running)
        return best

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
            elif action_id == self.GET_LENGTH:
                msg = self.GetLength()
            elif action_id == self.GET_ELEMENT:
                msg = self.GetElement(params["index"])
            elif action_id == self.EXTEND_OR_RESTART:
                msg = self.ExtendOrRestart(params["current"], params["value"])
            elif action_id == self.UPDATE_BEST:
                msg = self.UpdateBest(params["best"], params["current"])
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
        Describe what is visible about the task right now.

        Args:
            None

        Returns:
            str: A short note on the size of the hidden array and how to read it.

        Example Output:
            "A hidden array of 4 integers; read values with GetElement."
        """
        return f"A hidden array of {len(self.nums)} integers; read values with GetElement."

    def GetLength(self):
        """
        Report how many integers the hidden array holds.

        Args:
            None

        Returns:
            str: The number of elements, as a decimal string.

        Example Output:
            "4"
        """
        return str(len(self.nums))

    def GetElement(self, index: int):
        """
        Read a single value of the hidden array.

        Args:
            index (int): Zero-based position, from 0 to length - 1.

        Returns:
            str: The integer stored at that position.

        Example Output:
            "-2"
        """
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.nums):
            raise IndexError(f"index {index} is outside 0..{len(self.nums) - 1}")
        return str(self.nums[index])

    def ExtendOrRestart(self, current: int, value: int):
        """
        Decide whether a run ending at the previous position should be extended by value,
        or whether a new run should start at value; returns the better of the two sums.

        Args:
            current (int): Best sum of a run that ends just before this position.
            value (int): The element at this position.

        Returns:
            str: max(value, current + value), the best sum of a run ending at this position.

        Example Output:
            "5"
        """
        return str(max(int(value), int(current) + int(value)))

    def UpdateBest(self, best: int, current: int):
        """
        Keep the larger of the best sum seen so far and the sum of the current run.

        Args:
            best (int): Largest run sum found so far.
            current (int): Sum of the run ending at the current position.

        Returns:
            str: max(best, current).

        Example Output:
            "7"
        """
        return str(max(int(best), int(current)))

    def Done(self, answer: int):
        """
        Submit the final answer: the largest sum of a non-empty contiguous run. Ends the episode.

        Args:
            answer (int): The claimed largest run sum.

        Returns:
            str: Whether the answer was right, with the reward.

        Example Output:
            "Submitted 7; expected 7. Correct, reward=1"
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

        length = int(call("GetLength"))
        current = best = None
        for i in range(length):
            value = int(call("GetElement", index=i))
            if i == 0:
                current = best = value
                continue
            current = int(call("ExtendOrRestart", current=current, value=value))
            best = int(call("UpdateBest", best=best, current=current))
        return call("Done", answer=best)


if __name__ == "__main__":
    # self-test 1
    env = MaxSubarraySumEnv.from_env_str('MaxSubarraySumEnv@{"nums": [3, -7, 4, -1, 5, -9, 2]}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2: every value negative
    env = MaxSubarraySumEnv.from_env_str('MaxSubarraySumEnv@{"nums": [-6, -2, -8, -3]}')
    print(env.solve())
    print("step count:", env.step_count)
