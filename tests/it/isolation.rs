//! No state crosses from one job to another: every job runs in its own instance of the booted
//! image, so a probe job prints the same thing after any leaky job as in a whole new interpreter
//! process, and the same as after nothing at all. Each leak is shown to be one (the probe sees it
//! when it runs in the leaky job itself), so the test cannot pass vacuously.

use crate::util::sandbox;
use codegym::sandbox::{ExecMode, Job, Limits, Variant, Verdict};

const PROBE: &str = r#"
import json, sys, os, random, gc, warnings, decimal, collections.abc, builtins, codecs, gymnasium
print(json.dumps({"a": [1, 2]}), len([1, 2, 3]), random.random(), sys.getrecursionlimit())
print("LEAK" in os.environ, len(sys.path), len(sys.meta_path), isinstance({}, collections.abc.Sequence))
print(decimal.Decimal(1) / decimal.Decimal(3), "evil" in sys.modules, gc.isenabled(), len(warnings.filters))
print(json._default_encoder.indent, json.JSONEncoder.item_separator, print is builtins.print, abs(-2))
print(json.dumps.__kwdefaults__, sorted(set("abc")), hash("stable"), os.urandom(4).hex())
shuffled = list(range(8)); random.Random(5).shuffle(shuffled); print(shuffled)
print(sorted(gymnasium.Env.metadata), sys.__stdout__.errors, sys.__stdout__.line_buffering)
try:
    codecs.lookup("codegym-leak"); print("codec found")
except LookupError:
    print("no codec")
print(sorted(k for k in gc.get_referents(int.__dict__)[0] if k.startswith("codegym")))
print("codegym_harness" in sys.modules, "codegym_env" in sys.modules)
"#;

/// Ways a job could change what a later job sees, each reaching deeper than the last.
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
    "import random\nrandom.Random.shuffle.__code__ = (lambda self, x: x.reverse()).__code__",
    "import gymnasium\ngymnasium.Env.metadata['render_modes'] = ['leaked']",
    "import sys\nsys.__stdout__.reconfigure(errors='replace', line_buffering=True)",
    "import codecs\ncodecs.register(lambda name: codecs.lookup('utf-8') if name.replace('-', '_') == 'codegym_leak' else None)",
    "import gc\ngc.get_referents(int.__dict__)[0]['codegym_leak'] = 1",
    "import sys, types\nsys.modules['codegym_env'] = types.ModuleType('codegym_env')",
];

fn script(code: &str, seed: u64) -> Job {
    Job { seed, ..Job::script(code, "job.py", Limits::default()) }
}

#[test]
fn a_job_changes_nothing_the_next_job_can_see() {
    let sandbox = sandbox();
    let fresh = sandbox.run_jobs(vec![script(PROBE, 5)], ExecMode::Fresh, 1, None).unwrap().remove(0);
    assert_eq!(fresh.verdict, Verdict::Ok, "{fresh:?}");
    assert!(fresh.stdout.ends_with("False False\n"), "the harness is not importable: {}", fresh.stdout);
    let mut jobs = Vec::new();
    for leak in LEAKS {
        jobs.push(script(leak, 1));
        jobs.push(script(PROBE, 5));
        // The same leak followed by the probe in one job: the probe must see it.
        jobs.push(script(&format!("{leak}\n{PROBE}"), 5));
    }
    let outcomes = sandbox.run_jobs(jobs, ExecMode::Image, 1, None).unwrap();
    for (leak, runs) in LEAKS.iter().zip(outcomes.chunks(3)) {
        assert_eq!(runs[0].verdict, Verdict::Ok, "{leak}: {:?}", runs[0]);
        assert_eq!(runs[1].stdout, fresh.stdout, "after the job\n{leak}\nthe probe saw a different interpreter ({:?})", runs[1]);
        assert_ne!(runs[2].stdout, fresh.stdout, "the probe does not see\n{leak}\nat all, so it proves nothing");
    }
}

#[test]
fn the_alternate_interpreter_hashes_strings_and_dates_differently() {
    let sandbox = sandbox();
    let code = "import time\nprint(hash('stable'), list({'alpha', 'beta', 'gamma', 'delta', 'eps'}), time.strftime('%Y-%m-%d', time.gmtime()))";
    let run = |variant: Variant, mode: ExecMode| {
        let job = Job { variant, ..script(code, 1) };
        sandbox.run_jobs(vec![job], mode, 1, None).unwrap().remove(0).stdout
    };
    let (primary, alternate) = (run(Variant::Primary, ExecMode::Image), run(Variant::Alternate, ExecMode::Image));
    assert!(primary.trim_end().ends_with("2024-01-01"), "{primary}");
    assert_ne!(primary.split_whitespace().next(), alternate.split_whitespace().next(), "another hash secret");
    assert!(!alternate.contains("2024-01-01"), "another date: {alternate}");
    assert_eq!(run(Variant::Alternate, ExecMode::Fresh), alternate, "the image is the booted interpreter");
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
