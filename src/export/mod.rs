//! `codegym export`: the kept configurations of a verified dataset, written as training shards in
//! the shapes trainers read: the CodeGym release's ([`codegym`]), verl's ([`verl`]) and a Hugging
//! Face dataset repository ([`hf`]).
//!
//! An export reads the dataset in three streaming passes ([`source`]), so its memory is bounded
//! by a batch of rows, not by the dataset: what to export (small columns), the exported
//! environments (their rendered prompts go to a spill file, [`spill`]), then the rows, handed to the
//! format's [`FormatWriter`]. Everything is written under a temporary directory beside `--out`
//! ([`outdir`]) and renamed into place after [`manifest`] has hashed every file. The same dataset
//! gives byte-identical files: rows come in the dataset's order, and nothing written depends on
//! the clock, the machine or the thread count.
//!
//! It never writes into the dataset, and knows nothing of the sandbox or the LLM.

mod card;
mod codegym;
mod hf;
mod license;
mod manifest;
mod outdir;
mod plots;
mod prompts;
mod rows;
mod settings;
mod source;
mod spill;
mod verl;

pub use crate::tables::Split;
pub use settings::{DEFAULT_SERVER_URL, ExportSettings, Format, SplitSelection};

use crate::dataset::DatasetError;
use arrow::array::RecordBatch;
use source::{ConfigRow, EnvMeta, EnvText, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Receives progress while rows are written (the CLI's progress bar).
pub trait RowReporter: Sync {
    /// The export will write `rows` rows.
    fn on_start(&self, rows: u64);
    /// `rows` more rows were written.
    fn on_rows_written(&self, rows: u64);
}

/// Why an export did not happen. Bad inputs are found before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown format `{given}`; the formats are: codegym, verl, hf")]
    UnknownFormat { given: String },
    #[error("unknown split `{given}`; the splits are: train, validation, all")]
    UnknownSplit { given: String },
    #[error("`{data}` is not a codegym dataset (it has no manifest.json and none of the table folders)")]
    NotADataset { data: String },
    #[error("`{data}` has no environments yet")]
    NoEnvironments { data: String },
    #[error("{pending} of {total} environments in `{data}` are not verified yet")]
    NotVerified { data: String, pending: u64, total: u64 },
    #[error("{unsplit} of {total} environments in `{data}` have no train/validation split yet")]
    NotFinalized { data: String, unsplit: u64, total: u64 },
    #[error("--out `{}` is inside --data `{data}`", out.display())]
    OutInsideData { out: PathBuf, data: String },
    #[error("--data `{data}` is inside --out `{}`", out.display())]
    DataInsideOut { out: PathBuf, data: String },
    #[error("--out `{}` exists and is not empty", out.display())]
    OutNotEmpty { out: PathBuf },
    #[error("--out `{}` is not a directory", out.display())]
    OutNotADirectory { out: PathBuf },
    #[error("--out `{}` changed while the export ran (it appeared, went, or was replaced or written to); it was left as it is", out.display())]
    OutChanged { out: PathBuf },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("I/O error on `{}`: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{}`: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("cannot build rows of `{}`: {source}", path.display())]
    Arrow { path: PathBuf, source: arrow::error::ArrowError },
    #[error("the writer stopped before the rows were all written; this is a bug in codegym")]
    WriterStopped,
}

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ExportError::Io { path: path.into(), source }
    }

    /// What the user can do about it, for errors caused by the input.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ExportError::UnknownFormat { .. } => "pass --format codegym, --format verl or --format hf".into(),
            ExportError::UnknownSplit { .. } => "pass --split train, --split validation or --split all".into(),
            ExportError::NotADataset { .. } => {
                "point --data at a directory written by `codegym build` or `codegym import-codegym`".into()
            }
            ExportError::NoEnvironments { data } => {
                format!("run `codegym build --data {data}` or `codegym import-codegym --data {data}` first")
            }
            ExportError::NotVerified { data, .. } => format!("run `codegym verify --data {data}` first"),
            ExportError::NotFinalized { data, .. } => {
                format!("the shards were built separately: run `codegym finalize --data {data}` once they are all done")
            }
            ExportError::OutInsideData { .. } | ExportError::DataInsideOut { .. } => {
                "choose an --out outside the dataset directory".into()
            }
            ExportError::OutNotEmpty { .. } => "pass --overwrite to replace it, or choose another --out".into(),
            ExportError::OutNotADirectory { .. } => "choose an --out that is a directory or does not exist".into(),
            ExportError::OutChanged { .. } => "check what else writes there, then export again".into(),
            _ => return None,
        })
    }
}

/// The user message of the `codegym` and `hf` formats before the task text (the export
/// benchmark's baseline builds the same rows).
pub fn codegym_user_prefix() -> String {
    prompts::codegym_user("")
}

/// The user message of the `verl` format before the task text.
pub fn verl_user_prefix() -> String {
    prompts::verl_user("")
}

/// The system message of the `verl` format before the tool docs.
pub fn verl_system_prefix() -> String {
    prompts::verl_system("")
}

/// The `verl` format's `tool_config.yaml` for a server at `server_url`.
pub fn verl_tool_config(server_url: &str) -> String {
    verl::tool_config(server_url)
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub format: Format,
    /// Rows per exported split.
    pub rows: BTreeMap<Split, u64>,
    /// Files written, the manifest included.
    pub files: usize,
    pub bytes: u64,
}

impl ExportSummary {
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// A format's writer: receives the exported environments, then the rows, then finishes its files.
/// Every call's error aborts the export (and the temporary directory goes with it). It writes on
/// its own thread while the next rows are read and built, hence `Send`.
pub(crate) trait FormatWriter: Send {
    /// The `(system, user)` messages of the rows of an environment.
    fn prompt(&self, env: &EnvMeta, text: &EnvText<'_>) -> (String, String);
    /// One exported environment, in `env_id` order, before any row.
    fn environment(&mut self, env: &EnvMeta, text: &EnvText<'_>) -> Result<(), ExportError>;
    /// The next rows, in export order, as one batch per split ([`row_batches`]).
    fn rows(&mut self, batches: Vec<(Split, RecordBatch)>) -> Result<(), ExportError>;
    /// Closes every file.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

/// The format's rows of `config_rows`, one batch per split: `hf` has the release's row shape.
fn row_batches(
    settings: &ExportSettings,
    config_rows: &[ConfigRow<'_>],
    prompts: &[(&str, &str)],
) -> Result<Vec<(Split, RecordBatch)>, ExportError> {
    let max_round = settings.plugin_call_max_round();
    let build = match settings.format {
        Format::Verl => verl::batch,
        Format::Codegym | Format::Hf => codegym::batch,
    };
    rows::batches_by_split(config_rows, prompts, |r, p, split| build(r, p, split, max_round))
}

/// Runs an export: checks the inputs, writes every file under a temporary directory, hashes them
/// into `manifest.json`, and renames the directory to `settings.out`.
pub fn export(settings: &ExportSettings, reporter: Option<&dyn RowReporter>) -> Result<ExportSummary, ExportError> {
    let target = settings.check_paths()?;
    let plan = source::plan(settings)?;
    let staged = outdir::OutputDir::create(&target)?;
    let mut writer: Box<dyn FormatWriter> = match settings.format {
        Format::Codegym => Box::new(codegym::Writer::create(staged.path(), &plan)?),
        Format::Verl => Box::new(verl::Writer::create(staged.path(), settings, &plan)?),
        Format::Hf => Box::new(hf::Writer::create(staged.path(), settings, &plan)?),
    };
    let mut store = spill::PromptStore::create(staged.path().parent().unwrap_or(Path::new(".")), plan.envs.len())?;
    // verl's rows need the environments' prompts only; `codegym serve` holds their code.
    let with_code = settings.format != Format::Verl;
    source::scan_environments(&plan, with_code, |env, text| {
        let (system, user) = writer.prompt(env, text);
        store.put(env, &system, &user)?;
        writer.environment(env, text)
    })?;
    if let Some(reporter) = reporter {
        reporter.on_start(plan.total_rows());
    }
    let writer = write_rows(settings, &plan, &store, writer, reporter)?;
    writer.finish()?;
    let files = manifest::write(staged.path(), settings, &plan)?;
    let out = staged.commit()?;
    Ok(ExportSummary {
        out,
        format: settings.format,
        rows: plan.rows.clone(),
        files: files.len(),
        bytes: files.iter().map(|f| f.bytes).sum(),
    })
}

/// Reads, builds and writes the rows. With more than one thread, the writer (Parquet encoding and
/// compression, the larger half of the work) runs on a thread of its own, a couple of batches
/// behind; the batches reach it in order, so the files are the same either way.
fn write_rows(
    settings: &ExportSettings,
    plan: &Plan,
    store: &spill::PromptStore,
    mut writer: Box<dyn FormatWriter>,
    reporter: Option<&dyn RowReporter>,
) -> Result<Box<dyn FormatWriter>, ExportError> {
    let mut loaded = spill::Loaded::default();
    let mut build = |rows: &[ConfigRow<'_>]| -> Result<Vec<(Split, RecordBatch)>, ExportError> {
        store.load(rows, &mut loaded)?;
        let batches = row_batches(settings, rows, &loaded.pairs()?)?;
        if let Some(reporter) = reporter {
            reporter.on_rows_written(rows.len() as u64);
        }
        Ok(batches)
    };
    if settings.threads < 2 {
        source::scan_rows(plan, |rows| writer.rows(build(rows)?))?;
        return Ok(writer);
    }
    std::thread::scope(|scope| {
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<(Split, RecordBatch)>>(2);
        let writing = scope.spawn(move || -> Result<Box<dyn FormatWriter>, ExportError> {
            for batch in batches {
                writer.rows(batch)?;
            }
            Ok(writer)
        });
        let built = source::scan_rows(plan, |rows| {
            // A closed channel means the writer failed: stop reading; its error is the one to report.
            to_writer.send(build(rows)?).map_err(|_| ExportError::WriterStopped)
        });
        drop(to_writer);
        let written = writing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (written, built) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(writer), Ok(())) => Ok(writer),
        }
    })
}
