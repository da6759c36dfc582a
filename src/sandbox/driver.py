# codegym sandbox driver: the first Python code a sandbox worker runs.
#
# Protocol (host <-> guest), all on the worker's own stdin/stdout:
#   host -> guest: frames `u32 little-endian length + JSON`. The first frame boots the worker
#   ({"nonce", "modules": {name: source}, "preload": [module, ...], "reset": bool}); every later frame is one job
#   ({"mode": "script", "code", "filename", "stdin"} or {"mode": "call", "function", "args"}).
#   guest -> host: a job's own prints go to fd 1 / fd 2 as they happen; its result follows on fd 1 as
#   MARKER + nonce + ":" + 10-digit length + ":" + JSON ({"exit_code", "result", "error"}). A job of
#   many steps may first hand over partial results the same way ({"partial": value}); each one
#   restarts the job's time budget, so the budget bounds every step.
# End of input (the host's choice: no more jobs, or time to recycle this worker) ends the loop.
#
# Between jobs the driver puts the interpreter back to the state it had when it booted (see
# _Snapshot), so the code of one job cannot change what the next one sees. Each job also runs in a copy
# of the boot context (contextvars), with fresh globals and its own sys.modules["__main__"].


def _driver_main():
    import sys, os, json, io, gc, types, contextvars, builtins, atexit

    def read_exact(n):
        chunks = []
        while n:
            chunk = os.read(0, n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_frame():
        header = read_exact(4)
        if header is None:
            return None
        body = read_exact(int.from_bytes(header, "little"))
        return None if body is None else json.loads(body)

    boot = read_frame()
    if boot is None:
        return
    marker = ("\x1e\x1ecodegym-frame:" + boot["nonce"] + ":").encode()

    def write_all(fd, data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def write_frame(payload):
        body = json.dumps(payload).encode()
        write_all(1, marker + b"%010d:" % len(body) + body)

    def write_result(exit_code, result, error):
        write_frame({"exit_code": exit_code, "result": result, "error": error})

    def emit_partial(value):
        """Hands one result of a many-step job to the host now (it restarts the job's clock)."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        write_frame({"partial": value})

    # Adding an audit hook is permanent in CPython; refusing the event keeps jobs from installing one.
    def refuse_new_audit_hooks(event, _args):
        if event == "sys.addaudithook":
            raise RuntimeError("codegym sandbox: audit hooks are not available")

    sys.addaudithook(refuse_new_audit_hooks)

    for name, source in boot["modules"].items():
        module = types.ModuleType(name)
        module.__file__ = "<codegym:" + name + ">"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules["codegym_harness"].emit_partial = emit_partial
    for name in boot["preload"]:
        try:
            __import__(name)
        except ImportError:
            pass

    snapshot = _Snapshot(sys, gc) if boot["reset"] else None
    boot_context = contextvars.copy_context()
    real_stdin, driver_module = sys.stdin, sys.modules["__main__"]

    def run_script(job, job_globals):
        sys.stdin = io.TextIOWrapper(io.BytesIO(job.get("stdin", "").encode()), encoding="utf-8")
        code = compile(job["code"], job.get("filename", "<job>"), "exec")
        exec(code, job_globals)
        return None

    def run_call(job, _job_globals):
        sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
        harness = sys.modules["codegym_harness"]
        return getattr(harness, job["function"])(**job["args"])

    def run_job(job):
        # Module-level `random` starts each job from the job's own seed (the host reseeds the
        # guest's random source per job), exactly as a fresh `import random` would.
        if "random" in sys.modules:
            sys.modules["random"].seed()
        main_module = types.ModuleType("__main__")
        job_globals = main_module.__dict__
        job_globals["__builtins__"] = builtins
        sys.modules["__main__"] = main_module
        exit_code, result, error = 0, None, None
        try:
            result = (run_call if job["mode"] == "call" else run_script)(job, job_globals)
        except SystemExit as stop:
            code = stop.code
            if code is None:
                exit_code = 0
            elif isinstance(code, int):
                exit_code = code
            else:
                exit_code = 1
                print(code, file=sys.stderr)
        except BaseException as failure:
            import traceback
            exit_code = 1
            error = "".join(traceback.format_exception_only(type(failure), failure)).strip()
            frames = failure.__traceback__
            while frames is not None and frames.tb_frame.f_code.co_filename == "<string>":  # the driver's own
                frames = frames.tb_next
            traceback.print_exception(type(failure), failure, frames)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        return exit_code, result, error

    while True:
        job = read_frame()
        if job is None:
            break
        outcome = boot_context.copy().run(run_job, job)
        try:
            write_result(*outcome)
        except (TypeError, ValueError) as bad:
            write_result(1, None, "result is not JSON: %s" % bad)
        atexit._clear()
        sys.stdin, sys.modules["__main__"] = real_stdin, driver_module
        if snapshot is not None:
            snapshot.restore()


class _Snapshot:
    """The interpreter state a job could change, taken at boot and put back after every job.

    Covers: the set of loaded modules and every module's namespace; lists, dicts and sets held
    directly by a module; attributes of module-level classes and instances; code, defaults and
    attribute count of module-level functions; builtins; ABC registrations; other random generators'
    state; recursion limit, int-string limit, trace and profile hooks, gc settings, os.environ, cwd.
    Not covered (documented in the sandbox module): deeper mutation of stdlib objects (an element
    inside a module-level list, objects reached through gc); workers are recycled every few jobs to
    bound any such leak.

    Checking is cheap: everything watched is flattened into one list of object identities, compared
    in C (`map(operator.is_, ...)`); only when something differs does the precise restore run.
    """

    def __init__(self, sys, gc):
        import os, abc, _abc, types, random, operator, itertools
        self.sys, self.gc, self.os, self.abc, self._abc = sys, gc, os, abc, _abc
        self.same = operator.is_
        self.chain = itertools.chain.from_iterable
        self.keys, self.values = operator.methodcaller("keys"), operator.methodcaller("values")
        self.code, self.defaults = operator.attrgetter("__code__"), operator.attrgetter("__defaults__")
        self.kwdefaults, self.attrs = operator.attrgetter("__kwdefaults__"), operator.attrgetter("__dict__")
        self.modules = dict(sys.modules)
        self.namespaces, self.containers, self.objects, self.functions, self.generators, self.abcs = [], [], [], [], [], []
        seen = set()
        for module in self.modules.values():
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict) or id(namespace) in seen:
                continue
            seen.add(id(namespace))
            self.namespaces.append((namespace, dict(namespace)))
            for value in list(namespace.values()):
                if id(value) not in seen:
                    seen.add(id(value))
                    self._take(value, types, random)
        self.maps = [live for live, _ in self.namespaces]
        self.maps += [live for live, saved in self.containers if isinstance(live, dict)]
        self.maps += [live.__dict__ for live, _, _ in self.objects]
        self.lists = [live for live, saved in self.containers if not isinstance(live, dict)]
        self.fns = [fn for fn, *_ in self.functions]
        self.recursion_limit = sys.getrecursionlimit()
        self.int_digits = sys.get_int_max_str_digits()
        self.gc_state = (gc.isenabled(), gc.get_threshold())
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.abc_token = abc.get_cache_token()
        self.baseline = self._identities()

    def _take(self, value, types, random):
        if isinstance(value, list):
            self.containers.append((value, list(value)))
        elif isinstance(value, dict):
            self.containers.append((value, dict(value)))
        elif isinstance(value, set):
            self.containers.append((value, set(value)))
        elif isinstance(value, types.FunctionType):
            self.functions.append((value, value.__code__, value.__defaults__, value.__kwdefaults__, dict(value.__dict__)))
        elif isinstance(value, type):
            if not value.__flags__ & (1 << 8):  # Py_TPFLAGS_IMMUTABLETYPE
                self.objects.append((value, dict(value.__dict__), True))
            if isinstance(value, self.abc.ABCMeta):
                registry = self._abc._get_dump(value)[0]
                self.abcs.append((value, {ref() for ref in registry} - {None}))
        elif isinstance(value, random.Random) and value is not random._inst:  # _inst: reseeded per job
            self.generators.append((value, value.getstate()))
            self.objects.append((value, dict(vars(value)), False))
        elif not isinstance(value, types.ModuleType) and isinstance(getattr(value, "__dict__", None), dict):
            self.objects.append((value, dict(vars(value)), False))

    def _identities(self):
        """Every watched size and reference, in a stable order: sizes compare by value (large ints
        are not shared objects), references by identity."""
        chain, fns = self.chain, self.fns
        sizes = list(map(len, self.maps))
        sizes += map(len, self.lists)
        sizes += map(len, map(self.attrs, fns))
        flat = list(chain(map(self.keys, self.maps)))
        flat += chain(map(self.values, self.maps))
        flat += chain(self.lists)
        flat += map(self.code, fns)
        flat += map(self.defaults, fns)
        flat += map(self.kwdefaults, fns)
        return sizes, flat

    def unchanged(self):
        sizes, flat = self._identities()
        baseline_sizes, baseline = self.baseline
        return sizes == baseline_sizes and len(flat) == len(baseline) and all(map(self.same, flat, baseline))

    def restore(self):
        sys, os = self.sys, self.os
        if not self.unchanged() or self.abc.get_cache_token() != self.abc_token:
            self._restore_objects()
            self.baseline = self._identities()
            self.abc_token = self.abc.get_cache_token()
        for generator, state in self.generators:
            generator.setstate(state)
        if sys.getrecursionlimit() != self.recursion_limit:
            sys.setrecursionlimit(self.recursion_limit)
        if sys.get_int_max_str_digits() != self.int_digits:
            sys.set_int_max_str_digits(self.int_digits)
        sys.settrace(None)
        sys.setprofile(None)
        enabled, threshold = self.gc_state
        self.gc.enable() if enabled else self.gc.disable()
        if self.gc.get_threshold() != threshold:
            self.gc.set_threshold(*threshold)
        if len(os.environ) != len(self.environ) or dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)

    def _restore_objects(self):
        sys = self.sys
        missing = object()
        for name in [name for name in sys.modules if name not in self.modules]:
            del sys.modules[name]
        sys.modules.update(self.modules)
        for live, saved in self.namespaces + self.containers:
            if isinstance(live, list):
                if len(live) != len(saved) or any(a is not b for a, b in zip(live, saved)):
                    live[:] = saved
            elif isinstance(live, set):
                if live != saved:
                    live.clear()
                    live.update(saved)
            else:
                for key in [key for key in live if key not in saved]:
                    del live[key]
                for key, value in saved.items():
                    if live.get(key, missing) is not value:
                        live[key] = value
        for obj, saved, is_class in self.objects:
            live = obj.__dict__
            for key in [key for key in live if key not in saved]:
                delattr(obj, key) if is_class else live.__delitem__(key)
            for key, value in saved.items():
                if live.get(key, missing) is not value:
                    setattr(obj, key, value) if is_class else live.__setitem__(key, value)
        for fn, code, defaults, kwdefaults, attrs in self.functions:
            if fn.__code__ is not code:
                fn.__code__ = code
            if fn.__defaults__ is not defaults:
                fn.__defaults__ = defaults
            if fn.__kwdefaults__ is not kwdefaults:
                fn.__kwdefaults__ = kwdefaults
            if fn.__dict__ != attrs:
                fn.__dict__.clear()
                fn.__dict__.update(attrs)
        for cls, registry in self.abcs:
            live = {ref() for ref in self._abc._get_dump(cls)[0]} - {None}
            if live != registry:
                self._abc._reset_registry(cls)
                for member in registry:
                    cls.register(member)
            self._abc._reset_caches(cls)
        warnings = sys.modules.get("warnings")
        if warnings is not None:
            warnings._filters_mutated()


_driver_main()
