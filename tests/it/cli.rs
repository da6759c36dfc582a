//! The command line as a whole: flags every working verb shares (`--threads`, `--quiet`), which
//! stream says what (status and summaries on stderr, data only on stdout), and progress bars
//! that end at their totals, with units.

use crate::util::{codegym, import_args, import_release, repo, run_ok_status};
use std::path::Path;

/// Every verb that takes `--threads`, with the arguments it needs besides.
const THREADED_VERBS: [&[&str]; 13] = [
    &["build"],
    &["ingest", "--corpus", "c.jsonl", "--data", "d"],
    &["import-codegym", "--envs", "e.jsonl", "--tasks", "t.jsonl", "--data", "d"],
    &["verify", "--data", "d"],
    &["finalize", "--data", "d"],
    &["sql", "--data", "d", "SELECT 1"],
    &["serve", "--data", "d"],
    &["export", "--data", "d", "--format", "hf", "--out", "o"],
    &["bench", "verify"],
    &["bench", "stages"],
    &["bench", "build"],
    &["bench", "export"],
    &["bench", "serve"],
];

/// `--threads 0` is refused while parsing, on every verb that takes it, with
/// a message that says why (it used to run as "1 threads").
#[test]
fn zero_threads_is_refused_on_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    for verb in THREADED_VERBS {
        let output = codegym().current_dir(dir.path()).args(verb).args(["--threads", "0"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{verb:?}: {stderr}");
        assert!(stderr.contains("0 threads cannot run anything; give 1 or more"), "{verb:?}: {stderr}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{verb:?} did something");
    }
}

/// Runs `codegym args... [--quiet]` expecting success and nothing on stdout; returns stderr.
fn status_of(args: &[&str], quiet: bool) -> String {
    let mut args = args.to_vec();
    if quiet {
        args.push("--quiet");
    }
    run_ok_status(&args)
}

/// The verbs that write tables or files print their summaries on stderr (stdout
/// stays empty, for data), and `--quiet` silences them.
#[test]
fn summaries_go_to_stderr_and_quiet_silences_them() {
    let dir = tempfile::tempdir().unwrap();
    let samples = repo().join("data-samples/codegym");
    let (envs, tasks) = (samples.join("envs.jsonl"), samples.join("tasks.jsonl"));
    let corpus = repo().join("data-samples/problems.parquet");
    for quiet in [false, true] {
        let data = dir.path().join(format!("data-{quiet}"));
        let data = data.to_str().unwrap();
        let problems = dir.path().join(format!("problems-{quiet}"));
        let out = dir.path().join(format!("out-{quiet}"));
        let verbs: [(&[&str], &str); 5] = [
            (
                &["ingest", "--corpus", corpus.to_str().unwrap(), "--data", problems.to_str().unwrap(), "--no-preflight"],
                "ingest: ",
            ),
            (
                &["import-codegym", "--envs", envs.to_str().unwrap(), "--tasks", tasks.to_str().unwrap(), "--data", data],
                "import: ",
            ),
            (&["verify", "--data", data, "--threads", "2"], "verify: "),
            (&["finalize", "--data", data], "finalize: "),
            (&["export", "--data", data, "--format", "codegym", "--out", out.to_str().unwrap()], "export: codegym, "),
        ];
        for (args, summary) in verbs {
            let stderr = status_of(args, quiet);
            if quiet {
                assert!(stderr.is_empty(), "{args:?} --quiet said: {stderr}");
            } else {
                assert!(stderr.lines().any(|l| l.starts_with(summary)), "{args:?}: {stderr}");
            }
        }
    }
}

/// The `N/M unit` counters a progress bar drew into `screen` (a terminal's output).
fn counters(screen: &str, unit: &str) -> Vec<(u64, u64)> {
    let tail = format!(" {unit} ");
    screen
        .match_indices(&tail)
        .filter_map(|(at, _)| {
            let before = screen[..at].rsplit(|c: char| c.is_whitespace() || c == ']').next()?;
            let (done, total) = before.split_once('/')?;
            Some((done.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

/// The verify bar, drawn on a terminal, counts environments up to their number
/// (never past it: a job a limit ended part way used to count again) and gives its rate in
/// environments per second.
#[test]
fn the_verify_bar_ends_at_its_total_and_its_rate_has_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
    let screen = dir.path().join("screen");
    let command = format!("{} verify --data {} --threads 2", env!("CARGO_BIN_EXE_codegym"), data.display());
    // `script` gives the command a terminal, so the bar is drawn; its output is what was drawn.
    let output = std::process::Command::new("script")
        .args(["-qec", &command, screen.to_str().unwrap()])
        .env_remove("CODEGYM_NO_PROGRESS")
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    let drawn = std::fs::read_to_string(&screen).unwrap_or_default();
    assert!(output.status.success(), "{drawn}");
    let counted = counters(&drawn, "environments");
    assert!(!counted.is_empty(), "no bar was drawn: {drawn}");
    assert!(counted.iter().all(|&(done, total)| done <= total && total == 6), "{counted:?}");
    assert!(drawn.contains("environments/s"), "{drawn}");
    assert!(Path::new(&screen).is_file());
}

/// `sandbox run` reads a program that starts with a byte order mark,
/// and `--quiet` leaves only the program's own output (not the verdict line).
#[test]
fn sandbox_run_reads_a_byte_order_mark_and_takes_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("p.py");
    std::fs::write(&program, "\u{feff}import sys\nprint('out')\nsys.exit(3)\n").unwrap();
    let run = |quiet: &[&str]| codegym().args(["sandbox", "run", program.to_str().unwrap()]).args(quiet).output().unwrap();
    let output = run(&[]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("codegym: verdict error") && !stderr.contains("SyntaxError"), "{stderr}");
    let output = run(&["--quiet"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn an_import_of_a_release_that_is_not_there_creates_no_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (tasks, data) = (dir.path().join("t.jsonl"), dir.path().join("d"));
    std::fs::write(&tasks, "").unwrap();
    let missing = dir.path().join("missing.jsonl");
    let output = codegym().args(import_args(&missing, &tasks, &data)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
    assert!(!data.exists(), "nothing was created at {}", data.display());
}
