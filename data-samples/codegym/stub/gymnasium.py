"""Minimal stand-in for gymnasium: the environments only subclass gymnasium.Env."""


class Env:
    def __init__(self, *args, **kwargs):
        pass
