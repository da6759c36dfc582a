# The `gymnasium` stand-in the sandbox provides: CodeGym environments subclass `gymnasium.Env` and use
# nothing else of it, so a plain base class is enough for released environments to run unchanged.


class Env:
    """Base class of every environment; holds no state and defines no behaviour."""

    metadata = {}
    render_mode = None

    def __init__(self, *args, **kwargs):
        pass

    def close(self):
        pass


class Wrapper(Env):
    def __init__(self, env=None):
        self.env = env


class Space:
    def __init__(self, *args, **kwargs):
        pass


class _Spaces:
    Space = Discrete = Box = Dict = Text = Tuple = Space


spaces = _Spaces()
