# The `pytest` stand-in the sandbox offers to preflight: what KodCode-style tests use of pytest
# (raises, approx, mark.parametrize, fixture, skip), implemented plainly. Tests are collected and
# run by the harness, not by this module.


class _Raises:
    def __init__(self, expected, match=None):
        self.expected, self.match, self.value = expected, match, None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, _traceback):
        if kind is None:
            raise AssertionError("DID NOT RAISE %r" % (self.expected,))
        if not issubclass(kind, self.expected):
            return False
        if self.match is not None:
            import re

            if not re.search(self.match, str(value)):
                raise AssertionError("pattern %r not found in %r" % (self.match, str(value)))
        self.value = value
        return True


def raises(expected, *args, match=None, **kwargs):
    if args:
        with _Raises(expected, match):
            args[0](*args[1:], **kwargs)
        return None
    return _Raises(expected, match)


class approx:
    def __init__(self, expected, rel=1e-6, abs=1e-12):
        self.expected, self.rel, self.abs = expected, rel, abs

    def _close(self, a, b):
        return a == b or abs(a - b) <= max(self.rel * abs(b), self.abs)

    def __eq__(self, actual):
        if isinstance(self.expected, (list, tuple)):
            return len(actual) == len(self.expected) and all(self._close(a, b) for a, b in zip(actual, self.expected))
        return self._close(actual, self.expected)


class Skipped(Exception):
    pass


def skip(reason=""):
    raise Skipped(reason)


def fixture(function=None, **_options):
    def mark(fn):
        fn._codegym_fixture = True
        return fn

    return mark(function) if callable(function) else mark


class _Mark:
    def parametrize(self, names, values, **_options):
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)

        def mark(fn):
            cases = [dict(zip(names, v if len(names) > 1 else (v,))) for v in values]
            fn._codegym_cases = getattr(fn, "_codegym_cases", [{}])
            fn._codegym_cases = [dict(a, **b) for b in cases for a in fn._codegym_cases]
            return fn

        return mark

    def __getattr__(self, _name):
        return lambda *a, **k: (a[0] if a and callable(a[0]) and not k else (lambda fn: fn))


mark = _Mark()
