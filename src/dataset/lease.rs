//! Leases on shards, so that two processes never write the same shard. Before a process writes a
//! shard it takes `_leases/part-NNNN.json`: it creates the file if absent, or replaces a free one
//! (released, expired, or held by a process that is gone) with a compare-and-swap, so of two
//! takers exactly one wins. The file names its holder (host, pid, the process's start and the
//! machine's boot and pid namespace) and an expiry that a background thread keeps pushing forward.
//!
//! A holder that died on this machine is recognised at once (its pid is gone, or belongs to a
//! later process), and its lease is taken over without waiting; a holder elsewhere is trusted
//! until its lease expires. Every write of a shard checks first that this process still holds
//! its lease ([`Dataset::check_lease`]): a writer whose lease ran out or was taken over stops
//! with [`DatasetError::LeaseLost`] and writes nothing more. `codegym finalize` refuses to run
//! while any shard is leased. Work that may as well be left to the holder (merging a recording's
//! parts) takes the lease with [`Dataset::try_lease`], which never waits.

use super::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(600);
const DIR: &str = "_leases";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseFile {
    /// `host:pid`, for messages.
    owner: String,
    token: String,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    /// Who holds it, precisely enough to tell on this machine whether it still runs (absent in
    /// leases written by earlier versions, which are trusted until they expire).
    #[serde(default)]
    process: Option<Process>,
    /// Given back: anyone may take it.
    #[serde(default)]
    released: bool,
}

/// A process, as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Process {
    /// The boot id and pid namespace: pids mean the same process only within both.
    machine: String,
    pid: u32,
    /// Its start, in clock ticks since boot (`/proc/PID/stat`), so a reused pid is told apart.
    started: u64,
}

impl Process {
    /// This process, where `/proc` tells (Linux); `None` elsewhere.
    fn current() -> Option<Process> {
        static CURRENT: LazyLock<Option<Process>> = LazyLock::new(|| {
            let pid = std::process::id();
            Some(Process { machine: machine()?, pid, started: start_ticks(pid)? })
        });
        CURRENT.clone()
    }

    /// Whether it is known to have ended: on this machine, its pid is gone or is another process.
    fn is_gone(&self) -> bool {
        machine().is_some_and(|here| here == self.machine) && start_ticks(self.pid) != Some(self.started)
    }
}

fn machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), namespace.display()))
}

/// The start of a running process (field 22 of `/proc/PID/stat`, counted after the command name,
/// which may hold spaces); `None` when there is none, or it has ended and only waits to be reaped
/// (a zombie, state `Z` or `X`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// A shard another process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub shard: u32,
    pub owner: String,
    /// Seconds since the Unix epoch at which it expires.
    pub expires_at: u64,
}

impl Held {
    /// When the lease runs out, in words: `03:12:45 UTC (in 9 min 40 s)`.
    pub fn until(&self) -> String {
        let at = self.expires_at % 86_400;
        let left = self.expires_at.saturating_sub(now());
        format!("{:02}:{:02}:{:02} UTC (in {} min {} s)", at / 3600, at / 60 % 60, at % 60, left / 60, left % 60)
    }
}

/// What happened while taking a lease, for the user to be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A live holder has it: the taker waits until it is given back or expires.
    Waiting(Held),
    /// Its holder is gone (ended on this machine, or its lease expired): taken over.
    TookOver { held: Held, holder_gone: bool },
}

impl LeaseEvent {
    /// The line the user reads; `who` names the command that takes the lease.
    pub fn message(&self, who: &str) -> String {
        match self {
            LeaseEvent::Waiting(held) => {
                format!("{who}: waiting for shard {}, leased by {} until {}", held.shard, held.owner, held.until())
            }
            LeaseEvent::TookOver { held, holder_gone: true } => {
                format!("{who}: took over shard {} from {}, which is no longer running", held.shard, held.owner)
            }
            LeaseEvent::TookOver { held, holder_gone: false } => {
                format!("{who}: took over shard {} from {}, whose lease expired", held.shard, held.owner)
            }
        }
    }
}

/// A lease this process holds; dropping it gives the shard back.
pub struct Lease {
    dataset: Dataset,
    shard: u32,
    state: Arc<LeaseState>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// What this process knows of a lease it holds, shared by the holder, its renewer and the writes.
#[derive(Debug)]
struct LeaseState {
    token: String,
    lost: AtomicBool,
}

/// A dataset's location and a shard number.
type ShardKey = (String, u32);

/// The leases this process holds: every shard write looks here.
static HELD: LazyLock<Mutex<HashMap<ShardKey, Arc<LeaseState>>>> = LazyLock::new(Default::default);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn relative(shard: u32) -> String {
    format!("{DIR}/part-{shard:04}.json")
}

/// Who this process is, for lease files: host and process id.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// The outcome of one try at taking a lease.
enum Attempt {
    Taken(Box<Lease>, Option<LeaseEvent>),
    Held(Held),
    /// Another taker changed the file between our read and our write: look again.
    Raced,
}

/// A token no other taking of a lease shares.
fn new_token(shard: u32) -> String {
    crate::ids::content_id("lease", &[&owner(), &shard.to_string(), &format!("{:?}", SystemTime::now())])
}

/// A lease file as found: free to take (with who had it, if it was taken from someone), or held.
enum Found {
    Free(Option<LeaseEvent>),
    Held(Held),
}

impl LeaseFile {
    fn ours(token: &str) -> LeaseFile {
        LeaseFile {
            owner: owner(),
            token: token.into(),
            expires_at: now() + TTL.as_secs(),
            process: Process::current(),
            released: false,
        }
    }

    fn bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("serializes").into()
    }

    fn parse(bytes: &[u8]) -> Option<LeaseFile> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether `token`'s holder still has it.
    fn is_held_by(&self, token: &str) -> bool {
        self.token == token && !self.released && self.expires_at > now()
    }

    fn found(self, shard: u32) -> Found {
        let held = Held { shard, owner: self.owner, expires_at: self.expires_at };
        if self.released {
            Found::Free(None)
        } else if self.expires_at <= now() {
            Found::Free(Some(LeaseEvent::TookOver { held, holder_gone: false }))
        } else if self.process.as_ref().is_some_and(Process::is_gone) {
            Found::Free(Some(LeaseEvent::TookOver { held, holder_gone: true }))
        } else {
            Found::Held(held)
        }
    }
}

impl Dataset {
    /// Takes the lease on `shard`, waiting while a live holder has it; `tell` hears of the wait
    /// (once) and of a takeover.
    pub fn lease(&self, shard: u32, tell: &dyn Fn(&LeaseEvent)) -> Result<Lease, DatasetError> {
        let token = new_token(shard);
        let mut told = false;
        loop {
            match self.take(shard, &token)? {
                Attempt::Taken(lease, event) => {
                    if let Some(event) = &event {
                        tell(event);
                    }
                    return Ok(*lease);
                }
                Attempt::Held(held) => {
                    if !told {
                        tell(&LeaseEvent::Waiting(held.clone()));
                        told = true;
                    }
                    std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(held.expires_at.saturating_sub(now()))));
                }
                Attempt::Raced => {}
            }
        }
    }

    /// Takes the lease on `shard` if nobody live holds it; `None` (at once) when somebody does.
    /// For work that may as well be left to the holder (compacting what it is compacting).
    pub fn try_lease(&self, shard: u32) -> Result<Option<Lease>, DatasetError> {
        let token = new_token(shard);
        loop {
            match self.take(shard, &token)? {
                Attempt::Taken(lease, _) => return Ok(Some(*lease)),
                Attempt::Held(_) => return Ok(None),
                Attempt::Raced => {}
            }
        }
    }

    /// One try at taking the lease on `shard` with `token`.
    fn take(&self, shard: u32, token: &str) -> Result<Attempt, DatasetError> {
        let ours = LeaseFile::ours(token).bytes();
        let taken = match self.store.get_versioned(&relative(shard))? {
            None => self.store.put_if_absent(&relative(shard), ours)?.then_some(None),
            // A file that does not parse is a torn or foreign write: nobody's lease.
            Some((bytes, version)) => match LeaseFile::parse(&bytes).map_or(Found::Free(None), |f| f.found(shard)) {
                Found::Free(event) => self.store.replace_if(&relative(shard), ours, &version)?.then_some(event),
                Found::Held(held) => return Ok(Attempt::Held(held)),
            },
        };
        // `None`: another taker won the race.
        Ok(taken.map_or(Attempt::Raced, |event| {
            Attempt::Taken(Box::new(Lease::start(self.clone(), shard, token.to_string())), event)
        }))
    }

    /// Runs `work` on each of `shards` in turn, each under its lease (`stage` names who waits or
    /// takes over, in the message printed).
    pub fn each_leased<E: From<DatasetError>>(
        &self,
        shards: &[u32],
        stage: &str,
        mut work: impl FnMut(u32) -> Result<(), E>,
    ) -> Result<(), E> {
        for &shard in shards {
            let lease = self.lease(shard, &|event| eprintln!("{}", event.message(stage)))?;
            work(shard)?;
            drop(lease);
        }
        Ok(())
    }

    /// Fails with [`DatasetError::LeaseLost`] if this process leased `shard` and no longer holds
    /// the lease (it ran out or another process took it over). Called before every write of a
    /// shard; a shard this process never leased (finalize's and migration's writes, which refuse
    /// to run beside shard work) passes.
    pub(crate) fn check_lease(&self, shard: u32) -> Result<(), DatasetError> {
        let state = HELD.lock().unwrap().get(&(self.location().to_string(), shard)).cloned();
        let Some(state) = state else { return Ok(()) };
        if !state.lost.load(Ordering::SeqCst) {
            let file = self.store.get(&relative(shard))?.and_then(|b| LeaseFile::parse(&b));
            if file.as_ref().is_some_and(|f| f.is_held_by(&state.token)) {
                return Ok(());
            }
            state.lost.store(true, Ordering::SeqCst);
        }
        let holder = self.holder(shard)?.map(|h| h.owner);
        Err(DatasetError::LeaseLost { location: self.location().to_string(), shard, holder })
    }

    fn holder(&self, shard: u32) -> Result<Option<Held>, DatasetError> {
        let Some(bytes) = self.store.get(&relative(shard))? else { return Ok(None) };
        Ok(LeaseFile::parse(&bytes).and_then(|f| match f.found(shard) {
            Found::Held(held) => Some(held),
            Found::Free(_) => None,
        }))
    }

    /// The shards leased right now (by live holders).
    pub fn leased(&self) -> Result<Vec<Held>, DatasetError> {
        let mut held = Vec::new();
        for name in self.store.list(DIR)? {
            let shard = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok());
            if let Some(lease) = shard.map(|s| self.holder(s)).transpose()?.flatten() {
                held.push(lease);
            }
        }
        Ok(held)
    }
}

impl Lease {
    fn start(dataset: Dataset, shard: u32, token: String) -> Lease {
        let state = Arc::new(LeaseState { token, lost: AtomicBool::new(false) });
        HELD.lock().unwrap().insert((dataset.location().to_string(), shard), state.clone());
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renewer = {
            let (dataset, state, stop) = (dataset.clone(), state.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("codegym-lease-{shard}"))
                .spawn(move || renew_until_stopped(&dataset, shard, &state, &stop))
                .expect("spawn the lease renewer")
        };
        Lease { dataset, shard, state, stop, renewer: Some(renewer) }
    }

    /// Whether the lease was lost (it ran out, or another process took it over): the holder must
    /// not write the shard any more, and its writes refuse to.
    pub fn lost(&self) -> bool {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// Replaces the lease file with `update(file)` if it is still ours; whether it was.
    fn update_if_ours(dataset: &Dataset, shard: u32, token: &str, update: impl Fn(&mut LeaseFile)) -> bool {
        let Ok(Some((bytes, version))) = dataset.store.get_versioned(&relative(shard)) else { return false };
        let Some(mut file) = LeaseFile::parse(&bytes).filter(|f| f.is_held_by(token)) else { return false };
        update(&mut file);
        dataset.store.replace_if(&relative(shard), file.bytes(), &version).unwrap_or(false)
    }
}

/// Pushes the lease's expiry forward every third of its lifetime until told to stop; marks the
/// lease lost when it finds the file is no longer its own.
fn renew_until_stopped(dataset: &Dataset, shard: u32, state: &LeaseState, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, signal) = stop;
    let mut guard = stopped.lock().unwrap();
    loop {
        let (next, _) = signal.wait_timeout_while(guard, TTL / 3, |stopped| !*stopped).unwrap();
        guard = next;
        if *guard {
            return;
        }
        if !Lease::update_if_ours(dataset, shard, &state.token, |file| file.expires_at = now() + TTL.as_secs()) {
            state.lost.store(true, Ordering::SeqCst);
            return;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        HELD.lock().unwrap().remove(&(self.dataset.location().to_string(), self.shard));
        // Given back by a conditional write, never a delete: a delete cannot be made conditional
        // on an object store, and could remove the lease of a process that took this one over.
        Lease::update_if_ours(&self.dataset, self.shard, &self.state.token, |file| file.released = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Table;

    fn dataset() -> (tempfile::TempDir, Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        (dir, data)
    }

    fn never(_: &LeaseEvent) {
        panic!("nobody holds it")
    }

    #[test]
    fn a_shard_has_one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let (_dir, data) = dataset();
        let lease = data.lease(2, &never).unwrap();
        assert_eq!(data.leased().unwrap().iter().map(|h| h.shard).collect::<Vec<_>>(), [2]);
        drop(lease);
        assert!(data.leased().unwrap().is_empty());
        let again = data.lease(2, &never).unwrap();
        drop(again);
        // A holder elsewhere whose lease expired long ago.
        let dead = LeaseFile { owner: "gone:1".into(), token: "t".into(), expires_at: 1, process: None, released: false };
        data.store.put(&relative(3), dead.bytes()).unwrap();
        assert!(data.leased().unwrap().is_empty(), "an expired lease does not count");
        let events = Mutex::new(Vec::new());
        let taken = data.lease(3, &|e| events.lock().unwrap().push(e.message("test"))).unwrap();
        assert!(!taken.lost());
        assert_eq!(*events.lock().unwrap(), ["test: took over shard 3 from gone:1, whose lease expired"]);
        assert_eq!(data.leased().unwrap()[0].owner, owner());
    }

    #[test]
    fn a_holder_that_died_on_this_machine_is_taken_over_at_once() {
        let (_dir, data) = dataset();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let started = start_ticks(pid);
        assert!(started.is_some(), "a running process has a start");
        child.kill().unwrap();
        // Killed and not reaped yet: a zombie has ended all the same.
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(start_ticks(pid), None);
        let dead = LeaseFile {
            owner: format!("here:{pid}"),
            token: "t".into(),
            expires_at: now() + 600,
            process: Some(Process { machine: machine().unwrap(), pid, started: started.unwrap() }),
            released: false,
        };
        data.store.put(&relative(1), dead.bytes()).unwrap();
        assert!(data.leased().unwrap().is_empty(), "a dead holder's lease does not count");
        let events = Mutex::new(Vec::new());
        let _lease = data.lease(1, &|e| events.lock().unwrap().push(e.message("build"))).unwrap();
        assert_eq!(*events.lock().unwrap(), [format!("build: took over shard 1 from here:{pid}, which is no longer running")]);
        child.wait().unwrap();

        // A live process elsewhere (another machine) is trusted until its lease expires.
        let elsewhere = Process { machine: "another-boot/pid:[1]".into(), pid, started: 0 };
        let file = LeaseFile { process: Some(elsewhere), ..dead };
        assert!(matches!(file.found(1), Found::Held(_)));
    }

    #[test]
    fn a_writer_whose_lease_was_lost_writes_nothing() {
        let (_dir, data) = dataset();
        let lease = data.lease(0, &never).unwrap();
        data.write_shard(Table::Splits, 0, &[serde_json::json!({"env_id": "a", "split": "train"})]).unwrap();
        let written = data.store.get(&Dataset::part(Table::Splits, 0)).unwrap();
        // Another process takes the shard over (as after this one's lease ran out unrenewed).
        let (_, version) = data.store.get_versioned(&relative(0)).unwrap().unwrap();
        let thief = LeaseFile::ours("another-token");
        assert!(data.store.replace_if(&relative(0), thief.bytes(), &version).unwrap());
        let err = data.write_shard(Table::Splits, 0, &[serde_json::json!({"env_id": "b", "split": "train"})]).unwrap_err();
        assert!(matches!(err, DatasetError::LeaseLost { shard: 0, .. }), "{err}");
        assert!(lease.lost());
        assert_eq!(data.store.get(&Dataset::part(Table::Splits, 0)).unwrap(), written, "the shard is as it was");
        drop(lease);
        let file = LeaseFile::parse(&data.store.get(&relative(0)).unwrap().unwrap()).unwrap();
        assert_eq!(file.token, "another-token", "giving back a lost lease leaves the new holder's alone");
        assert!(!file.released);
    }

    #[test]
    fn of_two_takers_of_a_free_lease_one_wins() {
        let (_dir, data) = dataset();
        let expired = LeaseFile { owner: "gone:1".into(), token: "t".into(), expires_at: 1, process: None, released: false };
        data.store.put(&relative(2), expired.bytes()).unwrap();
        let (_, version) = data.store.get_versioned(&relative(2)).unwrap().unwrap();
        assert!(data.store.replace_if(&relative(2), LeaseFile::ours("first").bytes(), &version).unwrap());
        assert!(!data.store.replace_if(&relative(2), LeaseFile::ours("second").bytes(), &version).unwrap());
    }
}
