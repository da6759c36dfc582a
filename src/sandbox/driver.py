# codegym sandbox driver: the first Python code a sandbox interpreter runs.
#
# Protocol (host <-> guest), all on the interpreter's own stdin/stdout:
#   host -> guest: frames `u32 little-endian length + JSON`. The first frame boots the interpreter
#   ({"nonce", "modules": {name: source}, "public": [name, ...], "preload": [module, ...]}); every
#   later frame is one job ({"nonce", "mode": "script", "code", "filename", "stdin"} or
#   {"nonce", "mode": "call", "function", "args"}).
#   guest -> host: a job's own prints go to fd 1 / fd 2 as they happen; its result follows on fd 1 as
#   MARKER + the job's nonce + ":" + 10-digit length + ":" + JSON ({"exit_code", "result", "error"}).
#   A job may ask the host something the same way ({"call": value}); the host's reply is the next
#   frame on stdin ({"reply": value}).
#   A job of many steps may first hand over partial results the same way ({"partial": value}); each
#   one restarts the job's time and output budgets, so they bound every step. A job that fails says
#   so at once ({"failing": true}), before any of its own code runs again. The host believes one
#   result frame per job, after its partials: a second one, or a success after `failing`, is an
#   error whatever the job printed or patched.
#
# After booting, the driver writes {"ready": id(run_one), ...} (with the boot nonce) and reads the
# clock. That reading is where the host takes its snapshot of the booted interpreter: every job then
# runs in a copy of that snapshot, which the host enters by calling `run_one` itself, so nothing one
# job changes reaches another. Run as a plain process (the host's fresh mode), the driver runs the
# jobs it is given in turn until its input ends.
#
# Only the modules named "public" (the gymnasium stand-in) can be imported by jobs; the others (the
# harness, preflight) are executed into module objects that never enter sys.modules, so environment
# code cannot import them; a "call" job names one of their public functions.


def _driver_main():
    import sys, os, json, io, types, builtins, traceback

    # Bound now: a job that patches builtins, json, os or traceback changes what it sees, not the
    # protocol.
    len, isinstance, int, print, memoryview, type, compile, exec = (
        builtins.len, builtins.isinstance, builtins.int, builtins.print, builtins.memoryview, builtins.type,
        builtins.compile, builtins.exec,
    )
    # Frames are encoded by json's C encoder and decoded by its C scanner, made now: patching
    # json's classes later (`JSONEncoder.iterencode`, say) cannot change what a frame says.
    from json.encoder import c_make_encoder, c_encode_basestring_ascii
    from json.scanner import c_make_scanner

    def not_json(value):
        raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)

    join, scan = "".join, c_make_scanner(json.JSONDecoder())

    def dumps(value):
        return join(c_make_encoder({}, not_json, c_encode_basestring_ascii, None, ":", ",", False, False, True)(value, 0))

    def loads(text):
        return scan(text, 0)[0]

    read, write = os.read, os.write
    print_exception, format_exception_only = traceback.print_exception, traceback.format_exception_only

    def read_exact(n):
        chunks = []
        while n:
            chunk = read(0, n)
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
        return None if body is None else loads(body.decode())

    boot = read_frame()
    if boot is None:
        return
    current = {}

    def use_nonce(nonce):
        current["marker"] = ("\x1e\x1ecodegym-frame:" + nonce + ":").encode()

    def write_all(fd, data):
        view = memoryview(data)
        while view:
            view = view[write(fd, view):]

    def write_frame(payload):
        body = dumps(payload).encode()
        write_all(1, current["marker"] + b"%010d:" % len(body) + body)

    def emit_partial(value):
        """Hands one result of a many-step job to the host now (it restarts the job's clock)."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        write_frame({"partial": value})

    def host_call(value):
        """Asks the host (a relayed call, say) and waits for its reply."""
        write_frame({"call": value})
        reply = read_frame()
        if reply is None or "reply" not in reply:
            raise RuntimeError("the host did not answer")
        return reply["reply"]

    # Adding an audit hook is permanent in CPython; refusing the event keeps jobs from installing one.
    def refuse_new_audit_hooks(event, _args):
        if event == "sys.addaudithook":
            raise RuntimeError("codegym sandbox: audit hooks are not available")

    sys.addaudithook(refuse_new_audit_hooks)

    if boot.get("native"):
        # The alternate variant presents as a native Linux CPython, so code that behaves only
        # when it detects the sandbox shows as a difference between the two variants.
        import collections

        uname = collections.namedtuple("uname_result", "sysname nodename release version machine")
        sys.platform = "linux"
        os.uname = lambda: uname("Linux", "worker-7", "6.8.0-49-generic", "#49-Ubuntu SMP", "x86_64")
        sys.implementation._multiarch = "x86_64-linux-gnu"

    def new_module(name):
        module = types.ModuleType(name)
        module.__file__ = "<codegym:" + name + ">"
        return module

    functions = {}
    public_code = {}
    for name, source in boot["modules"].items():
        module = new_module(name)
        code = compile(source, module.__file__, "exec")
        if name in boot["public"]:
            sys.modules[name] = module
            public_code[name] = code
        exec(code, module.__dict__)
        if name not in boot["public"]:
            module.emit_partial = emit_partial
            module.host_call = host_call
            # The public functions of every private module: the harness plays episodes through
            # the very functions `codegym serve` calls (the session module's).
            module.peers = functions
            functions.update(
                (key, value)
                for key, value in vars(module).items()
                if isinstance(value, types.FunctionType) and value.__module__ == name and not key.startswith("_")
            )

    def fresh_public_modules():
        """The public modules executed again as new modules, as a fresh interpreter has them:
        what code stored in them (a class attribute of `gymnasium.Env`, say) is gone."""
        for name, code in public_code.items():
            module = new_module(name)
            sys.modules[name] = module
            exec(code, module.__dict__)

    functions["fresh_public_modules"] = fresh_public_modules
    for name in boot["preload"]:
        try:
            __import__(name)
        except ImportError:
            pass
    real_stdin = sys.stdin

    def run_script(job, job_globals):
        sys.stdin = io.TextIOWrapper(io.BytesIO(job.get("stdin", "").encode()), encoding="utf-8")
        code = compile(job["code"], job.get("filename", "<job>"), "exec")
        exec(code, job_globals)
        return None

    def run_call(job, _job_globals):
        sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
        return functions[job["function"]](**job["args"])

    FAILING = {"failing": True}

    def run_job(job):
        # Module-level `random` starts each job from the job's own seed (the host seeds the
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
            if exit_code != 0:
                write_frame(FAILING)
            if not (code is None or isinstance(code, int)):
                print(code, file=sys.stderr)
        except BaseException as failure:
            # Said first, before any of the job's own code can run again (an exception's __str__,
            # a replaced sys.stderr): nothing it does afterwards can turn the job into a success.
            write_frame(FAILING)
            exit_code = 1
            error = "".join(format_exception_only(type(failure), failure)).strip()
            frames = failure.__traceback__
            while frames is not None and frames.tb_frame.f_code.co_filename == "<string>":  # the driver's own
                frames = frames.tb_next
            print_exception(type(failure), failure, frames)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        return exit_code, result, error

    def run_one():
        """Runs the next job on stdin; False when the input has ended."""
        job = read_frame()
        if job is None:
            return False
        use_nonce(job["nonce"])
        outcome = run_job(job)
        try:
            write_frame({"exit_code": outcome[0], "result": outcome[1], "error": outcome[2]})
        except (TypeError, ValueError) as bad:
            write_frame({"exit_code": 1, "result": None, "error": "result is not JSON: %s" % bad})
        sys.stdin = real_stdin
        return True

    use_nonce(boot["nonce"])
    write_frame({"ready": id(run_one), "args": id(()), "type": id(type(run_one))})
    # The host takes its snapshot at this clock reading (made holding the GIL, so the host can call
    # `run_one` in a copy of this state); run as a plain process, the driver goes on to its jobs.
    import time
    time.time()
    while run_one():
        pass


_driver_main()
