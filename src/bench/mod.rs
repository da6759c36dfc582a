//! Benchmarks, each side by side with a baseline run on this machine: `verify`, `ingest`,
//! `stages` (here), `llm` ([`llm`]) and `serve` ([`serve`]).
//!
//! `codegym bench verify`: our oracle verification against the mechanism of the released pipeline
//! (a fresh `python3` process per (environment, configuration) cell that executes the environment
//! and calls `solve`), run side by side on this machine with the same number of workers. Prints
//! cells per second for each side and the ratios; also the share of our worker time spent outside
//! guest code. Two workloads: the released sample (1-2 configurations per environment: interpreter
//! start-up dominates) and a method-shaped matrix (environments x configurations).

mod llm;
mod serve;

pub use llm::{LlmBenchSettings, llm};
pub use serve::{ServeBenchSettings, serve};

use crate::dataset::{self, Table};
use crate::harness::{self, EnvSource, EnvWork, OracleRun, Step};
use crate::sandbox::{self, ExecMode, Limits, Sandbox};
use crate::tables::{EnvironmentRow, TaskConfigRow};
use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// Resolved benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub fixtures: PathBuf,
    pub matrix_envs: usize,
    pub matrix_configs: usize,
    pub repeat: usize,
    pub python: String,
    pub threads: usize,
}

/// One (environment, configuration) cell.
#[derive(Clone)]
struct Cell {
    env_code: String,
    env_name: String,
    config: String,
}

/// What one side measured on one workload.
struct SideResult {
    seconds: f64,
    passed: usize,
    calls: Vec<i64>,
}

const BASELINE_CELL: &str = r#"
import json, sys
env_code = open(sys.argv[1]).read()
namespace = {"__name__": "released_env"}
exec(compile(env_code, sys.argv[1], "exec"), namespace)
env = namespace[sys.argv[2]].from_env_str(open(sys.argv[3]).read())
message = str(env.solve())
print(json.dumps({"passed": "reward=1" in message, "oracle_calls": env.step_count}))
"#;

pub fn verify(settings: &BenchSettings) -> Result<()> {
    let (envs, tasks) = (settings.fixtures.join("envs.parquet"), settings.fixtures.join("tasks.parquet"));
    if !envs.is_file() {
        bail!(
            "no released sample at {}\n  hint: pass --fixtures DIR (a folder with envs.parquet and tasks.parquet)",
            settings.fixtures.display()
        );
    }
    let scratch = tempfile::tempdir()?;
    crate::import_codegym::import(&envs, &tasks, scratch.path(), crate::import_codegym::SOURCE)?;
    let sample = cells(scratch.path())?;
    let matrix = matrix(&sample, settings.matrix_envs, settings.matrix_configs);
    let python = real_interpreter(&settings.python)?;
    let settings = &BenchSettings { python, ..settings.clone() };
    let runtime = crate::runtime::ensure()?;
    let sandbox = runtime.sandbox()?;
    println!(
        "codegym bench verify: {} workers, best of {} run(s); baseline: `{} cell.py` per cell",
        settings.threads, settings.repeat, settings.python
    );
    println!(
        "{:<22} {:>6} {:>14} {:>18} {:>8} {:>12}",
        "workload", "cells", "ours cells/s", "baseline cells/s", "ratio", "outside guest"
    );
    let workloads =
        [("released sample", sample), (&*format!("matrix {}x{}", settings.matrix_envs, settings.matrix_configs), matrix)];
    for (name, cells) in workloads {
        let mut ours_best: Option<(SideResult, f64)> = None;
        let mut base_best: Option<SideResult> = None;
        for _ in 0..settings.repeat {
            let ours = run_ours(&sandbox, &cells, settings.threads)?;
            let base = run_baseline(&cells, settings, scratch.path())?;
            if ours_best.as_ref().is_none_or(|(best, _)| ours.0.seconds < best.seconds) {
                ours_best = Some(ours);
            }
            if base_best.as_ref().is_none_or(|best| base.seconds < best.seconds) {
                base_best = Some(base);
            }
        }
        let ((ours, outside), base) = (ours_best.expect("repeat >= 1"), base_best.expect("repeat >= 1"));
        let (ours_rate, base_rate) = (cells.len() as f64 / ours.seconds, cells.len() as f64 / base.seconds);
        println!(
            "{:<22} {:>6} {:>14.1} {:>18.1} {:>7.2}x {:>11.1}%",
            name,
            cells.len(),
            ours_rate,
            base_rate,
            ours_rate / base_rate,
            outside * 100.0
        );
        let agree = ours.calls == base.calls;
        println!(
            "{:<22} passed: ours {} / baseline {}; oracle calls identical on every cell: {}",
            "", ours.passed, base.passed, agree
        );
    }
    Ok(())
}

/// The interpreter binary itself: a version-manager shim (pyenv, asdf) in front of it would add its
/// own start-up to every baseline cell.
fn real_interpreter(python: &str) -> Result<String> {
    let output = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .with_context(|| format!("cannot run the baseline interpreter `{python}`"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(if path.is_empty() { python.to_string() } else { path })
}

fn cells(data: &Path) -> Result<Vec<Cell>> {
    let envs: Vec<EnvironmentRow> = dataset::read_table(data, Table::Environments)?;
    let configs: Vec<TaskConfigRow> = dataset::read_table(data, Table::TaskConfigs)?;
    let by_id: std::collections::HashMap<&str, &EnvironmentRow> = envs.iter().map(|e| (e.env_id.as_str(), e)).collect();
    let mut cells: Vec<Cell> = configs
        .iter()
        .filter_map(|c| {
            by_id.get(c.env_id.as_str()).map(|e| Cell {
                env_code: e.env_code.clone(),
                env_name: e.env_name.clone(),
                config: c.config.clone(),
            })
        })
        .collect();
    cells.sort_by(|a, b| (&a.env_name, &a.config).cmp(&(&b.env_name, &b.config)));
    Ok(cells)
}

/// `envs` environments x `per_env` cells, cycling through each environment's released
/// configurations (the released sample has one or two per environment).
fn matrix(sample: &[Cell], envs: usize, per_env: usize) -> Vec<Cell> {
    let mut names: Vec<&str> = sample.iter().map(|c| c.env_name.as_str()).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names.into_iter().take(envs) {
        let own: Vec<&Cell> = sample.iter().filter(|c| c.env_name == name).collect();
        out.extend((0..per_env).map(|i| own[i % own.len()].clone()));
    }
    out
}

fn run_ours(sandbox: &Sandbox, cells: &[Cell], threads: usize) -> Result<(SideResult, f64)> {
    // One job per environment with all its cells as steps, as `verify` schedules them.
    let mut work: Vec<EnvWork> = Vec::new();
    for cell in cells {
        let same = work.last().is_some_and(|w: &EnvWork| w.env.name == cell.env_name && w.env.code == cell.env_code);
        if !same {
            work.push(EnvWork::new(EnvSource { code: &cell.env_code, name: &cell.env_name }, 0));
        }
        let last = work.last_mut().expect("pushed above");
        last.steps.push(Step::Oracle { config: last.configs.len(), solver: None });
        last.configs.push(&cell.config);
    }
    let before = sandbox::counters();
    let started = Instant::now();
    let budgets = harness::Budgets::method(Limits::default());
    let results = harness::run_steps(sandbox, &work, &budgets, ExecMode::default(), threads, None)?;
    let seconds = started.elapsed().as_secs_f64();
    let guest = sandbox::counters().guest_time - before.guest_time;
    let outside = 1.0 - guest.as_secs_f64() / (seconds * threads.min(work.len()) as f64);
    let runs: Vec<Option<OracleRun>> = results.iter().flatten().map(|r| r.parse::<OracleRun>().ok()).collect();
    let passed = runs.iter().flatten().filter(|r| r.passed).count();
    let calls = runs.iter().map(|r| r.as_ref().map_or(-1, |r| r.oracle_calls)).collect();
    Ok((SideResult { seconds, passed, calls }, outside.max(0.0)))
}

fn run_baseline(cells: &[Cell], settings: &BenchSettings, scratch: &Path) -> Result<SideResult> {
    let dir = scratch.join("baseline");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("gymnasium.py"), include_str!("../harness/gymnasium.py"))?;
    std::fs::write(dir.join("cell.py"), BASELINE_CELL)?;
    for (i, cell) in cells.iter().enumerate() {
        std::fs::write(dir.join(format!("env-{i}.py")), &cell.env_code)?;
        std::fs::write(dir.join(format!("config-{i}.txt")), &cell.config)?;
    }
    let queue = Mutex::new((0..cells.len()).collect::<VecDeque<_>>());
    let results = Mutex::new(vec![None; cells.len()]);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..settings.threads.min(cells.len()))
            .map(|_| scope.spawn(|| baseline_worker(&queue, &results, cells, &dir, &settings.python)))
            .collect();
        for worker in workers {
            worker.join().expect("baseline worker panicked")?;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let results = results.into_inner().unwrap();
    let passed = results.iter().flatten().filter(|(passed, _)| *passed).count();
    let calls = results.iter().map(|r| r.map_or(-1, |(_, calls)| calls)).collect();
    Ok(SideResult { seconds, passed, calls })
}

type BaselineResults = Mutex<Vec<Option<(bool, i64)>>>;

fn baseline_worker(
    queue: &Mutex<VecDeque<usize>>,
    results: &BaselineResults,
    cells: &[Cell],
    dir: &Path,
    python: &str,
) -> Result<()> {
    while let Some(i) = queue.lock().unwrap().pop_front() {
        let output = Command::new(python)
            .current_dir(dir)
            .arg("cell.py")
            .arg(format!("env-{i}.py"))
            .arg(&cells[i].env_name)
            .arg(format!("config-{i}.txt"))
            .output()
            .with_context(|| format!("cannot run the baseline interpreter `{python}`"))?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&output.stdout).ok();
        results.lock().unwrap()[i] =
            parsed.map(|v| (v["passed"].as_bool().unwrap_or(false), v["oracle_calls"].as_i64().unwrap_or(-1)));
    }
    Ok(())
}

/// `codegym bench ingest`: generates a corpus of `rows` problems (KodCode columns), ingests it
/// without preflight, and reports problems per second and the peak memory of the ingest; the
/// baseline, side by side, does the same in Python with pyarrow: read, drop repeated questions,
/// hash each problem, write zstd Parquet (skipped when pyarrow is missing).
pub fn ingest(rows: usize, python: &str) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let corpus = scratch.path().join("corpus.parquet");
    generate_corpus(&corpus, rows)?;
    let size = std::fs::metadata(&corpus)?.len();
    println!("codegym bench ingest: {rows} generated problems ({:.1} MB Parquet), 1 thread", size as f64 / 1e6);
    reset_peak_memory();
    let started = Instant::now();
    let summary = crate::corpus::ingest(
        &crate::corpus::IngestSettings::new(corpus.clone(), crate::corpus::Preset::Kodcode),
        &scratch.path().join("data"),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_memory_mb();
    println!("{:<26} {:>14} {:>12} {:>14}", "side", "problems/s", "seconds", "peak RSS MB");
    println!(
        "{:<26} {:>14.0} {:>12.2} {:>14}",
        "codegym ingest",
        rows as f64 / seconds,
        seconds,
        peak.map_or("n/a".into(), |p| format!("{p:.0}"))
    );
    println!("{:<26} {} problems, {} rejects", "", summary.problems, summary.rejects.values().sum::<u64>());
    // The same job the way a Python pipeline would do it: read with pyarrow, normalise and drop
    // repeated questions, hash each problem, write the kept rows as zstd Parquet.
    let script = r#"
import sys, time, resource, hashlib
t = time.time()
import pyarrow as pa, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1], columns=["question_id", "question", "solution", "test"])
seen, keep, ids = set(), [], []
for i, (q, s, tst) in enumerate(zip(*(table.column(c).to_pylist() for c in ["question", "solution", "test"]))):
    key = " ".join(q.split())
    if key in seen:
        continue
    seen.add(key)
    keep.append(i)
    ids.append(hashlib.blake2b((q + "\0" + s + "\0" + tst).encode(), digest_size=16).hexdigest())
kept = table.take(keep).append_column("problem_id", pa.array(ids))
pq.write_table(kept, sys.argv[2], compression="zstd")
print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(keep))
"#;
    let output = Command::new(real_interpreter(python)?)
        .arg("-c")
        .arg(script)
        .arg(&corpus)
        .arg(scratch.path().join("baseline.parquet"))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if output.status.success() && fields.len() == 3 {
        println!("{:<26} {:>14.0} {:>12.2} {:>14.0}", "pyarrow + python", rows as f64 / fields[0], fields[0], fields[1]);
        println!("ratio (codegym / baseline problems per second): {:.2}x", fields[0] / seconds);
    } else {
        println!(
            "baseline skipped: `{python}` has no pyarrow ({})",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(())
}

/// Writes a KodCode-shaped corpus: distinct questions, a short solution and pytest-style tests,
/// and one exact duplicate in every thousand rows.
fn generate_corpus(path: &Path, rows: usize) -> Result<()> {
    use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    let names = ["question_id", "subset", "question", "solution", "test", "gpt_difficulty"];
    let schema = std::sync::Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>()));
    // Row groups and compression as published corpora have them (the reader holds a row group's
    // column chunks in memory while it decodes them).
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(16 * 1024))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), Some(props))?;
    for start in (0..rows).step_by(8192) {
        let mut columns: Vec<StringBuilder> = names.iter().map(|_| StringBuilder::new()).collect();
        for i in start..(start + 8192).min(rows) {
            let q = if i % 1000 == 999 { i - 1 } else { i };
            columns[0].append_value(format!("bench_{i}"));
            columns[1].append_value("Synthetic");
            columns[2].append_value(format!(
                "Given a list of integers, return the sum of every element multiplied by {q}. Example: [1, 2] gives {}.",
                3 * q
            ));
            columns[3].append_value(format!("def solve(xs):\n    return sum(x * {q} for x in xs)\n"));
            columns[4].append_value(format!(
                "from solution import solve\n\ndef test_small():\n    assert solve([1, 2]) == {}\n",
                3 * q
            ));
            columns[5].append_value(["easy", "medium", "hard"][i % 3]);
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| std::sync::Arc::new(b.finish()) as ArrayRef).collect();
        writer.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
    }
    writer.close()?;
    Ok(())
}

/// Resets the kernel's peak-RSS mark of this process (Linux), so the ingest's own peak is measured.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `codegym bench stages`: the whole verification of each release (every stage, as `verify`
/// runs it) with environments and cells per second and the time per stage; side by side, the
/// oracle cells alone, the part the released pipeline ran.
pub fn stages(releases: &[(&Path, &str)], threads: usize) -> Result<()> {
    let sandbox = crate::runtime::ensure()?.sandbox()?;
    println!("codegym bench stages: {threads} workers");
    for (dir, ext) in releases {
        let (envs, tasks) = (dir.join(format!("envs.{ext}")), dir.join(format!("tasks.{ext}")));
        if !envs.is_file() {
            println!("{}: skipped (no envs.{ext})", dir.display());
            continue;
        }
        let scratch = tempfile::tempdir()?;
        crate::import_codegym::import(&envs, &tasks, scratch.path(), crate::import_codegym::SOURCE)?;
        let oracle_only = cells(scratch.path())?;
        let settings = crate::verify::VerifySettings { threads, ..Default::default() };
        let before = sandbox::counters();
        let started = Instant::now();
        let summary = crate::verify::verify(&sandbox, scratch.path(), &settings, None)?;
        let seconds = started.elapsed().as_secs_f64();
        let after = sandbox::counters();
        let (oracle, _) = run_ours(&sandbox, &oracle_only, threads)?;
        println!(
            "{}: {} environments, {} cells: {:.2} s ({:.1} environments/s, {:.1} cells/s); oracle cells alone {:.2} s (full verification costs {:.1}x)",
            dir.display(),
            summary.environments,
            summary.oracle_cells,
            seconds,
            summary.environments as f64 / seconds,
            summary.oracle_cells as f64 / seconds,
            oracle.seconds,
            seconds / oracle.seconds
        );
        let total: u64 = summary.step_ms.values().sum();
        for (stage, ms) in &summary.step_ms {
            println!("    {stage:<12} {:>8} ms  {:>5.1}%", ms, *ms as f64 * 100.0 / total.max(1) as f64);
        }
        let guest = (after.guest_time - before.guest_time).as_secs_f64();
        let worker_time = seconds * threads as f64;
        println!(
            "    where the time goes: steps {:.1}%, rest of guest time (interpreter start, reset, framing) {:.1}%, outside the guest {:.1}%; {} interpreters started",
            total as f64 / 10.0 / worker_time,
            (guest - total as f64 / 1000.0).max(0.0) * 100.0 / worker_time,
            (worker_time - guest).max(0.0) * 100.0 / worker_time,
            after.instances - before.instances
        );
    }
    Ok(())
}
