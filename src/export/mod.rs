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
mod manifest;
mod outdir;
mod plots;
mod prompts;
mod rows;
mod settings;
mod source;
mod spill;
mod verl;

pub use settings::{DEFAULT_SERVER_URL, ExportSettings, Format, Split, SplitSelection};

use crate::dataset::DatasetError;
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
    #[error("`{}` is not a codegym dataset (it has none of the table folders)", data.display())]
    NotADataset { data: PathBuf },
    #[error("`{}` has no environments yet", data.display())]
    NoEnvironments { data: PathBuf },
    #[error("{pending} of {total} environments in `{}` are not verified yet", data.display())]
    NotVerified { data: PathBuf, pending: u64, total: u64 },
    #[error("--out `{}` is inside --data `{}`", out.display(), data.display())]
    OutInsideData { out: PathBuf, data: PathBuf },
    #[error("--data `{}` is inside --out `{}`", data.display(), out.display())]
    DataInsideOut { out: PathBuf, data: PathBuf },
    #[error("--out `{}` exists and is not empty", out.display())]
    OutNotEmpty { out: PathBuf },
    #[error("--out `{}` is not a directory", out.display())]
    OutNotADirectory { out: PathBuf },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("I/O error on `{}`: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{}`: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("cannot build rows of `{}`: {source}", path.display())]
    Arrow { path: PathBuf, source: arrow::error::ArrowError },
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
                format!("run `codegym build --data {0}` or `codegym import-codegym --data {0}` first", data.display())
            }
            ExportError::NotVerified { data, .. } => format!("run `codegym verify --data {}` first", data.display()),
            ExportError::OutInsideData { .. } | ExportError::DataInsideOut { .. } => {
                "choose an --out outside the dataset directory".into()
            }
            ExportError::OutNotEmpty { .. } => "pass --overwrite to replace it, or choose another --out".into(),
            ExportError::OutNotADirectory { .. } => "choose an --out that is a directory or does not exist".into(),
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
/// Every call's error aborts the export (and the temporary directory goes with it).
pub(crate) trait FormatWriter {
    /// The `(system, user)` messages of the rows of an environment.
    fn prompt(&self, env: &EnvMeta, text: &EnvText<'_>) -> (String, String);
    /// One exported environment, in `env_id` order, before any row.
    fn environment(&mut self, env: &EnvMeta, text: &EnvText<'_>) -> Result<(), ExportError>;
    /// A batch of rows in export order, each with its environment's `(system, user)` messages.
    fn rows(&mut self, rows: &[ConfigRow<'_>], prompts: &[(&str, &str)]) -> Result<(), ExportError>;
    /// Closes every file.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

/// Runs an export: checks the inputs, writes every file under a temporary directory, hashes them
/// into `manifest.json`, and renames the directory to `settings.out`.
pub fn export(settings: &ExportSettings, reporter: Option<&dyn RowReporter>) -> Result<ExportSummary, ExportError> {
    settings.check_paths()?;
    let plan = source::plan(settings)?;
    let staged = outdir::OutputDir::create(&settings.out)?;
    let mut writer: Box<dyn FormatWriter> = match settings.format {
        Format::Codegym => Box::new(codegym::Writer::create(staged.path(), settings, &plan)?),
        Format::Verl => Box::new(verl::Writer::create(staged.path(), settings, &plan)?),
        Format::Hf => Box::new(hf::Writer::create(staged.path(), settings, &plan)?),
    };
    let mut store = spill::PromptStore::create(staged.path().parent().unwrap_or(Path::new(".")), plan.envs.len())?;
    source::scan_environments(&settings.data, &plan, |env, text| {
        let (system, user) = writer.prompt(env, text);
        store.put(env, &system, &user)?;
        writer.environment(env, text)
    })?;
    write_rows(settings, &plan, &store, writer.as_mut(), reporter)?;
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

fn write_rows(
    settings: &ExportSettings,
    plan: &Plan,
    store: &spill::PromptStore,
    writer: &mut dyn FormatWriter,
    reporter: Option<&dyn RowReporter>,
) -> Result<(), ExportError> {
    if let Some(reporter) = reporter {
        reporter.on_start(plan.total_rows());
    }
    let mut loaded = spill::Loaded::default();
    source::scan_rows(&settings.data, plan, |rows| {
        store.load(rows, &mut loaded)?;
        writer.rows(rows, &loaded.pairs()?)?;
        if let Some(reporter) = reporter {
            reporter.on_rows_written(rows.len() as u64);
        }
        Ok(())
    })
}
