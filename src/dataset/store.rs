//! Where a dataset's files live: a local folder or an object store (`s3://`, `gs://`, `az://`,
//! through the `object_store` crate DataFusion uses, configured by the standard environment
//! variables). Owns the four operations the layout needs and their guarantees:
//! - `put` replaces a file whole: locally a dotted temporary file renamed into place (readers
//!   never see a torn file, and pyarrow/DuckDB never read the temporary), remotely one PUT;
//! - `put_if_absent` creates a file only if none exists (the manifest, leases): locally an
//!   exclusive hard link, remotely a conditional PUT;
//! - `get` and `list` read; `delete` removes;
//! - `get_versioned` and `replace_if` are a compare-and-swap on one small file (leases): the
//!   replacement happens only if the file is still the version read, so of two processes racing
//!   to take over the same file exactly one wins. Locally every such operation runs under an
//!   exclusive lock on a `.lock` file beside it; remotely it is a conditional PUT on the ETag.
//!
//! Remote calls run on a runtime of their own, so callers stay synchronous (and may themselves
//! run inside another runtime). Knows nothing about Parquet or tables.

use super::DatasetError;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A dataset's location.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Local(PathBuf),
    Remote { store: Arc<dyn ObjectStore>, prefix: ObjectPath, url: String },
}

/// What a file was when read, for [`Store::replace_if`]: its bytes locally (compared under the
/// folder's lock), its ETag and version on an object store.
#[derive(Debug, Clone)]
pub(crate) enum Version {
    Local(Bytes),
    Remote(object_store::UpdateVersion),
}

/// Bytes this process has written to datasets (files put and lines appended), for benchmarks.
static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes this process has written to datasets so far.
pub fn bytes_written() -> u64 {
    WRITTEN.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn count_written(bytes: usize) {
    WRITTEN.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The schemes `--data` takes besides local paths.
const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// The folder a `--data` location names, or `None` for an object store URL.
pub fn local_path(location: &str) -> Option<&Path> {
    (!location.contains("://")).then(|| Path::new(location))
}

impl Store {
    /// The store at `location`: a local path, or an `s3://`, `gs://` or `az://` URL.
    pub(crate) fn open(location: &str) -> Result<Store, DatasetError> {
        if let Some(path) = local_path(location) {
            return Ok(Store::Local(path.to_path_buf()));
        }
        let (scheme, _) = location.split_once("://").expect("not a local path");
        if !SCHEMES.contains(&scheme) {
            return Err(DatasetError::Location {
                location: location.into(),
                detail: format!("unknown scheme `{scheme}://`; use a local path or one of s3://, gs://, az://"),
            });
        }
        let url =
            url::Url::parse(location).map_err(|e| DatasetError::Location { location: location.into(), detail: e.to_string() })?;
        let (store, prefix) = remote(&url).map_err(|e| DatasetError::Location { location: location.into(), detail: e })?;
        Ok(Store::Remote { store, prefix, url: location.trim_end_matches('/').to_string() })
    }

    /// The location as given (a path or a URL).
    pub(crate) fn describe(&self, relative: &str) -> PathBuf {
        match self {
            Store::Local(root) => root.join(relative),
            Store::Remote { url, .. } => PathBuf::from(format!("{url}/{relative}")),
        }
    }

    fn object(prefix: &ObjectPath, relative: &str) -> ObjectPath {
        let mut path = prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// The file at `relative`, or `None` when there is none.
    pub(crate) fn get(&self, relative: &str) -> Result<Option<Bytes>, DatasetError> {
        match self {
            Store::Local(root) => match fs::read(root.join(relative)) {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(DatasetError::io(root.join(relative), e)),
            },
            Store::Remote { store, prefix, .. } => {
                let path = Self::object(prefix, relative);
                block_on(async {
                    match store.get(&path).await {
                        Ok(result) => result.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .map_err(|e| self.remote_error(relative, e))
            }
        }
    }

    /// Replaces (or creates) the file at `relative` with `bytes`, whole.
    pub(crate) fn put(&self, relative: &str, bytes: Bytes) -> Result<(), DatasetError> {
        count_written(bytes.len());
        match self {
            Store::Local(root) => {
                let path = root.join(relative);
                let tmp = write_temporary(&path, &bytes)?;
                fs::rename(&tmp, &path).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    DatasetError::io(&path, e)
                })?;
                sync_dir(&path);
                Ok(())
            }
            Store::Remote { store, prefix, .. } => {
                let path = Self::object(prefix, relative);
                block_on(store.put(&path, PutPayload::from(bytes))).map(|_| ()).map_err(|e| self.remote_error(relative, e))
            }
        }
    }

    /// Creates the file at `relative` with `bytes` unless one exists; `false` when one did.
    pub(crate) fn put_if_absent(&self, relative: &str, bytes: Bytes) -> Result<bool, DatasetError> {
        match self {
            Store::Local(root) => {
                let path = root.join(relative);
                let tmp = write_temporary(&path, &bytes)?;
                let created = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match created {
                    Ok(()) => {
                        sync_dir(&path);
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(DatasetError::io(&path, e)),
                }
            }
            Store::Remote { store, prefix, .. } => {
                let path = Self::object(prefix, relative);
                let options = PutOptions { mode: PutMode::Create, ..Default::default() };
                match block_on(store.put_opts(&path, PutPayload::from(bytes), options)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
                    Err(e) => Err(self.remote_error(relative, e)),
                }
            }
        }
    }

    /// The file at `relative` with its version, or `None` when there is none.
    pub(crate) fn get_versioned(&self, relative: &str) -> Result<Option<(Bytes, Version)>, DatasetError> {
        match self {
            Store::Local(root) => {
                let _lock = FolderLock::take(&root.join(relative))?;
                Ok(self.get(relative)?.map(|bytes| (bytes.clone(), Version::Local(bytes))))
            }
            Store::Remote { store, prefix, .. } => {
                let path = Self::object(prefix, relative);
                block_on(async {
                    match store.get(&path).await {
                        Ok(result) => {
                            let version = object_store::UpdateVersion {
                                e_tag: result.meta.e_tag.clone(),
                                version: result.meta.version.clone(),
                            };
                            result.bytes().await.map(|bytes| Some((bytes, Version::Remote(version))))
                        }
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .map_err(|e| self.remote_error(relative, e))
            }
        }
    }

    /// Replaces the file at `relative` with `bytes` only if it is still at `version`; `false` when
    /// it changed (or went) since it was read.
    pub(crate) fn replace_if(&self, relative: &str, bytes: Bytes, version: &Version) -> Result<bool, DatasetError> {
        match (self, version) {
            (Store::Local(root), Version::Local(expected)) => {
                let _lock = FolderLock::take(&root.join(relative))?;
                if self.get(relative)?.as_ref() != Some(expected) {
                    return Ok(false);
                }
                self.put(relative, bytes).map(|()| true)
            }
            (Store::Remote { store, prefix, .. }, Version::Remote(version)) => {
                count_written(bytes.len());
                let path = Self::object(prefix, relative);
                let options = PutOptions { mode: PutMode::Update(version.clone()), ..Default::default() };
                match block_on(store.put_opts(&path, PutPayload::from(bytes), options)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::Precondition { .. }) | Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(self.remote_error(relative, e)),
                }
            }
            _ => unreachable!("a version comes from the store it is used with"),
        }
    }

    /// Appends one whole `line` to the text file at `relative` (created if absent), first cutting a
    /// torn last line a crash left behind. An object store cannot append: there the file is read
    /// and written back whole (one writer per file: the shard's lease holder).
    pub(crate) fn append_line(&self, relative: &str, line: &[u8]) -> Result<(), DatasetError> {
        count_written(line.len());
        match self {
            Store::Local(root) => {
                let path = root.join(relative);
                let dir = path.parent().expect("dataset files live in a folder");
                fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
                let mut file =
                    fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| DatasetError::io(&path, e))?;
                let whole = whole_lines_len(&path).map_err(|e| DatasetError::io(&path, e))?;
                if whole < file.metadata().map_err(|e| DatasetError::io(&path, e))?.len() {
                    file.set_len(whole).map_err(|e| DatasetError::io(&path, e))?;
                }
                file.write_all(line).and_then(|()| file.flush()).map_err(|e| DatasetError::io(&path, e))
            }
            Store::Remote { .. } => {
                let mut text = self.get(relative)?.map(|b| b.to_vec()).unwrap_or_default();
                text.truncate(text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
                text.extend_from_slice(line);
                self.put(relative, text.into())
            }
        }
    }

    /// Removes the file at `relative`, if there is one.
    pub(crate) fn delete(&self, relative: &str) -> Result<(), DatasetError> {
        match self {
            Store::Local(root) => match fs::remove_file(root.join(relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DatasetError::io(root.join(relative), e)),
                _ => Ok(()),
            },
            Store::Remote { store, prefix, .. } => {
                let path = Self::object(prefix, relative);
                match block_on(store.delete(&path)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.remote_error(relative, e)),
                }
            }
        }
    }

    /// The names of the files directly in the folder `relative` (none when it does not exist),
    /// sorted; locally, dotted names are left out.
    pub(crate) fn list(&self, relative: &str) -> Result<Vec<String>, DatasetError> {
        let mut names = match self {
            Store::Local(root) => {
                let dir = root.join(relative);
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(DatasetError::io(&dir, e)),
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| DatasetError::io(&dir, e))?;
                    // Dotted files are this module's own (temporaries, locks), never the dataset's.
                    if entry.path().is_file()
                        && let Some(name) = entry.file_name().to_str()
                        && !name.starts_with('.')
                    {
                        names.push(name.to_string());
                    }
                }
                names
            }
            Store::Remote { store, prefix, .. } => {
                let dir = Self::object(prefix, relative);
                let listed = block_on(store.list_with_delimiter(Some(&dir))).map_err(|e| self.remote_error(relative, e))?;
                listed.objects.into_iter().filter_map(|o| o.location.filename().map(String::from)).collect()
            }
        };
        names.sort();
        Ok(names)
    }

    fn remote_error(&self, relative: &str, source: object_store::Error) -> DatasetError {
        DatasetError::Remote { path: self.describe(relative), source: Box::new(source) }
    }

    /// The object store and URL of a remote location, for SQL to read it as it is.
    pub(crate) fn remote(&self) -> Option<(Arc<dyn ObjectStore>, &str)> {
        match self {
            Store::Remote { store, url, .. } => Some((store.clone(), url)),
            Store::Local(_) => None,
        }
    }
}

/// The object store for `url`, configured from the standard environment variables
/// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ALLOW_HTTP`, and their Google and Azure peers), and the prefix inside it.
fn remote(url: &url::Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    let bucket = url.host_str().ok_or("the URL names no bucket")?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => {
            Arc::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build().map_err(|e| e.to_string())?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown scheme `{other}://`")),
    };
    let prefix = ObjectPath::from_url_path(url.path()).map_err(|e| e.to_string())?;
    Ok((store, prefix))
}

/// The length of the file up to and including its last newline, read from the end backwards
/// (a recording can be large; a torn line is short).
fn whole_lines_len(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// An exclusive lock on the folder of a local file, held while alive: the local half of
/// [`Store::get_versioned`] and [`Store::replace_if`]. The lock file is dotted, so no table or
/// lease listing sees it, and the kernel releases the lock when its holder dies.
struct FolderLock(fs::File);

impl FolderLock {
    fn take(path: &Path) -> Result<FolderLock, DatasetError> {
        let dir = path.parent().expect("dataset files live in a folder");
        fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        let lock = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| DatasetError::io(&lock, e))?;
        file.lock().map_err(|e| DatasetError::io(&lock, e))?;
        Ok(FolderLock(file))
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Writes `bytes` to a dotted temporary file beside `path`, synced; returns its path.
fn write_temporary(path: &Path, bytes: &[u8]) -> Result<PathBuf, DatasetError> {
    let dir = path.parent().expect("dataset files live in a folder");
    fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        DatasetError::io(&tmp, e)
    })?;
    Ok(tmp)
}

/// Makes a rename durable; directories cannot be opened for sync on every platform, and the file
/// itself is already synced, so a failure here is not worth failing the write.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Runs a remote operation to completion from synchronous code, on the store's own runtime (on a
/// scoped thread when the caller is itself inside a runtime, where blocking is not allowed).
fn block_on<F: std::future::Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("codegym-store")
            .enable_all()
            .build()
            .expect("start the object store runtime")
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| scope.spawn(|| runtime.block_on(future)).join().expect("object store thread panicked"))
    } else {
        runtime.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_replaced_whole_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(store.get("t/part-0001.parquet").unwrap(), None);
        store.put("t/part-0001.parquet", Bytes::from_static(b"one")).unwrap();
        store.put("t/part-0001.parquet", Bytes::from_static(b"two")).unwrap();
        assert_eq!(store.get("t/part-0001.parquet").unwrap().unwrap(), Bytes::from_static(b"two"));
        assert!(store.put_if_absent("m.json", Bytes::from_static(b"a")).unwrap());
        assert!(!store.put_if_absent("m.json", Bytes::from_static(b"b")).unwrap());
        assert_eq!(store.get("m.json").unwrap().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(store.list("t").unwrap(), ["part-0001.parquet"], "no temporary file is left behind");
        store.delete("m.json").unwrap();
        store.delete("m.json").unwrap();
        assert_eq!(store.get("m.json").unwrap(), None);
    }

    #[test]
    fn a_replacement_happens_only_from_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        store.put("_leases/part-0001.json", Bytes::from_static(b"old")).unwrap();
        let (bytes, version) = store.get_versioned("_leases/part-0001.json").unwrap().unwrap();
        assert_eq!(bytes, Bytes::from_static(b"old"));
        assert!(store.replace_if("_leases/part-0001.json", Bytes::from_static(b"first"), &version).unwrap());
        assert!(
            !store.replace_if("_leases/part-0001.json", Bytes::from_static(b"second"), &version).unwrap(),
            "a second taker holding the same old version loses"
        );
        assert_eq!(store.get("_leases/part-0001.json").unwrap().unwrap(), Bytes::from_static(b"first"));
        assert_eq!(store.list("_leases").unwrap(), ["part-0001.json"], "the lock file is dotted, not listed");
    }

    #[test]
    fn the_whole_lines_are_found_across_read_blocks_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let long = "x".repeat(150 * 1024);
        fs::write(&path, format!("{long}\n{long}")).unwrap();
        assert_eq!(whole_lines_len(&path).unwrap(), long.len() as u64 + 1);
        fs::write(&path, &long).unwrap();
        assert_eq!(whole_lines_len(&path).unwrap(), 0);
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        fs::write(&path, "one\ntw").unwrap();
        store.append_line("r.jsonl", b"three\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\nthree\n");
    }

    #[test]
    fn an_unknown_scheme_is_an_error_never_a_local_folder() {
        let err = Store::open("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("unknown scheme `ftp://`") && err.contains("s3://"), "{err}");
        assert!(matches!(Store::open("relative/dir").unwrap(), Store::Local(_)));
    }
}
