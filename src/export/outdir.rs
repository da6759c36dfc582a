//! The atomic output directory: an export writes everything under a temporary directory beside
//! `--out` (same file system, so the final rename is atomic) and renames it into place only when
//! every file is written and hashed. Until then `--out` is untouched; a failed export removes its
//! temporary directory, and a killed one leaves only a dotted `.NAME.export-PID` beside `--out`,
//! which the next export to the same place removes. Knows nothing of formats.

use super::ExportError;
use std::fs;
use std::path::{Path, PathBuf};

const TMP_MARK: &str = ".export-";

/// An export being written; dropped without [`commit`](OutputDir::commit), it leaves nothing.
pub(crate) struct OutputDir {
    tmp: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl OutputDir {
    /// Creates the temporary directory beside `out` (creating `out`'s parent if needed).
    pub(crate) fn create(out: &Path) -> Result<OutputDir, ExportError> {
        let out = std::path::absolute(out).map_err(|e| ExportError::io(out, e))?;
        let (parent, name) = match (out.parent(), out.file_name()) {
            (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_string_lossy().into_owned()),
            _ => return Err(ExportError::OutNotADirectory { out }),
        };
        fs::create_dir_all(&parent).map_err(|e| ExportError::io(&parent, e))?;
        remove_stale(&parent, &name);
        let tmp = parent.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
        Ok(OutputDir { tmp, out, committed: false })
    }

    /// Where the files go until the commit.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the export in place of `out`: an existing `out` (empty, or replaced with
    /// `--overwrite`, which the settings checked) is moved aside first and removed after.
    pub(crate) fn commit(mut self) -> Result<PathBuf, ExportError> {
        let aside = self.tmp.with_extension("old");
        let had_out = self.out.exists();
        if had_out {
            fs::rename(&self.out, &aside).map_err(|e| ExportError::io(&self.out, e))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &self.out) {
            if had_out {
                let _ = fs::rename(&aside, &self.out);
            }
            return Err(ExportError::io(&self.out, e));
        }
        self.committed = true;
        if had_out {
            let _ = fs::remove_dir_all(&aside);
        }
        Ok(self.out.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Removes what killed exports to `parent/name` left: temporary directories whose process is gone.
fn remove_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}{TMP_MARK}");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let pid = pid.strip_suffix(".old").unwrap_or(pid);
        let alive = pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/out");
        let staged = OutputDir::create(&out).unwrap();
        fs::write(staged.path().join("a.txt"), "a").unwrap();
        assert!(!out.exists());
        drop(staged);
        assert!(!out.exists());
        assert_eq!(fs::read_dir(dir.path().join("nested")).unwrap().count(), 0, "a dropped export leaves nothing");

        let staged = OutputDir::create(&out).unwrap();
        fs::write(staged.path().join("a.txt"), "a").unwrap();
        assert_eq!(staged.commit().unwrap(), out);
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "a");
    }

    #[test]
    fn commit_replaces_an_existing_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("old")).unwrap();
        fs::write(out.join("old/stale.txt"), "stale").unwrap();
        let staged = OutputDir::create(&out).unwrap();
        fs::write(staged.path().join("new.txt"), "new").unwrap();
        staged.commit().unwrap();
        let names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["new.txt"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "nothing left beside it");
    }

    #[test]
    fn leftovers_of_killed_exports_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4294967 (above the kernel's pid limit).
        let dead = dir.path().join(".out.export-4294967");
        fs::create_dir_all(&dead).unwrap();
        fs::create_dir_all(dir.path().join(".other.export-1")).unwrap();
        let staged = OutputDir::create(&dir.path().join("out")).unwrap();
        assert!(!dead.exists());
        assert!(dir.path().join(".other.export-1").exists(), "another output's leftovers are not ours to remove");
        drop(staged);
    }
}
