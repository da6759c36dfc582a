//! The atomic output directory: an export writes everything under a temporary directory beside
//! `--out` (same file system, so the final rename is atomic) and renames it into place only when
//! every file is written and hashed. Until then `--out` is untouched.
//!
//! `--out` is resolved before it is checked ([`resolve`]: `..` and symbolic links, as far as the
//! path exists), and the commit replaces exactly what was checked: if `--out` appeared, went, or
//! was replaced or written to since the check ([`Target`]), the commit refuses and leaves
//! everything in place. The temporary directory is `.NAME.export-PID`, and an `--out` being
//! replaced is moved aside to `.NAME.export-PID.old`; a killed export's leftovers carry that mark,
//! so the next export to the same place finds them: it removes a dead export's temporary
//! directory, and puts back an `--out` that a crash left moved aside. Knows nothing of formats.

use super::ExportError;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

const TMP_MARK: &str = ".export-";
const ASIDE_SUFFIX: &str = ".old";

/// `path` made absolute, with `.` and `..` resolved and symbolic links followed as far as the path
/// exists; past that, the rest is joined as written, with `..` taken lexically (which is what
/// creating the missing folders then does).
pub(crate) fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut resolved = PathBuf::new();
    let mut exists = true;
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                resolved.push(name);
                if exists {
                    match resolved.canonicalize() {
                        Ok(real) => resolved = real,
                        Err(_) => exists = resolved.symlink_metadata().is_ok(),
                    }
                }
            }
        }
    }
    resolved
}

/// `--out` as it was checked: the resolved directory the export will replace, and what was there.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    path: PathBuf,
    found: Option<Identity>,
}

/// What tells a directory apart from its replacement, or from itself after a write into it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    modified: (i64, i64),
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let meta = fs::symlink_metadata(path).ok()?;
        Some(Identity { dev: meta.dev(), ino: meta.ino(), modified: (meta.mtime(), meta.mtime_nsec()) })
    }
}

impl Target {
    /// Records what is at the resolved `path` now, after recovering what killed exports to it
    /// left behind (so an `--out` a crash left moved aside is back in place, and checked).
    pub(crate) fn prepare(path: PathBuf) -> Result<Target, ExportError> {
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            recover_leftovers(parent, &name.to_string_lossy())?;
        }
        let found = Identity::of(&path);
        Ok(Target { path, found })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `--out` is still what was checked.
    fn unchanged(&self) -> bool {
        Identity::of(&self.path) == self.found
    }
}

/// An export being written; dropped without [`commit`](OutputDir::commit), it leaves nothing.
pub(crate) struct OutputDir {
    tmp: PathBuf,
    aside: PathBuf,
    target: Target,
    committed: bool,
}

impl OutputDir {
    /// Creates the temporary directory beside the target (creating its parent if needed).
    pub(crate) fn create(target: &Target) -> Result<OutputDir, ExportError> {
        let out = target.path();
        let (parent, name) = match (out.parent(), out.file_name()) {
            (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_string_lossy().into_owned()),
            _ => return Err(ExportError::OutNotADirectory { out: out.to_path_buf() }),
        };
        fs::create_dir_all(&parent).map_err(|e| ExportError::io(&parent, e))?;
        let tmp = parent.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
        let aside = parent.join(format!(".{name}{TMP_MARK}{}{ASIDE_SUFFIX}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
        Ok(OutputDir { tmp, aside, target: target.clone(), committed: false })
    }

    /// Where the files go until the commit.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the export in place of `--out`: an existing `--out` (empty, or replaced with
    /// `--overwrite`, which the settings checked) is moved aside first and removed after. Refuses
    /// if `--out` is no longer what was checked.
    pub(crate) fn commit(mut self) -> Result<PathBuf, ExportError> {
        let out = self.target.path().to_path_buf();
        if !self.target.unchanged() {
            return Err(ExportError::OutChanged { out });
        }
        let had_out = self.target.found.is_some();
        if had_out {
            let _ = fs::remove_dir_all(&self.aside);
            fs::rename(&out, &self.aside).map_err(|e| ExportError::io(&out, e))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &out) {
            if had_out {
                let _ = fs::rename(&self.aside, &out);
            }
            return Err(ExportError::io(&out, e));
        }
        self.committed = true;
        if had_out {
            let _ = fs::remove_dir_all(&self.aside);
        }
        Ok(out)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Handles what killed exports to `parent/name` left, for processes that are gone: an `--out`
/// moved aside is put back if nothing took its place (else removed), and a temporary directory is
/// removed. `.NAME.old` is what exports of earlier versions moved aside.
fn recover_leftovers(parent: &Path, name: &str) -> Result<(), ExportError> {
    let prefix = format!(".{name}{TMP_MARK}");
    let legacy_aside = format!(".{name}{ASIDE_SUFFIX}");
    let Ok(entries) = fs::read_dir(parent) else { return Ok(()) };
    let mut asides = Vec::new();
    let mut temporaries = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if file_name == legacy_aside {
            asides.push(entry.path());
            continue;
        }
        let Some(rest) = file_name.strip_prefix(&prefix) else { continue };
        let (pid, aside) = match rest.strip_suffix(ASIDE_SUFFIX) {
            Some(pid) => (pid, true),
            None => (rest, false),
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            if aside { asides.push(entry.path()) } else { temporaries.push(entry.path()) }
        }
    }
    // The newest marked one first: it holds the last export that was in place; an earlier
    // version's comes last.
    let modified = |path: &PathBuf| fs::symlink_metadata(path).and_then(|m| m.modified()).ok();
    asides.sort_by_key(|path| (path.file_name().is_some_and(|n| n == legacy_aside.as_str()), std::cmp::Reverse(modified(path))));
    let out = parent.join(name);
    for aside in asides {
        if out.symlink_metadata().is_err() {
            fs::rename(&aside, &out).map_err(|e| ExportError::io(&aside, e))?;
        } else {
            let _ = fs::remove_dir_all(&aside);
        }
    }
    for tmp in temporaries {
        let _ = fs::remove_dir_all(tmp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(out: &Path) -> OutputDir {
        OutputDir::create(&Target::prepare(resolve(out)).unwrap()).unwrap()
    }

    #[test]
    fn nothing_appears_until_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/out");
        let export = staged(&out);
        fs::write(export.path().join("a.txt"), "a").unwrap();
        assert!(!out.exists());
        drop(export);
        assert!(!out.exists());
        assert_eq!(fs::read_dir(dir.path().join("nested")).unwrap().count(), 0, "a dropped export leaves nothing");

        let export = staged(&out);
        fs::write(export.path().join("a.txt"), "a").unwrap();
        assert_eq!(export.commit().unwrap(), resolve(&out));
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "a");
    }

    #[test]
    fn commit_replaces_an_existing_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("old")).unwrap();
        fs::write(out.join("old/stale.txt"), "stale").unwrap();
        let export = staged(&out);
        fs::write(export.path().join("new.txt"), "new").unwrap();
        export.commit().unwrap();
        let names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["new.txt"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "nothing left beside it");
    }

    #[test]
    fn an_out_that_appears_or_changes_during_the_export_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let export = staged(&out);
        fs::create_dir(&out).unwrap();
        fs::write(out.join("theirs.txt"), "theirs").unwrap();
        assert!(matches!(export.commit(), Err(ExportError::OutChanged { .. })));
        assert_eq!(fs::read_to_string(out.join("theirs.txt")).unwrap(), "theirs");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary directory is gone");

        let export = staged(&out);
        fs::write(out.join("more.txt"), "written meanwhile").unwrap();
        assert!(matches!(export.commit(), Err(ExportError::OutChanged { .. })));
        assert!(out.join("more.txt").exists() && out.join("theirs.txt").exists());
    }

    #[test]
    fn leftovers_of_killed_exports_are_cleared_and_a_moved_aside_out_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4294967 (above the kernel's pid limit).
        let dead_tmp = dir.path().join(".out.export-4294967");
        fs::create_dir_all(&dead_tmp).unwrap();
        fs::create_dir_all(dir.path().join(".other.export-1")).unwrap();
        // Killed between moving `out` aside and renaming its export into place.
        let dead_aside = dir.path().join(".out.export-4294967.old");
        fs::create_dir_all(&dead_aside).unwrap();
        fs::write(dead_aside.join("kept.txt"), "the previous export").unwrap();
        let export = staged(&dir.path().join("out"));
        assert!(!dead_tmp.exists() && !dead_aside.exists());
        assert_eq!(fs::read_to_string(dir.path().join("out/kept.txt")).unwrap(), "the previous export");
        assert!(dir.path().join(".other.export-1").exists(), "another output's leftovers are not ours to remove");
        drop(export);

        // An earlier version's aside folder next to an `out` that is in place: removed.
        fs::create_dir_all(dir.path().join(".out.old/x")).unwrap();
        let export = staged(&dir.path().join("out"));
        assert!(!dir.path().join(".out.old").exists());
        drop(export);
    }

    #[test]
    fn paths_resolve_dots_and_links_before_anything_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        assert_eq!(resolve(&root.join("nope/../data")), root.join("data"), "through a folder that does not exist");
        assert_eq!(resolve(&root.join("nope/../data/problems")), root.join("data/problems"));
        assert_eq!(resolve(&root.join("./data/./x/")), root.join("data/x"));
        assert_eq!(resolve(&root.join("a/b/../../data")), root.join("data"));
        std::os::unix::fs::symlink(root.join("data"), root.join("link")).unwrap();
        assert_eq!(resolve(&root.join("link")), root.join("data"));
        assert_eq!(resolve(&root.join("link/../data/y")), root.join("data/y"), "`..` after a link leaves the link's target");
    }
}
