//! Job-loop workers reuse one interpreter for many jobs: nothing one job changes may reach the next
//! (otherwise results would depend on scheduling). A probe job must print the same thing on a fresh
//! worker and after each leaky job on the same worker.

use crate::util::sandbox;
use codegym::sandbox::{ExecMode, Job, Limits, Verdict};

const PROBE: &str = r#"
import json, sys, os, random, gc, warnings, decimal, collections.abc, builtins
print(json.dumps({"a": [1, 2]}), len([1, 2, 3]), random.random(), sys.getrecursionlimit())
print("LEAK" in os.environ, len(sys.path), len(sys.meta_path), isinstance({}, collections.abc.Sequence))
print(decimal.Decimal(1) / decimal.Decimal(3), "evil" in sys.modules, gc.isenabled(), len(warnings.filters))
print(json._default_encoder.indent, json.JSONEncoder.item_separator, print is builtins.print, abs(-2))
print(json.dumps.__kwdefaults__, sorted(set("abc")), hash("stable"), os.urandom(4).hex())
"#;

const LEAKS: &[&str] = &[
    "import json\njson.dumps = lambda *a, **k: 'PATCHED'",
    "import builtins\nbuiltins.len = lambda x: 42\nbuiltins.abs = None",
    "import random\nrandom.seed(123)\nrandom.random()",
    "import sys\nsys.setrecursionlimit(50)",
    "import os\nos.environ['LEAK'] = '1'",
    "import sys\nsys.path.append('/nowhere')\nsys.meta_path.insert(0, object())",
    "import collections.abc\ncollections.abc.Sequence.register(dict)",
    "import decimal\ndecimal.getcontext().prec = 3\ndecimal.setcontext(decimal.Context(prec=2))",
    "import sys, types\nsys.modules['evil'] = types.ModuleType('evil')",
    "import gc\ngc.disable()",
    "import warnings\nwarnings.simplefilter('error')",
    "import json\njson._default_encoder.indent = 4\njson.JSONEncoder.item_separator = ';'",
    "import json\njson.dumps.__kwdefaults__ = {'indent': 8}",
    "import builtins\nbuiltins.print = lambda *a, **k: None",
    "import sys\nsys.addaudithook(lambda *a: None)",
    "import atexit\natexit.register(print, 'at exit')",
];

fn script(code: &str, seed: u64) -> Job {
    Job { seed, ..Job::script(code, "job.py", Limits::default()) }
}

#[test]
fn a_job_changes_nothing_the_next_job_can_see() {
    let sandbox = sandbox();
    let mode = ExecMode::JobLoop { jobs_per_worker: 1000 };
    let fresh = sandbox.run_jobs(vec![script(PROBE, 5)], mode, 1, None).unwrap().remove(0);
    assert_eq!(fresh.verdict, Verdict::Ok, "{fresh:?}");
    let mut jobs = Vec::new();
    for leak in LEAKS {
        jobs.push(script(leak, 1));
        jobs.push(script(PROBE, 5));
    }
    let outcomes = sandbox.run_jobs(jobs, mode, 1, None).unwrap();
    for (leak, pair) in LEAKS.iter().zip(outcomes.chunks(2)) {
        assert_eq!(pair[1].stdout, fresh.stdout, "after the job\n{leak}\nthe probe saw a different interpreter ({:?})", pair[1]);
    }
}

#[test]
fn fresh_mode_and_job_loop_agree_on_what_a_job_prints() {
    let sandbox = sandbox();
    let fresh = sandbox.run_jobs(vec![script(PROBE, 9)], ExecMode::Fresh, 1, None).unwrap().remove(0);
    let looped = sandbox.run_jobs(vec![script(LEAKS[0], 1), script(PROBE, 9)], ExecMode::default(), 1, None).unwrap();
    assert_eq!(fresh.stdout, looped[1].stdout);
}

#[test]
fn a_trapped_job_does_not_take_its_neighbours_down() {
    let sandbox = sandbox();
    let limits = Limits { timeout: std::time::Duration::from_millis(300), ..Limits::default() };
    let jobs = vec![script("print('before')", 0), Job { limits, ..script("while True: pass", 0) }, script("print('after')", 0)];
    let outcomes = sandbox.run_jobs(jobs, ExecMode::default(), 1, None).unwrap();
    let verdicts: Vec<Verdict> = outcomes.iter().map(|o| o.verdict).collect();
    assert_eq!(verdicts, [Verdict::Ok, Verdict::Timeout, Verdict::Ok]);
    assert_eq!(outcomes[2].stdout, "after\n");
}
