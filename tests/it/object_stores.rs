//! A dataset on an object store builds, verifies, answers SQL and exports like a local one, and a
//! held shard lease keeps a second taker waiting (the store refuses to create an object that
//! exists), against a local server standing in for the store, which the test starts on a free
//! loopback port and stops when done. Each store is one [`Emulated`] row and one test that runs
//! the same checks: S3 against moto in server mode, Azure Blob Storage against Azurite.
//!
//! Not Google Cloud Storage (`gs://`): the one emulator that installs here, `gcp-storage-emulator`
//! 2026.7.19, serves the JSON API but of the XML API, the one object_store 0.13 speaks, only GET
//! and PUT of single objects. Against it (`--default-bucket codegym`):
//! - listing a folder, `GET /codegym?list-type=2&delimiter=%2F&prefix=nightly%2Fdata%2Fproblems%2F`,
//!   answers `501 Not Implemented`: `import-codegym` fails on it, after object_store's retries;
//! - a conditional create, `PUT /codegym/KEY` with `x-goog-if-generation-match: 0`, answers
//!   `200 OK` and replaces an object that exists (GCS answers `412 Precondition Failed`), so
//!   manifests and leases would not be exclusive;
//! - a PUT answers without an `ETag` header, and object_store fails a put without one;
//! - `HEAD` and `DELETE` of an object answer `501`.

use crate::util::{azurite_blob, import_release, repo, run_ok, test_python};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An object store, and the local server that stands in for it.
struct Emulated {
    /// The URL scheme `--data` names it with.
    scheme: &'static str,
    /// The Python modules the server and `make_bucket` need.
    modules: &'static [&'static str],
    /// The server's command line, listening on 127.0.0.1:PORT, given the Python and the port;
    /// `None`, with a note, when the server is not installed.
    server: fn(python: &str, port: &str) -> Option<Command>,
    /// Python that makes the bucket (or container) `codegym` at the endpoint in `sys.argv[1]`.
    make_bucket: &'static str,
    /// The variable that points object_store at the endpoint, and the rest of its settings.
    endpoint_variable: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const S3: Emulated = Emulated {
    scheme: "s3",
    modules: &["moto.server", "boto3"],
    server: |python, port| Some(command(python, ["-m", "moto.server", "-H", "127.0.0.1", "-p", port])),
    make_bucket: "import boto3, sys\nboto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                  aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='codegym')",
    endpoint_variable: "AWS_ENDPOINT_URL",
    env: &[
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ],
};

/// object_store's emulator mode signs with Azurite's well-known account and key, at
/// `AZURITE_BLOB_STORAGE_URL`. The container is made at the API version object_store speaks: the
/// client's own default is newer than the pinned Azurite accepts.
const AZURE: Emulated = Emulated {
    scheme: "az",
    modules: &["azure.storage.blob"],
    server: |_, port| {
        let args = ["--blobHost", "127.0.0.1", "--blobPort", port, "--inMemoryPersistence", "--silent"];
        azurite_blob().map(|bin| command(bin, args))
    },
    make_bucket: "import sys\nfrom azure.storage.blob import BlobServiceClient\n\
                  key = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='\n\
                  BlobServiceClient(sys.argv[1] + '/devstoreaccount1', api_version='2023-11-03', \
                  credential={'account_name': 'devstoreaccount1', 'account_key': key}).create_container('codegym')",
    endpoint_variable: "AZURITE_BLOB_STORAGE_URL",
    env: &[("AZURE_STORAGE_USE_EMULATOR", "true")],
};

#[test]
fn a_dataset_on_s3_imports_verifies_and_answers_sql_as_a_local_one() {
    a_dataset_on(&S3);
}

#[test]
fn a_dataset_on_azure_blob_storage_imports_verifies_and_answers_sql_as_a_local_one() {
    a_dataset_on(&AZURE);
}

fn command<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: impl IntoIterator<Item = S>) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// A started server, stopped when dropped, and the settings that point object_store at it.
struct Server {
    child: Child,
    env: Vec<(&'static str, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `store`'s server on a free port and makes its bucket; `None` where it is not installed.
    fn start(store: &Emulated) -> Option<Server> {
        let python = test_python(store.modules)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = (store.server)(&python, &port.to_string())?.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut env = vec![(store.endpoint_variable, endpoint.clone())];
        env.extend(store.env.iter().map(|&(name, value)| (name, value.to_string())));
        let server = Server { child, env };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the {} server did not start", store.scheme);
            std::thread::sleep(Duration::from_millis(100));
        }
        let made = Command::new(&python).args(["-c", store.make_bucket, &endpoint]).output().unwrap();
        assert!(made.status.success(), "making the bucket: {}", String::from_utf8_lossy(&made.stderr));
        Some(server)
    }

    /// `program` with the environment that points object_store at this server.
    fn client(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Runs `codegym args...` against this server, asserting success; returns stdout.
    fn codegym(&self, args: &[&str]) -> String {
        let output = self.client(env!("CARGO_BIN_EXE_codegym")).env("CODEGYM_NO_PROGRESS", "1").args(args).output().unwrap();
        crate::util::assert_success(&output, args);
        String::from_utf8(output.stdout).unwrap()
    }
}

const QUERY: &str = "SELECT env_name, status FROM environments ORDER BY env_name";

/// The bundled release imported and verified into a local folder once per run, with what the
/// remote datasets must equal: its answer to [`QUERY`] and its Hugging Face export's rows.
fn local_reference() -> &'static (String, Vec<u8>) {
    static LOCAL: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("object-stores-local");
        let _ = std::fs::remove_dir_all(&dir);
        let (data, out) = (dir.join("data"), dir.join("hf"));
        import_release(&repo().join("data-samples/codegym"), "jsonl", &data);
        run_ok(&["verify", "--data", data.to_str().unwrap()]);
        let answer = run_ok(&["sql", "--data", data.to_str().unwrap(), "--format", "csv", QUERY]);
        run_ok(&["export", "--data", data.to_str().unwrap(), "--format", "hf", "--out", out.to_str().unwrap()]);
        (answer, hf_rows(&out))
    })
}

fn hf_rows(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("data/train-00000-of-00001.parquet")).unwrap()
}

/// Imports, verifies, queries and exports the bundled release on `store`, compares with the same
/// done locally, then checks its leases in a child process (see [`lease_probe`]).
fn a_dataset_on(store: &Emulated) {
    let Some(server) = Server::start(store) else { return };
    let release = repo().join("data-samples/codegym");
    let (envs, tasks) = (release.join("envs.jsonl"), release.join("tasks.jsonl"));
    let url = format!("{}://codegym/nightly/data", store.scheme);
    server.codegym(&["import-codegym", "--envs", envs.to_str().unwrap(), "--tasks", tasks.to_str().unwrap(), "--data", &url]);
    server.codegym(&["verify", "--data", &url]);
    let answer = server.codegym(&["sql", "--data", &url, "--format", "csv", QUERY]);
    let (local_answer, local_rows) = local_reference();
    assert_eq!(&answer, local_answer);
    assert!(answer.lines().count() > 5, "{answer}");
    // An export reads the dataset where it is, and writes what it writes from the local copy.
    let out = tempfile::tempdir().unwrap();
    server.codegym(&["export", "--data", &url, "--format", "hf", "--out", out.path().to_str().unwrap()]);
    assert!(&hf_rows(out.path()) == local_rows, "the same rows, byte for byte");

    let probe = server
        .client(std::env::current_exe().unwrap())
        .args(["object_stores::lease_probe", "--exact", "--nocapture"])
        .env(PROBE_URL, &url)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success() && said.contains(PROBED), "{said}\n{}", String::from_utf8_lossy(&probe.stderr));
}

const PROBE_URL: &str = "CODEGYM_TEST_LEASE_PROBE_URL";
const PROBED: &str = "lease probe: a second lease on a held shard waited";

/// Run by [`a_dataset_on`] in a child process of this test binary, with the store's environment
/// (object_store reads its settings from the environment, and this process's must not change
/// under the tests running beside it); does nothing elsewhere. Holds shard 5's lease, then takes
/// it again: the store must refuse the second conditional create, so the second taker waits,
/// told who holds it, and takes it by a conditional replace once it is given back.
#[test]
fn lease_probe() {
    use codegym::dataset::lease::LeaseEvent;
    let Ok(url) = std::env::var(PROBE_URL) else { return };
    let data = codegym::dataset::Dataset::open(&url, None).expect("open the dataset");
    let held = data.lease(5, &|event| panic!("nobody holds shard 5 yet: {event:?}")).expect("take the lease");
    let (told, waited) = std::sync::mpsc::channel();
    let taker = std::thread::spawn(move || {
        let second = data.lease(5, &|event| {
            if let LeaseEvent::Waiting(held) = event {
                let _ = told.send(Ok(held.owner.clone()));
            }
        });
        let _ = told.send(Err(match &second {
            Ok(_) => "the store let a second taker have a held shard's lease".to_string(),
            Err(e) => e.to_string(),
        }));
        second
    });
    let holder = waited.recv_timeout(Duration::from_secs(60)).expect("the second taker answers");
    assert_eq!(holder.unwrap(), codegym::dataset::lease::owner(), "the second taker is told who holds the lease");
    // Given back (a conditional write on the version the holder read), the lease goes to the
    // waiting taker (a conditional write on the released version).
    drop(held);
    let second = taker.join().unwrap().expect("the waiting taker gets the lease once it is given back");
    assert!(!second.lost());
    println!("{PROBED}");
}
