import gymnasium
import ast
import json
from collections import deque


class GridShortestPathEnv(gymnasium.Env):
    """Fewest moves between two open cells of a hidden 0/1 grid (1 = wall), or -1 if impossible."""

    def __init__(self, env_str: str = None):
        super().__init__()
        # action ids
        self.OBSERVE = 0
        self.GET_NEIGHBORS = 1
        self.IS_VISITED = 2
        self.MARK_VISITED = 3
        self.GET_DISTANCE = 4
        self.ENQUEUE = 5
        self.DEQUEUE = 6
        self.DONE = 7

        self.func_mapping = {
            "Observe": self.OBSERVE,
            "GetNeighbors": self.GET_NEIGHBORS,
            "IsVisited": self.IS_VISITED,
            "MarkVisited": self.MARK_VISITED,
            "GetDistance": self.GET_DISTANCE,
            "Enqueue": self.ENQUEUE,
            "Dequeue": self.DEQUEUE,
            "Done": self.DONE,
        }

        if env_str:
            options = ast.literal_eval(env_str.split("@")[1])
            self.reset(options)

    @staticmethod
    def from_env_str(env_str: str):
        prefix = "GridShortestPathEnv@"
        if not env_str.startswith(prefix):
            return None
        return GridShortestPathEnv(env_str=env_str)

    def reset(self, options: dict = {}):
        self.grid = [list(row) for row in options.get("grid", [[0, 0]])]
        self.rows = len(self.grid)
        self.cols = len(self.grid[0]) if self.rows else 0
        self.start = tuple(options.get("start", [0, 0]))
        self.target = tuple(options.get("target", [self.rows - 1, self.cols - 1]))
        # the agent's working state
        self.distances = {}
        self.queue = deque()
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

    def _open_neighbors(self, row, col):
        found = []
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + dr, col + dc
            if 0 <= r < self.rows and 0 <= c < self.cols and self.grid[r][c] == 0:
                found.append((r, c))
        return found

    def get_ref_answer(self):
        seen = {self.start: 0}
        frontier = deque([self.start])
        while frontier:
            cell = frontier.popleft()
            if cell == self.target:
                return seen[cell]
            for nxt in self._open_neighbors(*cell):
                if nxt not in seen:
                    seen[nxt] = seen[cell] + 1
                    frontier.append(nxt)
        return -1

    def _check_cell(self, row, col):
        for v in (row, col):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError("row and col must be integers")
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(f"cell ({row}, {col}) is outside the {self.rows}x{self.cols} grid")

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
            elif action_id == self.GET_NEIGHBORS:
                msg = self.GetNeighbors(params["row"], params["col"])
            elif action_id == self.IS_VISITED:
                msg = self.IsVisited(params["row"], params["col"])
            elif action_id == self.MARK_VISITED:
                msg = self.MarkVisited(params["row"], params["col"], params["distance"])
            elif action_id == self.GET_DISTANCE:
                msg = self.GetDistance(params["row"], params["col"])
            elif action_id == self.ENQUEUE:
                msg = self.Enqueue(params["row"], params["col"])
            elif action_id == self.DEQUEUE:
                msg = self.Dequeue()
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
        Show the grid size and the two endpoints, but not the walls.

        Args:
            None

        Returns:
            str: A JSON object with rows, cols, start and target.

        Example Output:
            {"rows": 3, "cols": 4, "start": [0, 0], "target": [2, 3]}
        """
        return json.dumps({"rows": self.rows, "cols": self.cols,
                           "start": list(self.start), "target": list(self.target)})

    def GetNeighbors(self, row: int, col: int):
        """
        List the open cells one move away (up, down, left, right) from a cell.

        Args:
            row (int): Row of the cell.
            col (int): Column of the cell.

        Returns:
            str: A JSON list of [row, col] pairs; walls and cells off the grid are left out.

        Example Output:
            "[[1, 0], [0, 1]]"
        """
        self._check_cell(row, col)
        return json.dumps([list(cell) for cell in self._open_neighbors(row, col)])

    def IsVisited(self, row: int, col: int):
        """
        Tell whether a cell has already been marked with MarkVisited.

        Args:
            row (int): Row of the cell.
            col (int): Column of the cell.

        Returns:
            str: "true" or "false".

        Example Output:
            "false"
        """
        self._check_cell(row, col)
        return "true" if (row, col) in self.distances else "false"

    def MarkVisited(self, row: int, col: int, distance: int):
        """
        Record a cell as reached, together with the number of moves used to reach it.

        Args:
            row (int): Row of the cell.
            col (int): Column of the cell.
            distance (int): Moves from the start to this cell.

        Returns:
            str: Confirmation of the mark.

        Example Output:
            "Cell (1, 2) marked at distance 3."
        """
        self._check_cell(row, col)
        if (row, col) in self.distances:
            raise ValueError(f"cell ({row}, {col}) is already marked")
        self.distances[(row, col)] = int(distance)
        return f"Cell ({row}, {col}) marked at distance {int(distance)}."

    def GetDistance(self, row: int, col: int):
        """
        Read the distance recorded for a marked cell.

        Args:
            row (int): Row of the cell.
            col (int): Column of the cell.

        Returns:
            str: The recorded distance, or "unmarked" if the cell was never marked.

        Example Output:
            "3"
        """
        self._check_cell(row, col)
        if (row, col) not in self.distances:
            return "unmarked"
        return str(self.distances[(row, col)])

    def Enqueue(self, row: int, col: int):
        """
        Append a cell to the back of the work queue.

        Args:
            row (int): Row of the cell.
            col (int): Column of the cell.

        Returns:
            str: The queue length after appending.

        Example Output:
            "Queue length: 2"
        """
        self._check_cell(row, col)
        self.queue.append((row, col))
        return f"Queue length: {len(self.queue)}"

    def Dequeue(self):
        """
        Take the cell at the front of the work queue.

        Args:
            None

        Returns:
            str: The cell as a JSON [row, col] pair, or "EMPTY" if the queue has nothing left.

        Example Output:
            "[0, 1]"
        """
        if not self.queue:
            return "EMPTY"
        row, col = self.queue.popleft()
        return json.dumps([row, col])

    def Done(self, answer: int):
        """
        Submit the fewest number of moves from start to target (-1 if the target cannot be reached).
        Ends the episode.

        Args:
            answer (int): The claimed number of moves.

        Returns:
            str: Whether the answer was right, with the reward.

        Example Output:
            "Submitted 5; expected 5. Correct, reward=1"
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

        layout = json.loads(call("Observe"))
        start = layout["start"]
        target = layout["target"]
        call("MarkVisited", row=start[0], col=start[1], distance=0)
        call("Enqueue", row=start[0], col=start[1])
        moves = 0
        while True:
            front = call("Dequeue")
            if front == "EMPTY":
                break
            row, col = json.loads(front)
            here = int(call("GetDistance", row=row, col=col))
            if [row, col] == target:
                moves = here
                break
            for r, c in json.loads(call("GetNeighbors", row=row, col=col)):
                if call("IsVisited", row=r, col=c) == "false":
                    call("MarkVisited", row=r, col=c, distance=here + 1)
                    call("Enqueue", row=r, col=c)
        return call("Done", answer=moves)


if __name__ == "__main__":
    # self-test 1: a wall forces a detour
    env = GridShortestPathEnv.from_env_str(
        'GridShortestPathEnv@{"grid": [[0, 0, 0], [1, 1, 0], [0, 0, 0]], "start": [0, 0], "target": [2, 0]}')
    print(env.solve())
    print("step count:", env.step_count)

    # self-test 2: open grid
    env = GridShortestPathEnv.from_env_str(
        'GridShortestPathEnv@{"grid": [[0, 0], [0, 0]], "start": [0, 0], "target": [1, 1]}')
    print(env.solve())
    print("step count:", env.step_count)
