import gymnasium
import ast
import json


class BalancedBracketsEnv(gymnasium.Env):
    """Decide whether a hidden string of (), [] and {} brackets is properly nested."""

    OPENERS = "([{"
    CLOSERS = ")]}"

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.GET_CHAR = 1
        self.PUSH = 2
        self.POP = 3
        self.IS_MATCHING_PAIR = 4
        self.STACK_SIZE = 5
        self.DONE = 6

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "GetChar": self.GET_CHAR,
            "Push": self.PUSH,
            "Pop": self.POP,
            "IsMatchingPair": self.IS_MATCHING_PAIR,
            "StackSize": self.STACK_SIZE,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "BalancedBracketsEnv@"
        if not env_str.startswith(prefix):
            return None
        return BalancedBracketsEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.text = str(options.get("text", "()"))
        self.stack = []  # the agent's scratch stack, empty at the start
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
        pending = []
        for ch in self.text:
            if ch in self.OPENERS:
                pending.append(ch)
            else:
                if not pending:
                    return "NO"
                if self.OPENERS.index(pending.pop()) != self.CLOSERS.index(ch):
                    return "NO"
        return "YES" if not pending else "NO"

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
            elif action_id == self.GET_CHAR:
                msg = self.GetChar(params["index"])
            elif action_id == self.PUSH:
                msg = self.Push(params["char"])
            elif action_id == self.POP:
                msg = self.Pop()
            elif action_id == self.IS_MATCHING_PAIR:
                msg = self.IsMatchingPair(params["open_char"], params["close_char"])
            elif action_id == self.STACK_SIZE:
                msg = self.StackSize()
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
        Describe the hidden string without revealing its characters.

        Args:
            None

        Returns:
            str: The length of the hidden string and the size of your scratch stack.

        Example Output:
            "Hidden bracket string of length 6. Scratch stack holds 0 item(s)."
        """
        return (f"Hidden bracket string of length {len(self.text)}. "
                f"Scratch stack holds {len(self.stack)} item(s).")

    def GetChar(self, index: int):
        """
        Read one character of the hidden string.

        Args:
            index (int): Zero-based position, from 0 to length - 1.

        Returns:
            str: The bracket at that position, one of ( ) [ ] { }.

        Example Output:
            "["
        """
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an integer")
        if index < 0 or index >= len(self.text):
            raise IndexError(f"index {index} is outside 0..{len(self.text) - 1}")
        return self.text[index]

    def Push(self, char: str):
        """
        Put an opening bracket on top of the scratch stack.

        Args:
            char (str): One of ( [ {.

        Returns:
            str: Confirmation with the new stack size.

        Example Output:
            "Pushed '('; stack size is now 2."
        """
        if char not in self.OPENERS or len(char) != 1:
            raise ValueError(f"only opening brackets can be pushed, got {char!r}")
        self.stack.append(char)
        return f"Pushed '{char}'; stack size is now {len(self.stack)}."

    def Pop(self):
        """
        Remove and return the top of the scratch stack.

        Args:
            None

        Returns:
            str: The removed bracket, or EMPTY when the stack holds nothing.

        Example Output:
            "{"
        """
        if not self.stack:
            return "EMPTY"
        return self.stack.pop()

    def IsMatchingPair(self, open_char: str, close_char: str):
        """
        Check whether a closing bracket closes the given opening bracket.

        Args:
            open_char (str): An opening bracket.
            close_char (str): A closing bracket.

        Returns:
            str: "true" if the two form a pair like ( and ), otherwise "false".

        Example Output:
            "false"
        """
        if open_char in self.OPENERS and close_char in self.CLOSERS and len(open_char) == 1 and len(close_char) == 1:
            return "true" if self.OPENERS.index(open_char) == self.CLOSERS.index(close_char) else "false"
        return "false"

    def StackSize(self):
        """
        Report how many brackets the scratch stack holds.

        Args:
            None

        Returns:
            str: The stack size as a decimal string.

        Example Output:
            "0"
        """
        return str(len(self.stack))

    def Done(self, answer: str):
        """
        Submit the verdict on the hidden string. Ends the episode.

        Args:
            answer (str): "YES" if every bracket is closed in the right order, otherwise "NO".

        Returns:
            str: Whether the verdict was right, with the reward.

        Example Output:
            "Submitted NO; expected NO. Correct, reward=1"
        """
        ref = self.get_ref_answer()
        correct = isinstance(answer, str) and answer == ref
        self._reward = 1 if correct else 0
        self._done = True
        verdict = "Correct" if correct else "Wrong"
        return f"Submitted {answer}; expected {ref}. {verdict}, reward={self._reward}"

    # ----- oracle -----

    def solve(self):
        def call(name, **parameters):
            return self.step(json.dumps({"name": name, "parameters": parameters}))[1]

        observation = call("Observe")
        length = int(observation.split("length ")[1].split(".")[0])
        for i in range(length):
            ch = call("GetChar", index=i)
            if ch in "([{":
                call("Push", char=ch)
                continue
            top = call("Pop")
            if top == "EMPTY":
                return call("Done", answer="NO")
            if call("IsMatchingPair", open_char=top, close_char=ch) != "true":
                return call("Done", answer="NO")
        left_over = int(call("StackSize"))
        return call("Done", answer="YES" if left_over == 0 else "NO")


if __name__ == "__main__":
    # self-test 1: nested and balanced
    env = BalancedBracketsEnv.from_env_str('BalancedBracketsEnv@{"text": "{[()()]}"}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2: crossed pairs
    env = BalancedBracketsEnv.from_env_str('BalancedBracketsEnv@{"text": "([)]"}')
    print(env.solve())
    print("step count:", env.step_count)
