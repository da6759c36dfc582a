import gymnasium
import ast
import json
import re


class ParityCountEnv(gymnasium.Env):
    """Count the even numbers in a hidden list, probing one position at a time."""

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.IS_EVEN = 1
        self.DONE = 2

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "IsEven": self.IS_EVEN,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "ParityCountEnv@"
        if not env_str.startswith(prefix):
            return None
        return ParityCountEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.values = [int(v) for v in options.get("values", [0])]
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
        return sum(1 for v in self.values if v % 2 == 0)

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
            elif action_id == self.IS_EVEN:
                msg = self.IsEven(params["index"])
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
        Report how long the hidden list is.

        Args:
            None

        Returns:
            str: The number of entries in the list.

        Example Output:
            "The hidden list has 6 entries."
        """
        return f"The hidden list has {len(self.values)} entries."

    def IsEven(self, index: int):
        """
        Test whether the entry at a position is even.

        Args:
            index (int): Zero-based position.

        Returns:
            str: "true" if the entry is divisible by 2, otherwise "false".

        Example Output:
            "true"
        """
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.values):
            raise IndexError(f"index {index} is outside 0..{len(self.values) - 1}")
        return "true" if self.values[index] % 2 == 0 else "false"

    def Done(self, answer: int):
        """
        Submit how many entries are even. Ends the episode.

        Args:
            answer (int): The claimed count.

        Returns:
            str: Whether the answer was right, with the reward.

        Example Output:
            "Submitted 3; expected 3. Correct, reward=1"
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

        size = int(re.search(r"has (\d+) entries", call("Observe")).group(1))
        evens = 0
        for i in range(size):
            if call("IsEven", index=i) == "true":
                evens += 1
        return call("Done", answer=evens)


if __name__ == "__main__":
    # self-test 1
    env = ParityCountEnv.from_env_str('ParityCountEnv@{"values": [4, 7, 10, -3, 0]}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2
    env = ParityCountEnv.from_env_str('ParityCountEnv@{"values": [1, 3, 5]}')
    print(env.solve())
    print("step count:", env.step_count)
