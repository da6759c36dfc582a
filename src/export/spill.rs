//! The exported environments' rendered prompts, spilled to an anonymous temporary file: rows come
//! in configuration order, which visits environments at random, and holding every environment's
//! tool docs and task text in memory would tie an export's memory to the number of environments.
//! The file is read back with positioned reads (the page cache serves them), and the operating
//! system deletes it when the export ends, however it ends.

use super::ExportError;
use super::source::{ConfigRow, EnvMeta};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where each environment's `(system, user)` messages are in the spill file.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    system: u32,
    user: u32,
}

pub(crate) struct PromptStore {
    file: File,
    dir: PathBuf,
    slots: Vec<Option<Slot>>,
    end: u64,
}

impl PromptStore {
    /// A store for `envs` environments, spilling into `dir` (beside the output, not in it).
    pub(crate) fn create(dir: &Path, envs: usize) -> Result<PromptStore, ExportError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| ExportError::io(dir, e))?;
        Ok(PromptStore { file, dir: dir.to_path_buf(), slots: vec![None; envs], end: 0 })
    }

    /// Stores the messages of `env`'s rows.
    pub(crate) fn put(&mut self, env: &EnvMeta, system: &str, user: &str) -> Result<(), ExportError> {
        let too_long = |_| ExportError::io(&self.dir, std::io::Error::other("a prompt longer than 4 GiB"));
        let slot = Slot {
            offset: self.end,
            system: u32::try_from(system.len()).map_err(too_long)?,
            user: u32::try_from(user.len()).map_err(too_long)?,
        };
        self.file.write_all_at(system.as_bytes(), slot.offset).map_err(|e| ExportError::io(&self.dir, e))?;
        self.file.write_all_at(user.as_bytes(), slot.offset + system.len() as u64).map_err(|e| ExportError::io(&self.dir, e))?;
        self.end += (system.len() + user.len()) as u64;
        self.slots[env.index as usize] = Some(slot);
        Ok(())
    }

    /// Reads the messages of `rows` into `loaded`, replacing what it held.
    pub(crate) fn load(&self, rows: &[ConfigRow<'_>], loaded: &mut Loaded) -> Result<(), ExportError> {
        loaded.text.clear();
        loaded.spans.clear();
        for row in rows {
            let slot = self.slots[row.env.index as usize].unwrap_or_else(|| {
                panic!("environment {} has rows but no stored prompt; this is a bug in codegym", row.env.env_id)
            });
            let start = loaded.text.len();
            let len = (slot.system + slot.user) as usize;
            loaded.text.resize(start + len, 0);
            self.file.read_exact_at(&mut loaded.text[start..], slot.offset).map_err(|e| ExportError::io(&self.dir, e))?;
            loaded.spans.push((start, slot.system as usize, slot.user as usize));
        }
        Ok(())
    }
}

/// The messages of a batch of rows, read back.
#[derive(Default)]
pub(crate) struct Loaded {
    text: Vec<u8>,
    /// Per row: start, system length, user length.
    spans: Vec<(usize, usize, usize)>,
}

impl Loaded {
    /// `(system, user)` per row, in row order.
    pub(crate) fn pairs(&self) -> Result<Vec<(&str, &str)>, ExportError> {
        let text = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&self.text[range])
                .map_err(|e| ExportError::io("prompt spill file", std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
        };
        self.spans
            .iter()
            .map(|&(start, system, user)| Ok((text(start..start + system)?, text(start + system..start + system + user)?)))
            .collect()
    }
}
