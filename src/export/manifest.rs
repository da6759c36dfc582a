//! `manifest.json`, written last: what the export is (format and its version, codegym's version,
//! the prompt version, the selection), where it came from (the source dataset's last run id per
//! command), its row counts per split, and the SHA-256 and size of every other file, so a copy can
//! be checked. Nothing in it depends on the clock or the machine, so the same dataset gives the
//! same manifest.

use super::ExportError;
use super::settings::ExportSettings;
use super::source::Plan;
use crate::dataset::{Dataset, Table};
use arrow::array::AsArray;
use arrow::datatypes::TimestampMillisecondType;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) const FILE_NAME: &str = "manifest.json";

/// One file of the export.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileEntry {
    /// Relative to the export's root, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Serialize)]
struct Manifest<'a> {
    format: &'a str,
    format_version: u32,
    codegym_version: &'a str,
    prompt_version: &'a str,
    split: &'a str,
    hard: bool,
    plugin_call_max_round: i64,
    /// The source dataset's last run id per command (`build`, `verify`, ...).
    source_runs: BTreeMap<String, String>,
    rows: BTreeMap<&'a str, u64>,
    total_rows: u64,
    files: &'a [FileEntry],
}

/// Hashes every file under `dir` and writes the manifest beside them; returns every file written,
/// the manifest included.
pub(crate) fn write(dir: &Path, settings: &ExportSettings, plan: &Plan) -> Result<Vec<FileEntry>, ExportError> {
    let mut paths = Vec::new();
    list_files(dir, &mut paths)?;
    paths.sort();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
        .map_err(|e| ExportError::io(dir, std::io::Error::other(e)))?;
    let mut files: Vec<FileEntry> = pool.install(|| paths.par_iter().map(|path| entry(dir, path)).collect::<Result<_, _>>())?;
    let manifest = Manifest {
        format: settings.format.name(),
        format_version: settings.format.version(),
        codegym_version: env!("CARGO_PKG_VERSION"),
        prompt_version: super::prompts::VERSION,
        split: settings.splits.name(),
        hard: settings.hard,
        plugin_call_max_round: settings.plugin_call_max_round(),
        source_runs: last_runs(&plan.data)?,
        rows: plan.rows.iter().map(|(split, n)| (split.name(), *n)).collect(),
        total_rows: plan.total_rows(),
        files: &files,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("the manifest serializes") + "\n";
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, &text).map_err(|e| ExportError::io(&path, e))?;
    files.push(FileEntry { path: FILE_NAME.into(), bytes: text.len() as u64, sha256: hex(&Sha256::digest(text.as_bytes())) });
    Ok(files)
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ExportError> {
    for entry in std::fs::read_dir(dir).map_err(|e| ExportError::io(dir, e))? {
        let path = entry.map_err(|e| ExportError::io(dir, e))?.path();
        if path.is_dir() {
            list_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn entry(root: &Path, path: &Path) -> Result<FileEntry, ExportError> {
    let mut file = std::fs::File::open(path).map_err(|e| ExportError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| ExportError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(FileEntry { path: parts.join("/"), bytes, sha256: hex(&hasher.finalize()) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The latest run id of each command in the dataset's `runs` table.
fn last_runs(data: &Dataset) -> Result<BTreeMap<String, String>, ExportError> {
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for batch in data.scan(Table::Runs, &["run_id", "command", "started_at"], 1024)? {
        let batch = batch?;
        let (ids, commands) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        let started = batch.column(2).as_primitive::<TimestampMillisecondType>();
        for i in 0..batch.num_rows() {
            let candidate = (started.value(i), ids.value(i).to_string());
            let slot = latest.entry(commands.value(i).to_string()).or_insert_with(|| candidate.clone());
            if candidate > *slot {
                *slot = candidate;
            }
        }
    }
    Ok(latest.into_iter().map(|(command, (_, id))| (command, id)).collect())
}
