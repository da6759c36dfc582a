//! What an export was asked for, resolved from the command line: the format, the splits, the
//! curation variant, where to write. Parsing the names and checking the paths happen here, before
//! anything is read or written, so a bad input costs nothing and leaves nothing behind.

use super::ExportError;
use super::outdir::{self, Target};
use crate::tables::Split;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The released CodeGym instance shape, JSON Lines and Parquet, with the environment files.
    Codegym,
    /// verl's RL dataset (`train.parquet` / `validation.parquet`), tool config and tool module.
    Verl,
    /// A Hugging Face dataset repository as a directory, with its card.
    Hf,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Codegym, Format::Verl, Format::Hf];

    pub fn name(self) -> &'static str {
        match self {
            Format::Codegym => "codegym",
            Format::Verl => "verl",
            Format::Hf => "hf",
        }
    }

    /// The version of the format's layout, recorded in the manifest: bump it when a file or
    /// column changes name, type or meaning.
    pub fn version(self) -> u32 {
        1
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| ExportError::UnknownFormat { given: s.to_string() })
    }
}

/// Which splits to export (`--split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitSelection {
    One(Split),
    All,
}

impl SplitSelection {
    /// The splits selected, in order.
    pub fn splits(self) -> Vec<Split> {
        match self {
            SplitSelection::One(split) => vec![split],
            SplitSelection::All => Split::ALL.to_vec(),
        }
    }

    /// Whether rows of `split` are exported (a held-out environment never is).
    pub fn includes(self, split: Split) -> bool {
        self.splits().contains(&split)
    }

    pub fn name(self) -> &'static str {
        match self {
            SplitSelection::One(split) => split.name(),
            SplitSelection::All => "all",
        }
    }
}

impl FromStr for SplitSelection {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(SplitSelection::All),
            _ => Split::ALL
                .into_iter()
                .find(|split| split.name() == s)
                .map(SplitSelection::One)
                .ok_or_else(|| ExportError::UnknownSplit { given: s.to_string() }),
        }
    }
}

/// The verl tool module's default server: `codegym serve --codegym-addr` on this machine.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:8001";

/// A resolved `codegym export`.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// The dataset read: a path or an object store URL.
    pub data: String,
    /// The directory written (atomically).
    pub out: PathBuf,
    pub format: Format,
    pub splits: SplitSelection,
    /// Export the hard variant's curation (up to 512 oracle calls, reference pass rate <= 1/8).
    pub hard: bool,
    /// Export only configurations an independent candidate passes (`independent_pass`).
    pub require_independent: bool,
    /// `hf`: the largest Parquet shard, in bytes.
    pub max_shard_bytes: u64,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    pub threads: usize,
    /// `verl`: where the tool module finds `codegym serve`'s CodeGym API.
    pub server_url: String,
}

impl ExportSettings {
    /// The per-trajectory tool-call cap written into every row.
    pub fn plugin_call_max_round(&self) -> i64 {
        if self.hard { 512 } else { 256 }
    }

    /// Resolves `out` (see [`outdir::resolve`]) and refuses one that would overlap a local
    /// dataset or clobber a directory without `--overwrite`; returns what the commit must find
    /// unchanged.
    pub(crate) fn check_paths(&self) -> Result<Target, ExportError> {
        let out = outdir::resolve(&self.out);
        if let Some(data) = crate::dataset::local_path(&self.data) {
            let data = outdir::resolve(data);
            if out.starts_with(&data) {
                return Err(ExportError::OutInsideData { out, data: self.data.clone() });
            }
            if data.starts_with(&out) {
                return Err(ExportError::DataInsideOut { out, data: self.data.clone() });
            }
        }
        let target = Target::prepare(out)?;
        let out = target.path();
        let non_empty = std::fs::read_dir(out).map(|mut entries| entries.next().is_some());
        match non_empty {
            Ok(true) if !self.overwrite => Err(ExportError::OutNotEmpty { out: out.to_path_buf() }),
            _ if out.exists() && !out.is_dir() => Err(ExportError::OutNotADirectory { out: out.to_path_buf() }),
            _ => Ok(target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(data: &Path, out: &Path) -> ExportSettings {
        ExportSettings {
            data: data.to_str().unwrap().into(),
            out: out.into(),
            format: Format::Hf,
            splits: SplitSelection::All,
            hard: false,
            require_independent: false,
            max_shard_bytes: 1 << 20,
            overwrite: false,
            threads: 1,
            server_url: DEFAULT_SERVER_URL.into(),
        }
    }

    #[test]
    fn names_parse_and_unknown_ones_list_the_choices() {
        assert_eq!("verl".parse::<Format>().unwrap(), Format::Verl);
        let err = "parquet".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("`parquet`") && err.contains("codegym, verl, hf"), "{err}");
        assert_eq!("validation".parse::<SplitSelection>().unwrap(), SplitSelection::One(Split::Validation));
        assert!("test".parse::<SplitSelection>().unwrap_err().to_string().contains("train, validation, all"));
        assert!("held_out".parse::<SplitSelection>().is_err(), "held-out environments are never exported");
        assert!(!SplitSelection::All.includes(Split::HeldOut));
    }

    #[test]
    fn out_may_not_overlap_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let inside = settings(&data, &data.join("export/deeper"));
        assert!(matches!(inside.check_paths(), Err(ExportError::OutInsideData { .. })));
        // Spelled differently (`..`), still inside.
        let sneaky = settings(&data, &data.join("../data/x"));
        assert!(matches!(sneaky.check_paths(), Err(ExportError::OutInsideData { .. })));
        // Through a folder that does not exist yet: the dataset itself, and one of its tables.
        let through = settings(&data, &dir.path().join("nope/../data"));
        assert!(matches!(through.check_paths(), Err(ExportError::OutInsideData { .. })));
        assert!(!dir.path().join("nope").exists());
        let table = settings(&data, &dir.path().join("nope/../data/problems"));
        assert!(matches!(table.check_paths(), Err(ExportError::OutInsideData { .. })));
        std::os::unix::fs::symlink(&data, dir.path().join("link")).unwrap();
        let linked = settings(&data, &dir.path().join("link/"));
        assert!(matches!(linked.check_paths(), Err(ExportError::OutInsideData { .. })), "a link to the dataset");
        let around = settings(&data, dir.path());
        assert!(matches!(around.check_paths(), Err(ExportError::DataInsideOut { .. })));
        assert!(settings(&data, &dir.path().join("data-export")).check_paths().is_ok(), "a sibling sharing a prefix is fine");
    }

    #[test]
    fn a_non_empty_out_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (data, out) = (dir.path().join("data"), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        assert!(settings(&data, &out).check_paths().is_ok(), "an empty directory is fine");
        std::fs::write(out.join("x"), "x").unwrap();
        assert!(matches!(settings(&data, &out).check_paths(), Err(ExportError::OutNotEmpty { .. })));
        assert!(ExportSettings { overwrite: true, ..settings(&data, &out) }.check_paths().is_ok());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            ExportSettings { overwrite: true, ..settings(&data, &file) }.check_paths(),
            Err(ExportError::OutNotADirectory { .. })
        ));
    }
}
