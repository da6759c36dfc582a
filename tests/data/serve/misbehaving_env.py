import gymnasium
import ast
import json

# An environment written for the `codegym serve` tests: a sound CodeGym environment (sum the
# hidden values by accumulating them, then submit the total) whose extra tools misbehave when
# called with n == 13: Spin loops forever, Grow allocates without bound, Shout floods stdout,
# Dive recurses without end (outside step's error handling, so the call itself fails),
# Echo returns an observation of `size` characters, and Hoard keeps `size` more characters in
# the state.

TRIGGER = 13


class MisbehavingEnv(gymnasium.Env):
    def __init__(self, env_str: str = None):
        super().__init__()
        self.func_mapping = {
            "Observe": 0, "Get": 1, "Accumulate": 2, "Spin": 3, "Grow": 4, "Shout": 5, "Dive": 6, "Echo": 7, "Hoard": 8,
            "Done": 9,
        }
        if env_str is not None:
            self.reset(ast.literal_eval(env_str.split("@")[1]))

    @staticmethod
    def from_env_str(env_str: str):
        return MisbehavingEnv(env_str=env_str) if env_str.startswith("MisbehavingEnv@") else None

    def reset(self, options: dict = {}):
        self.values = list(options.get("values", []))
        self.total = 0
        self.hoard = ""
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
        return sum(self.values)

    def step(self, action: str):
        self.step_count += 1
        call = json.loads(action)
        name, params = call["name"], call.get("parameters", {}) or {}
        if name == "Dive":
            return True, self.Dive(params["n"])
        try:
            method = getattr(self, name)
            return True, method(**params)
        except Exception as error:
            return True, "Error: %s" % error

    def Observe(self):
        """Says how many values are hidden.

        Args:
            None
        Returns:
            str: The count.
        Example Output:
            "3 values"
        """
        return "%d values; total so far %d" % (len(self.values), self.total)

    def Get(self, index: int):
        """Reads one hidden value.

        Args:
            index (int): Its position.
        Returns:
            str: The value.
        Example Output:
            "4"
        """
        return str(self.values[index])

    def Accumulate(self, value: int):
        """Adds a value to the running total.

        Args:
            value (int): What to add.
        Returns:
            str: The new total.
        Example Output:
            "7"
        """
        self.total += value
        return str(self.total)

    def Spin(self, n: int):
        """Spins n times.

        Args:
            n (int): How often.
        Returns:
            str: Done spinning.
        Example Output:
            "spun"
        """
        while n == TRIGGER:
            pass
        return "spun"

    def Grow(self, n: int):
        """Grows a list.

        Args:
            n (int): How much.
        Returns:
            str: Its size.
        Example Output:
            "3"
        """
        grown = []
        while n == TRIGGER:
            grown.append(bytearray(16 << 20))
        return str(len(grown))

    def Shout(self, n: int):
        """Shouts n times.

        Args:
            n (int): How often.
        Returns:
            str: Done.
        Example Output:
            "shouted"
        """
        while n == TRIGGER:
            print("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        return "shouted"

    def Dive(self, n: int):
        """Dives n levels.

        Args:
            n (int): How deep.
        Returns:
            str: The depth.
        Example Output:
            "3"
        """
        if n != TRIGGER:
            return str(n)

        def down(depth):
            return down(depth + 1) + 1

        return str(down(0))

    def Echo(self, size: int):
        """Echoes size characters.

        Args:
            size (int): How many.
        Returns:
            str: The characters.
        Example Output:
            "yyy"
        """
        return "y" * size

    def Hoard(self, size: int):
        """Keeps size more characters.

        Args:
            size (int): How many.
        Returns:
            str: How many are kept.
        Example Output:
            "12"
        """
        self.hoard += "h" * size
        return str(len(self.hoard))

    def Done(self, answer):
        """Submits the total.

        Args:
            answer (int): The sum of the values.
        Returns:
            str: Whether it is right, with the reward.
        Example Output:
            "result: correct, reward=1"
        """
        self._done = True
        self._reward = 1 if answer == self.get_ref_answer() else 0
        return "Your answer: %s, result: %s, reward=%d" % (answer, "correct" if self._reward else "wrong", self._reward)
