import gymnasium
import json

# The hostile neighbour of `codegym bench serve`: every `Spin` loops until the step's time limit
# stops it, as a policy that writes an endless loop into its tool call makes an environment do.


class SpinEnv(gymnasium.Env):
    def __init__(self, env_str: str = None):
        super().__init__()
        self.func_mapping = {"Spin": 0, "Done": 1}
        self._reward = 0
        self._done = False

    @staticmethod
    def from_env_str(env_str: str):
        return SpinEnv(env_str=env_str) if env_str.startswith("SpinEnv@") else None

    def reset(self, options: dict = {}):
        self._reward = 0
        self._done = False
        return "Spin until stopped."

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def reward(self):
        return float(self._reward)

    def get_ref_answer(self):
        return 0

    def step(self, action: str):
        call = json.loads(action)
        return True, getattr(self, call["name"])(**(call.get("parameters") or {}))

    def Spin(self):
        """Spins until the time limit stops it.

        Args:
            None
        Returns:
            str: Nothing: it never returns.
        Example Output:
            "never"
        """
        while True:
            pass

    def Done(self, answer: int):
        """Submits an answer.

        Args:
            answer (int): The answer.
        Returns:
            str: The verdict.
        Example Output:
            "correct"
        """
        self._done = True
        self._reward = 1 if answer == 0 else 0
        return "correct" if self._reward else "wrong"
