//! `codegym bench verify` and `codegym bench stages`: verification side by side with what a careful
//! team would run instead.
//!
//! - `verify`: per workload (the released sample, and a method-shaped matrix of environments x
//!   configurations), our oracle cells alone and our whole verification (every check) against a
//!   lean baseline: one `python3 -I -S` process per (environment, configuration) cell that executes
//!   the environment and calls `solve()` (the release's mechanism with the least isolation a
//!   careful team would add to it). Prints cells per second and the ratios, and checks that both
//!   sides agree on every oracle call count.
//! - `stages`: the whole verification of each release, in our images and with a whole new
//!   interpreter per environment (the simplest isolation that is as strict), with the time per
//!   stage and per environment; then a generated slice at 1/100 of the paper's shape
//!   ([`super::slice`]) and what its figures mean for the paper's scale.

use super::{real_interpreter, slice};
use crate::dataset::{Dataset, ShardSelection, Table};
use crate::harness::{self, AgentCell, EnvSource, OracleRun};
use crate::sandbox::{self, ExecMode, Limits, Sandbox, Variant};
use crate::tables::{EnvironmentRow, TaskConfigRow};
use crate::verify::{VerifySettings, VerifySummary};
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
    source: String,
    config: String,
}

/// What one side measured on one workload.
struct SideResult {
    seconds: f64,
    passed: usize,
    calls: Vec<i64>,
}

/// The baseline's cell: a lean interpreter (`-I -S`) that puts the environment's folder (with the
/// gymnasium stand-in) on its path, executes the environment and calls its own `solve`.
const BASELINE_CELL: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[4])
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
    let imported = imported_in(&scratch.path().join("sample"), &envs, &tasks)?;
    let sample = cells(&imported)?;
    let matrix = matrix(&sample, settings.matrix_envs, settings.matrix_configs);
    let python = real_interpreter(&settings.python)?;
    let settings = &BenchSettings { python, ..settings.clone() };
    let sandbox = crate::runtime::ensure()?.sandbox()?;
    println!(
        "codegym bench verify: {} workers, best of {} run(s); baseline: `{} -I -S cell.py` per cell",
        settings.threads, settings.repeat, settings.python
    );
    println!(
        "{:<20} {:>6} {:>13} {:>15} {:>15} {:>8} {:>8} {:>9}",
        "workload", "cells", "ours: oracle", "ours: verify", "baseline", "oracle", "verify", "outside"
    );
    println!(
        "{:<20} {:>6} {:>13} {:>15} {:>15} {:>8} {:>8} {:>9}",
        "", "", "cells/s", "(every check)", "cells/s", "ratio", "ratio", "guest"
    );
    let matrix_name = format!("matrix {}x{}", settings.matrix_envs, settings.matrix_configs);
    for (index, (name, cells)) in [("released sample", sample), (matrix_name.as_str(), matrix)].into_iter().enumerate() {
        let data = dataset_in(&scratch.path().join(format!("workload-{index}")))?;
        write_release(&cells, &data, &scratch.path().join(format!("release-{index}")))?;
        let ours = best_of(settings.repeat, || run_ours(&sandbox, &cells, settings.threads))?;
        let whole =
            best_of(settings.repeat, || run_whole(&sandbox, &data, settings.threads, ExecMode::Image).map(|(s, _)| (s, ())))?;
        let base = best_of(settings.repeat, || run_baseline(&cells, settings, scratch.path()).map(|s| (s, ())))?;
        let rate = |seconds: f64| cells.len() as f64 / seconds;
        println!(
            "{:<20} {:>6} {:>13.1} {:>15.1} {:>15.1} {:>7.2}x {:>7.2}x {:>8.1}%",
            name,
            cells.len(),
            rate(ours.0.seconds),
            rate(whole.0),
            rate(base.0.seconds),
            base.0.seconds / ours.0.seconds,
            base.0.seconds / whole.0,
            ours.1 * 100.0
        );
        println!(
            "{:<20} passed: ours {} / baseline {}; oracle calls identical on every cell: {}",
            "",
            ours.0.passed,
            base.0.passed,
            ours.0.calls == base.0.calls
        );
    }
    Ok(())
}

/// The best (fastest) of `repeat` runs of `run`, by its first value's time.
fn best_of<T, E: Timed>(repeat: usize, mut run: impl FnMut() -> Result<(E, T)>) -> Result<(E, T)> {
    let mut best: Option<(E, T)> = None;
    for _ in 0..repeat.max(1) {
        let next = run()?;
        if best.as_ref().is_none_or(|b| next.0.seconds() < b.0.seconds()) {
            best = Some(next);
        }
    }
    Ok(best.expect("at least one run"))
}

trait Timed {
    fn seconds(&self) -> f64;
}

impl Timed for SideResult {
    fn seconds(&self) -> f64 {
        self.seconds
    }
}

impl Timed for f64 {
    fn seconds(&self) -> f64 {
        *self
    }
}

/// A new dataset in the folder `dir`.
pub(super) fn dataset_in(dir: &Path) -> Result<Dataset> {
    Ok(Dataset::open(dir.to_str().context("a UTF-8 scratch path")?, None)?)
}

/// A scratch dataset in `dir` holding a released sample (`envs` and `tasks`), imported.
fn imported_in(dir: &Path, envs: &Path, tasks: &Path) -> Result<Dataset> {
    let data = dataset_in(dir)?;
    let release = crate::import_codegym::Release::new(envs, tasks);
    crate::import_codegym::import(&release, &data, crate::import_codegym::SOURCE, ShardSelection::default())?;
    Ok(data)
}

fn cells(data: &Dataset) -> Result<Vec<Cell>> {
    let envs: Vec<EnvironmentRow> = data.read_table(Table::Environments)?;
    let configs: Vec<TaskConfigRow> = data.read_table(Table::TaskConfigs)?;
    let by_id: std::collections::HashMap<&str, &EnvironmentRow> = envs.iter().map(|e| (e.env_id.as_str(), e)).collect();
    let mut cells: Vec<Cell> = configs
        .iter()
        .filter_map(|c| {
            by_id.get(c.env_id.as_str()).map(|e| Cell {
                env_code: e.env_code.clone(),
                env_name: e.env_name.clone(),
                source: e.source_id.clone(),
                config: c.config.clone(),
            })
        })
        .collect();
    cells.sort_by(|a, b| (&a.env_name, &a.config).cmp(&(&b.env_name, &b.config)));
    Ok(cells)
}

/// `envs` environments x `per_env` configurations: each environment's released configurations
/// (one or two) made distinct by an extra option no environment reads, as a generator of test
/// inputs would vary them.
fn matrix(sample: &[Cell], envs: usize, per_env: usize) -> Vec<Cell> {
    let mut names: Vec<&str> = sample.iter().map(|c| c.env_name.as_str()).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names.into_iter().take(envs) {
        let own: Vec<&Cell> = sample.iter().filter(|c| c.env_name == name).collect();
        for i in 0..per_env {
            let cell = own[i % own.len()];
            let (head, options) = cell.config.split_once('@').expect("configurations are Name@{json}");
            let config = match serde_json::from_str::<serde_json::Value>(options) {
                Ok(serde_json::Value::Object(mut map)) => {
                    map.insert("codegym_copy".into(), i.into());
                    format!("{head}@{}", serde_json::Value::Object(map))
                }
                _ => cell.config.clone(),
            };
            out.push(Cell { config, ..cell.clone() });
        }
    }
    out
}

/// Writes `cells` as a release (envs.jsonl + tasks.jsonl) in `dir` and imports it into `data`.
fn write_release(cells: &[Cell], data: &Dataset, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut envs, mut tasks) = (String::new(), String::new());
    let mut seen = std::collections::HashSet::new();
    for cell in cells {
        if seen.insert((&cell.source, &cell.env_name)) {
            let row = serde_json::json!({ "source": cell.source, "env_name": cell.env_name, "env_code": cell.env_code });
            envs.push_str(&format!("{row}\n"));
        }
        let (_, options) = cell.config.split_once('@').expect("configurations are Name@{json}");
        let ability = format!("codegym_v1@{}__{}@{options}", cell.source, cell.env_name);
        tasks.push_str(&format!("{}\n", serde_json::json!({ "ability": ability })));
    }
    std::fs::write(dir.join("envs.jsonl"), envs)?;
    std::fs::write(dir.join("tasks.jsonl"), tasks)?;
    let (envs, tasks) = (dir.join("envs.jsonl"), dir.join("tasks.jsonl"));
    crate::import_codegym::import(
        &crate::import_codegym::Release::new(&envs, &tasks),
        data,
        crate::import_codegym::SOURCE,
        ShardSelection::default(),
    )?;
    Ok(())
}

/// Our oracle cells alone, played as `verify` plays them: each environment's own `solve` as an
/// agent in its own interpreter, every call relayed by the host to the environment's. Returns the
/// result and the share of worker time spent outside the guest. The calls compared with the
/// baseline are the environment's own `step_count`, which is what the baseline reads.
fn run_ours(sandbox: &Sandbox, cells: &[Cell], threads: usize) -> Result<(SideResult, f64)> {
    let agents: Vec<AgentCell> = cells
        .iter()
        .map(|cell| AgentCell {
            env: EnvSource { code: &cell.env_code, name: &cell.env_name },
            config: &cell.config,
            solver: None,
            tools: None,
            seed: 0,
            variant: Variant::Primary,
        })
        .collect();
    let before = sandbox::counters();
    let started = Instant::now();
    let results = harness::run_agent_oracles(sandbox, &agents, Limits::default(), threads)?;
    let seconds = started.elapsed().as_secs_f64();
    let guest = sandbox::counters().guest_time - before.guest_time;
    let outside = 1.0 - guest.as_secs_f64() / (seconds * threads.min(cells.len()).max(1) as f64);
    let runs: Vec<Option<&OracleRun>> = results.iter().map(|r| r.run.as_ref().ok()).collect();
    let passed = runs.iter().flatten().filter(|r| r.passed).count();
    let calls = runs.iter().map(|r| r.map_or(-1, |r| r.env_calls.unwrap_or(r.oracle_calls))).collect();
    Ok((SideResult { seconds, passed, calls }, outside.max(0.0)))
}

/// The whole verification (every check) of the dataset at `data`, from scratch: its time and
/// summary.
fn run_whole(sandbox: &Sandbox, data: &Dataset, threads: usize, mode: ExecMode) -> Result<(f64, VerifySummary)> {
    let settings = VerifySettings { threads, mode, all: true, ..VerifySettings::default() };
    let started = Instant::now();
    let summary = crate::verify::verify(sandbox, data, &settings, ShardSelection::default(), None)?;
    Ok((started.elapsed().as_secs_f64(), summary))
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
            .args(["-I", "-S", "cell.py"])
            .arg(format!("env-{i}.py"))
            .arg(&cells[i].env_name)
            .arg(format!("config-{i}.txt"))
            .arg(dir)
            .output()
            .with_context(|| format!("cannot run the baseline interpreter `{python}`"))?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&output.stdout).ok();
        results.lock().unwrap()[i] =
            parsed.map(|v| (v["passed"].as_bool().unwrap_or(false), v["oracle_calls"].as_i64().unwrap_or(-1)));
    }
    Ok(())
}

/// `codegym bench stages`: the whole verification of each release in our images and with a whole
/// new interpreter per environment, with the time per stage and per environment; then the
/// generated slice at 1/100 of the paper's shape, extrapolated to the paper's scale.
pub fn stages(releases: &[(&Path, &str)], threads: usize) -> Result<()> {
    let sandbox = crate::runtime::ensure()?.sandbox()?;
    sandbox.prepare_images()?;
    println!("codegym bench stages: {threads} workers");
    for (dir, ext) in releases {
        let (envs, tasks) = (dir.join(format!("envs.{ext}")), dir.join(format!("tasks.{ext}")));
        if !envs.is_file() {
            println!("{}: skipped (no envs.{ext})", dir.display());
            continue;
        }
        let scratch = tempfile::tempdir()?;
        let data = imported_in(scratch.path(), &envs, &tasks)?;
        let oracle_only = cells(&data)?;
        let (oracle, _) = run_ours(&sandbox, &oracle_only, threads)?;
        let before = sandbox::counters();
        let (seconds, summary) = run_whole(&sandbox, &data, threads, ExecMode::Image)?;
        let after = sandbox::counters();
        let (fresh, _) = run_whole(&sandbox, &data, threads, ExecMode::Fresh)?;
        println!(
            "{}: {} environments, {} cells: {:.2} s ({:.1} environments/s, {:.1} ms per environment); oracle cells alone {:.2} s (every check costs {:.1}x)",
            dir.display(),
            summary.environments,
            summary.oracle_cells,
            seconds,
            summary.environments as f64 / seconds,
            seconds * 1000.0 * threads as f64 / summary.environments as f64,
            oracle.seconds,
            seconds / oracle.seconds
        );
        println!(
            "    isolation: a copy of the booted image per job {:.1} ms per environment; a whole new interpreter per job {:.1} ms ({:.1}x)",
            seconds * 1000.0 * threads as f64 / summary.environments as f64,
            fresh * 1000.0 * threads as f64 / summary.environments as f64,
            fresh / seconds
        );
        print_stage_shares(
            &summary,
            seconds,
            threads,
            after.guest_time.as_secs_f64() - before.guest_time.as_secs_f64(),
            after.instances - before.instances,
        );
        let audit = crate::verify::audit::audit(&data)?;
        let (played, caught) = audit.environments();
        println!("    exploit battery: {played} environments played, {caught} caught");
        for line in audit.lines() {
            println!("      {line}");
        }
    }
    let scratch = tempfile::tempdir()?;
    let slice = slice::generate(scratch.path())?;
    let (seconds, summary) = run_whole(&sandbox, slice.data(), threads, ExecMode::Image)?;
    println!(
        "generated slice at 1/100 of the paper's shape: {} environments, {} configurations, {} oracle candidates each: {:.1} s",
        summary.environments,
        summary.configs,
        slice::CANDIDATES,
        seconds
    );
    let total: u64 = summary.step_ms.values().sum();
    for (stage, ms) in &summary.step_ms {
        let hours = seconds * (*ms as f64 / total.max(1) as f64) * slice::SCALE / 3600.0;
        println!(
            "    {stage:<12} {:>5.1}% of the time; at the paper's scale on {threads} cores: {hours:.2} h",
            *ms as f64 * 100.0 / total.max(1) as f64
        );
    }
    println!(
        "    the paper's scale ({} environments, {} configurations) on {threads} cores: {:.2} h of verification",
        slice::PAPER_ENVS,
        slice::PAPER_CONFIGS,
        seconds * slice::SCALE / 3600.0
    );
    Ok(())
}

fn print_stage_shares(summary: &VerifySummary, seconds: f64, threads: usize, guest: f64, instances: u64) {
    let total: u64 = summary.step_ms.values().sum();
    for (stage, ms) in &summary.step_ms {
        println!("    {stage:<12} {:>8} ms  {:>5.1}%", ms, *ms as f64 * 100.0 / total.max(1) as f64);
    }
    let worker_time = seconds * threads as f64;
    println!(
        "    where the time goes: steps {:.1}%, rest of guest time (instances, framing) {:.1}%, outside the guest {:.1}%; {instances} interpreters",
        total as f64 / 10.0 / worker_time,
        (guest - total as f64 / 1000.0).max(0.0) * 100.0 / worker_time,
        (worker_time - guest).max(0.0) * 100.0 / worker_time,
    );
}
