import gymnasium
import ast
import json
import re


class CoinChangeWaysEnv(gymnasium.Env):
    """Count the distinct multisets of coins (unlimited supply of each kind) summing to a target amount."""

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.GET_COIN = 1
        self.INIT_TABLE = 2
        self.READ_CELL = 3
        self.ADD_TO_CELL = 4
        self.DONE = 5

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "GetCoin": self.GET_COIN,
            "InitTable": self.INIT_TABLE,
            "ReadCell": self.READ_CELL,
            "AddToCell": self.ADD_TO_CELL,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "CoinChangeWaysEnv@"
        if not env_str.startswith(prefix):
            return None
        return CoinChangeWaysEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.coins = [int(c) for c in options.get("coins", [1])]
        self.amount = int(options.get("amount", 1))
        self.table = None  # the agent's DP table, created by InitTable
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
        ways = [1] + [0] * self.amount
        for coin in self.coins:
            for total in range(coin, self.amount + 1):
                ways[total] += ways[total - coin]
        return ways[self.amount]

    def _check_index(self, index):
        if self.table is None:
            raise RuntimeError("the table does not exist yet; call InitTable first")
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.table):
            raise IndexError(f"index {index} is outside 0..{len(self.table) - 1}")

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
            elif action_id == self.GET_COIN:
                msg = self.GetCoin(params["index"])
            elif action_id == self.INIT_TABLE:
                msg = self.InitTable()
            elif action_id == self.READ_CELL:
                msg = self.ReadCell(params["index"])
            elif action_id == self.ADD_TO_CELL:
                msg = self.AddToCell(params["index"], params["value"])
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
        Show the number of coin kinds, the target amount and whether the table exists.

        Args:
            None

        Returns:
            str: A one-line summary.

        Example Output:
            "3 coin kinds, target amount 12, table not created."
        """
        state = "not created" if self.table is None else f"has {len(self.table)} cells"
        return f"{len(self.coins)} coin kinds, target amount {self.amount}, table {state}."

    def GetCoin(self, index: int):
        """
        Read the value of one coin kind.

        Args:
            index (int): Zero-based coin index.

        Returns:
            str: The coin's value.

        Example Output:
            "5"
        """
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.coins):
            raise IndexError(f"index {index} is outside 0..{len(self.coins) - 1}")
        return str(self.coins[index])

    def InitTable(self):
        """
        Create a table with one cell per amount 0..target; cell 0 starts at 1 and every other cell at 0.
        Calling it again wipes the table.

        Args:
            None

        Returns:
            str: Confirmation with the number of cells.

        Example Output:
            "Table created with 13 cells."
        """
        self.table = [1] + [0] * self.amount
        return f"Table created with {len(self.table)} cells."

    def ReadCell(self, index: int):
        """
        Read one cell of the table.

        Args:
            index (int): The amount whose cell to read.

        Returns:
            str: The value stored in the cell.

        Example Output:
            "4"
        """
        self._check_index(index)
        return str(self.table[index])

    def AddToCell(self, index: int, value: int):
        """
        Add a number to one cell of the table.

        Args:
            index (int): The amount whose cell to change.
            value (int): The number to add.

        Returns:
            str: The cell's new value.

        Example Output:
            "cell[7] = 6"
        """
        self._check_index(index)
        self.table[index] += int(value)
        return f"cell[{index}] = {self.table[index]}"

    def Done(self, answer: int):
        """
        Submit the number of ways to pay the target amount. Ends the episode.

        Args:
            answer (int): The claimed number of ways.

        Returns:
            str: Whether the answer was right, with the reward.

        Example Output:
            "Submitted 4; expected 4. Correct, reward=1"
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

        summary = call("Observe")
        kinds = int(re.search(r"(\d+) coin kinds", summary).group(1))
        target = int(re.search(r"target amount (\d+)", summary).group(1))
        call("InitTable")
        for k in range(kinds):
            coin = int(call("GetCoin", index=k))
            for total in range(coin, target + 1):
                below = int(call("ReadCell", index=total - coin))
                if below:
                    call("AddToCell", index=total, value=below)
        return call("Done", answer=int(call("ReadCell", index=target)))


if __name__ == "__main__":
    # self-test 1
    env = CoinChangeWaysEnv.from_env_str('CoinChangeWaysEnv@{"coins": [1, 2, 5], "amount": 7}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2: no way to pay
    env = CoinChangeWaysEnv.from_env_str('CoinChangeWaysEnv@{"coins": [4, 6], "amount": 9}')
    print(env.solve())
    print("step count:", env.step_count)
