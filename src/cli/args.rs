//! Command-line arguments (clap derive only: no file or network access happens here).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "codegym", version, about = "Turn coding problems into verified tool-use RL environments (the CodeGym method)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which shards a process handles, and how many a new dataset has.
#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// Handle only the virtual shards whose number is i mod N (`--shard i/N`), to spread one build
    /// over N processes (a Kubernetes Indexed Job, a Slurm job array); then run `codegym finalize`.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<crate::dataset::ShardSelection>,
    /// The number of virtual shards of a dataset created by this run (default 64); an existing
    /// dataset keeps its own.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
}

/// Options every verb that runs work takes.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Worker threads, 1 or more (default: all cores).
    #[arg(long, global = true, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Print nothing but results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline; with no arguments, on the bundled `data-samples/` into `build/`.
    Build(BuildArgs),
    /// Ingest a corpus of coding problems into `problems` (+ `rejects`), then preflight it.
    Ingest(IngestArgs),
    /// Import a released CodeGym dataset (environment table + task table).
    #[command(name = "import-codegym")]
    ImportCodegym(ImportArgs),
    /// (Re)run verification on what a dataset directory holds and update its tables.
    Verify(VerifyArgs),
    /// The steps that need every shard (near-duplicate groups, the train/validation split), after
    /// `--shard i/N` runs.
    Finalize(FinalizeArgs),
    /// Run SQL over every table of a dataset directory.
    Sql(SqlArgs),
    /// Serve the verified environments to trainers: OpenEnv (WebSocket sessions, MCP) and the
    /// CodeGym release's REST API, every tool call in the sandbox.
    Serve(ServeArgs),
    /// Write the kept configurations as training shards (codegym, verl or hf), with manifest.json.
    Export(ExportArgs),
    /// Run Python programs in the sandbox.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Provision or describe the sandbox runtime.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
    /// Benchmarks that print ratios against a baseline run side by side.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build configuration (TOML). Default: data-samples/codegym.toml when there is no --corpus.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The corpus (Parquet or JSON Lines); overrides the configuration's.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Column layout of the corpus: kodcode, codegym or generic.
    #[arg(long)]
    pub preset: Option<crate::corpus::Preset>,
    /// LLM backend: `openai` (OPENAI_BASE_URL, OPENAI_API_KEY) or `replay:DIR`.
    #[arg(long)]
    pub llm: Option<crate::llm::BackendSpec>,
    /// Dataset to write: a directory or an `s3://`, `gs://`, `az://` URL (default: the
    /// configuration's, else `build`).
    #[arg(long)]
    pub data: Option<String>,
    /// Time limit of one problem's preflight, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    pub preflight_timeout_ms: u64,
    /// Keep only configurations that a candidate written from the task text and tool docs alone
    /// passes (`task_configs.independent_pass`): the reference and the task text must agree.
    #[arg(long)]
    pub require_independent: bool,
    #[command(flatten)]
    pub shards: ShardArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The corpus: a Parquet or JSON Lines file.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Column layout: kodcode, codegym or generic.
    #[arg(long, default_value = "kodcode")]
    pub preset: crate::corpus::Preset,
    /// Take a field from another column: FIELD=COLUMN (fields: source_id, question, solution,
    /// tests, entry_point, difficulty, subset, license). `tests` may be a list of assert lines
    /// (MBPP's `test_list`); `entry_point` is the function a `check(candidate)` test is called on
    /// (HumanEval's). Repeatable.
    #[arg(long = "map", value_name = "FIELD=COLUMN", value_parser = field_map)]
    pub maps: Vec<(crate::corpus::Field, String)>,
    /// Dataset to write: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    /// The `source` recorded for these problems (default: the file's stem).
    #[arg(long)]
    pub source: Option<String>,
    /// The licence of problems whose rows carry none.
    #[arg(long)]
    pub license: Option<String>,
    /// Do not run reference solutions against their tests.
    #[arg(long)]
    pub no_preflight: bool,
    /// Time limit of one problem's preflight, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    pub preflight_timeout_ms: u64,
    #[command(flatten)]
    pub shards: ShardArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The environment table (Parquet or JSON Lines: source, env_name, env_code).
    #[arg(long)]
    pub envs: PathBuf,
    /// The task table (Parquet or JSON Lines: ability, prompt, extra_info, ...).
    #[arg(long)]
    pub tasks: PathBuf,
    /// Solvers written from the task text and tool docs alone (Parquet or JSON Lines: source,
    /// env_name, solver), run as oracle candidates: verification records whether each
    /// configuration is passed by one (`independent_pass`).
    #[arg(long, value_name = "FILE")]
    pub solvers: Option<PathBuf>,
    /// The `source` recorded for these environments.
    #[arg(long, default_value = crate::import_codegym::SOURCE)]
    pub source: String,
    /// Dataset to write: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    #[command(flatten)]
    pub shards: ShardArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Dataset to verify: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    /// Time limit per reference-answer or oracle cell, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub cell_timeout_ms: u64,
    /// Memory limit per cell, in MiB.
    #[arg(long, default_value_t = 100)]
    pub cell_memory_mb: usize,
    /// Boot every job's interpreter from scratch instead of copying the booted image (slower;
    /// the isolation is the same: every job has an interpreter of its own either way).
    #[arg(long)]
    pub fresh: bool,
    /// Re-verify every environment (default: only those not verified yet, so a killed run
    /// resumes where it stopped and a nightly build redoes only what changed).
    #[arg(long)]
    pub all: bool,
    /// Curate for the hard variant: up to 512 oracle calls, reference-model pass rate <= 1/8
    /// (curation is recomputed for every configuration on every run).
    #[arg(long)]
    pub hard: bool,
    /// Reference-model pass rates (Parquet or JSON Lines: `score` with `config_id` or `config`).
    #[arg(long, value_name = "FILE")]
    pub reference_scores: Option<PathBuf>,
    /// Keep only configurations that a candidate written from the task text and tool docs alone
    /// passes (`task_configs.independent_pass`): the reference and the task text must agree.
    #[arg(long)]
    pub require_independent: bool,
    #[command(flatten)]
    pub shards: ShardArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct FinalizeArgs {
    /// Dataset to finalize: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Dataset to query: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    /// Output format: table, csv or json (JSON Lines).
    #[arg(long, default_value = "table")]
    pub format: crate::query::OutputFormat,
    /// A file holding the SQL to run (e.g. queries/verification_summary.sql).
    #[arg(long, conflicts_with = "query")]
    pub file: Option<PathBuf>,
    /// The SQL to run.
    #[arg(required_unless_present = "file")]
    pub query: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Dataset whose verified environments to serve: a directory or an `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    /// Address of the OpenEnv server (WS /ws, POST /mcp, GET /health /metadata /schema /openapi.json).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: std::net::SocketAddr,
    /// Address of the CodeGym REST API (/get_instance, /start, /step, ...).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub codegym_addr: std::net::SocketAddr,
    /// Sessions open at once at most; past it new sessions get OpenEnv's capacity error.
    #[arg(long, default_value_t = 16384)]
    pub max_sessions: usize,
    /// Interpreters alive at once at most (about 6 MiB each); other sessions wait as pickled state.
    #[arg(long, default_value_t = crate::serve::DEFAULT_MAX_LIVE)]
    pub max_live: usize,
    /// Tool calls per episode; past them the episode is done with reward 0 (512 for the hard variant).
    #[arg(long, default_value_t = 256)]
    pub max_steps: u32,
    /// Time limit of one tool call, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    pub step_timeout_ms: u64,
    /// Memory one tool call may add, in MiB.
    #[arg(long, default_value_t = 100)]
    pub memory_mb: usize,
    /// Close a session unused this long, in seconds (trainers such as verl never close theirs).
    #[arg(long, default_value_t = 10800)]
    pub idle_timeout_s: u64,
    /// Give back the interpreter of a session unused this long, in seconds (it keeps its state).
    #[arg(long, default_value_t = 30)]
    pub interpreter_idle_s: u64,
    /// Cut observations longer than this, in KiB (the cut is said in the observation).
    #[arg(long, default_value_t = 64)]
    pub max_observation_kb: usize,
    /// The most pickled state kept for a session, in KiB: a step that leaves more fails, and the
    /// session keeps its last good state.
    #[arg(long, default_value_t = 1024)]
    pub max_state_kb: usize,
    /// Serve every configuration of a verified environment, not only the kept ones.
    #[arg(long)]
    pub all_configs: bool,
    /// Record every episode into the `episodes` table of this dataset (a directory or a URL).
    #[arg(long, value_name = "DIR")]
    pub record: Option<String>,
    /// Token every request must carry (`Authorization: Bearer TOKEN` or `?token=`); required to
    /// bind a non-loopback address.
    #[arg(long, env = crate::env::CODEGYM_SERVE_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Dataset to read (verified, and finalized when built shard by shard): a directory or an
    /// `s3://`, `gs://`, `az://` URL.
    #[arg(long)]
    pub data: String,
    /// codegym (the CodeGym release's shape), verl, or hf (a Hugging Face dataset repository).
    #[arg(long)]
    pub format: crate::export::Format,
    /// Directory to write; it appears whole, or not at all.
    #[arg(long)]
    pub out: PathBuf,
    /// Which split to export: train, validation or all.
    #[arg(long, default_value = "all")]
    pub split: crate::export::SplitSelection,
    /// The hard variant's curation (up to 512 oracle calls, reference-model pass rate <= 1/8),
    /// with a tool-call cap of 512.
    #[arg(long)]
    pub hard: bool,
    /// Export only configurations that a candidate written from the task text alone passes
    /// (`task_configs.independent_pass`), whatever the dataset was curated with.
    #[arg(long)]
    pub require_independent: bool,
    /// hf: the largest Parquet shard, in MB (fractions allowed).
    #[arg(long, default_value_t = 500.0)]
    pub max_shard_mb: f64,
    /// Replace --out when it exists and is not empty.
    #[arg(long)]
    pub overwrite: bool,
    /// verl: the address of `codegym serve --codegym-addr` the tool module calls.
    #[arg(long, default_value = crate::export::DEFAULT_SERVER_URL)]
    pub server_url: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run one Python program in a fresh sandboxed interpreter.
    Run(SandboxRunArgs),
}

#[derive(Debug, Args)]
pub struct SandboxRunArgs {
    /// The program.
    pub file: PathBuf,
    /// Time limit in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Memory limit in MiB (on top of the interpreter itself).
    #[arg(long, default_value_t = 100)]
    pub memory_mb: usize,
    /// Cap on each of stdout and stderr, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub output_kb: usize,
    /// A file to feed the program as standard input.
    #[arg(long)]
    pub stdin: Option<PathBuf>,
    /// Seed of the program's randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object: verdict, exit_code, stdout, stderr, duration_ms.
    #[arg(long)]
    pub json: bool,
    /// Print only the program's own output: not the line naming a verdict other than `ok`.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Download (pip), verify and cache the runtime, and compile its module.
    Fetch(RuntimeFetchArgs),
    /// Describe the runtime: version, hash, where it and its compiled module are cached.
    Info,
}

#[derive(Debug, Args)]
pub struct RuntimeFetchArgs {
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Our verification vs. the released pipeline's mechanism (a python3 process per cell).
    Verify(BenchVerifyArgs),
    /// Ingest of a generated corpus: problems per second and peak memory, vs. pyarrow + Python.
    Ingest(BenchIngestArgs),
    /// The whole verification (every stage) on the released sample and on our samples, with
    /// the time per stage, vs. running the oracle cells alone.
    Stages(BenchStagesArgs),
    /// The OpenAI-compatible client against a local server that answers after a delay, vs. a
    /// Python thread-pool client: requests per second and the client's cost per request.
    Llm(BenchLlmArgs),
    /// A first build and a rebuild with 1% new problems, and verification of 1k/5k/20k imported
    /// environments: time, bytes written and peak memory, vs. the single-file layout.
    Build(BenchBuildArgs),
    /// Export of a generated dataset to hf and verl: rows per second and peak memory, vs. a
    /// pyarrow + pandas script writing the same files.
    Export(BenchExportArgs),
    /// `codegym serve` vs. the release's mechanism (a forked process per step): steps per second
    /// at saturation, step latency with pausing agents (alone and beside hostile sessions), memory
    /// of idle sessions.
    Serve(BenchServeArgs),
}

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// A built dataset whose kept configurations (with their oracle trajectories) are replayed.
    #[arg(long, default_value = "build")]
    pub data: String,
    /// Sessions replaying with no pause (saturation).
    #[arg(long, default_value_t = 256)]
    pub sessions: usize,
    /// Steps each side runs at saturation.
    #[arg(long, default_value_t = 20000)]
    pub steps: usize,
    /// Sessions that pause between steps (latency).
    #[arg(long, default_value_t = 64)]
    pub paced_sessions: usize,
    /// Pause of a paced session between steps, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub pause_ms: u64,
    /// How long the paced sessions run, in seconds.
    #[arg(long, default_value_t = 30)]
    pub paced_seconds: u64,
    /// Idle sessions whose memory is measured.
    #[arg(long, default_value_t = 10000)]
    pub idle_sessions: usize,
    /// Sessions that spin every step to the 10 s timeout beside the paced ones, whose latency is
    /// measured again (0 skips it).
    #[arg(long, default_value_t = 4)]
    pub hostile_sessions: usize,
    /// The Python of the baseline.
    #[arg(long, default_value = "python3")]
    pub python: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BenchBuildArgs {
    /// Problems in the generated corpus of the first build.
    #[arg(long, default_value_t = 2000)]
    pub problems: usize,
    /// Imported environments to verify, one size after another.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
    pub verify: Vec<usize>,
    /// The single-file layout is measured up to this many environments (it writes the square).
    #[arg(long, default_value_t = 5000)]
    pub single_file_up_to: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BenchExportArgs {
    /// Task configurations in the generated dataset.
    #[arg(long, default_value_t = 1_000_000)]
    pub configs: usize,
    /// Environments they belong to.
    #[arg(long, default_value_t = 100_000)]
    pub envs: usize,
    /// The Python of the baseline (needs pyarrow and pandas; skipped without them).
    #[arg(long, default_value = "python3")]
    pub python: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BenchLlmArgs {
    /// Requests to send.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// How long the server takes to answer, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub delay_ms: u64,
    /// The Python of the baseline.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct BenchVerifyArgs {
    /// The released sample (envs.parquet + tasks.parquet).
    #[arg(long, default_value = "../shared/fixtures/codegym-sample")]
    pub fixtures: PathBuf,
    /// Environments in the method-shaped matrix.
    #[arg(long, default_value_t = 20)]
    pub matrix_envs: usize,
    /// Configurations per environment in the matrix.
    #[arg(long, default_value_t = 30)]
    pub matrix_configs: usize,
    /// Repetitions of each measurement (the best is reported).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// The native interpreter of the baseline.
    #[arg(long, default_value = "python3")]
    pub python: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Problems in the generated corpus.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// The Python of the baseline (needs pyarrow; skipped without it).
    #[arg(long, default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct BenchStagesArgs {
    /// The released sample (envs.parquet + tasks.parquet).
    #[arg(long, default_value = "../shared/fixtures/codegym-sample")]
    pub fixtures: PathBuf,
    /// Our sample release (envs.jsonl + tasks.jsonl).
    #[arg(long, default_value = "data-samples/codegym")]
    pub samples: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `--threads N`: a count of worker threads, which 0 is not (it would run nothing, or silently
/// mean 1).
fn thread_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 threads cannot run anything; give 1 or more, or leave --threads out to use every core".into()),
        Ok(threads) => Ok(threads),
        Err(_) => Err(format!("`{text}` is not a number of threads; give a whole number, 1 or more")),
    }
}

/// `--map FIELD=COLUMN`.
fn field_map(text: &str) -> Result<(crate::corpus::Field, String), String> {
    let (field, column) = text.split_once('=').ok_or_else(|| format!("`{text}`: expected FIELD=COLUMN"))?;
    Ok((field.parse()?, column.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_refused_on_every_verb_that_takes_threads() {
        assert_eq!(thread_count("3"), Ok(3));
        assert!(thread_count("0").unwrap_err().contains("1 or more"));
        assert!(thread_count("x").unwrap_err().contains("`x`"));
        for verb in ["build", "ingest", "import-codegym", "verify", "finalize", "sql", "serve", "export"] {
            let err = Cli::try_parse_from(["codegym", verb, "--threads", "0"]).unwrap_err().to_string();
            assert!(err.contains("0 threads cannot run anything"), "{verb}: {err}");
        }
    }
}
