//! Leases on shards, so that two processes never write the same shard: before a process writes a
//! shard it creates `_leases/part-NNNN.json` (only if absent), with an owner and an expiry that a
//! background thread keeps pushing forward while the lease is held; dropping the lease removes the
//! file. A lease whose holder died expires, and the next process takes it over (a retried pod
//! waits for its predecessor's to run out). `codegym finalize` refuses to run while any shard is
//! leased.

use super::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(600);
const DIR: &str = "_leases";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseFile {
    owner: String,
    token: String,
    expires_at: u64,
}

/// A shard some process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub shard: u32,
    pub owner: String,
    /// Seconds since the Unix epoch at which it expires.
    pub expires_at: u64,
}

/// A lease this process holds; dropping it gives the shard back.
pub struct Lease {
    dataset: Dataset,
    shard: u32,
    token: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

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

impl Dataset {
    /// Takes the lease on `shard`, waiting for a live holder's to expire (calling `waiting` once with
    /// it first).
    pub fn lease(&self, shard: u32, waiting: &dyn Fn(&Held)) -> Result<Lease, DatasetError> {
        let token = crate::ids::content_id("lease", &[&owner(), &shard.to_string(), &format!("{:?}", SystemTime::now())]);
        let mut told = false;
        loop {
            let file = LeaseFile { owner: owner(), token: token.clone(), expires_at: now() + TTL.as_secs() };
            if self.store.put_if_absent(&relative(shard), serde_json::to_vec(&file).expect("serializes").into())? {
                return Ok(Lease::start(self.clone(), shard, token));
            }
            match self.holder(shard)? {
                Some(held) if held.expires_at > now() => {
                    if !told {
                        waiting(&held);
                        told = true;
                    }
                    std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(held.expires_at - now())));
                }
                // Expired (its holder died) or just released: take it over.
                _ => self.store.delete(&relative(shard))?,
            }
        }
    }

    /// Runs `work` on each of `shards` in turn, each under its lease (`stage` names who waits, if
    /// another process holds one).
    pub fn each_leased<E: From<DatasetError>>(
        &self,
        shards: &[u32],
        stage: &str,
        mut work: impl FnMut(u32) -> Result<(), E>,
    ) -> Result<(), E> {
        for &shard in shards {
            let wait =
                |held: &Held| eprintln!("{stage}: waiting for shard {shard}, leased by {} until its lease runs out", held.owner);
            let lease = self.lease(shard, &wait)?;
            work(shard)?;
            drop(lease);
        }
        Ok(())
    }

    fn holder(&self, shard: u32) -> Result<Option<Held>, DatasetError> {
        let Some(bytes) = self.store.get(&relative(shard))? else { return Ok(None) };
        Ok(serde_json::from_slice::<LeaseFile>(&bytes).ok().map(|f| Held { shard, owner: f.owner, expires_at: f.expires_at }))
    }

    /// The shards leased right now (by live holders).
    pub fn leased(&self) -> Result<Vec<Held>, DatasetError> {
        let mut held = Vec::new();
        for name in self.store.list(DIR)? {
            let shard = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok());
            if let Some(lease) = shard.map(|s| self.holder(s)).transpose()?.flatten().filter(|h| h.expires_at > now()) {
                held.push(lease);
            }
        }
        Ok(held)
    }
}

impl Lease {
    fn start(dataset: Dataset, shard: u32, token: String) -> Lease {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (dataset, token, stop, lost) = (dataset.clone(), token.clone(), stop.clone(), lost.clone());
            std::thread::Builder::new()
                .name(format!("codegym-lease-{shard}"))
                .spawn(move || renew_until_stopped(&dataset, shard, &token, &stop, &lost))
                .expect("spawn the lease renewer")
        };
        Lease { dataset, shard, token, stop, renewer: Some(renewer), lost }
    }

    /// Whether the lease was lost (another process took it after it expired): the holder must
    /// not write the shard any more.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Pushes the lease's expiry forward every third of its lifetime until told to stop.
fn renew_until_stopped(dataset: &Dataset, shard: u32, token: &str, stop: &(Mutex<bool>, Condvar), lost: &AtomicBool) {
    let (stopped, signal) = stop;
    let mut guard = stopped.lock().unwrap();
    loop {
        let (next, _) = signal.wait_timeout_while(guard, TTL / 3, |stopped| !*stopped).unwrap();
        guard = next;
        if *guard {
            return;
        }
        let still_ours =
            dataset.store.get(&relative(shard)).ok().flatten().and_then(|b| serde_json::from_slice::<LeaseFile>(&b).ok());
        match still_ours {
            Some(mut file) if file.token == token => {
                file.expires_at = now() + TTL.as_secs();
                let _ = dataset.store.put(&relative(shard), serde_json::to_vec(&file).expect("serializes").into());
            }
            _ => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
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
        let ours = self
            .dataset
            .store
            .get(&relative(self.shard))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<LeaseFile>(&b).ok());
        if ours.is_some_and(|file| file.token == self.token) {
            let _ = self.dataset.store.delete(&relative(self.shard));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_has_one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        let lease = data.lease(2, &|_| panic!("nobody holds it")).unwrap();
        assert_eq!(data.leased().unwrap().iter().map(|h| h.shard).collect::<Vec<_>>(), [2]);
        drop(lease);
        assert!(data.leased().unwrap().is_empty());
        // A holder that died: its lease expired long ago.
        let dead = LeaseFile { owner: "gone:1".into(), token: "t".into(), expires_at: 1 };
        data.store.put(&relative(3), serde_json::to_vec(&dead).unwrap().into()).unwrap();
        assert!(data.leased().unwrap().is_empty(), "an expired lease does not count");
        let taken = data.lease(3, &|_| panic!("an expired lease is taken over at once")).unwrap();
        assert!(!taken.lost());
        assert_eq!(data.leased().unwrap()[0].owner, owner());
    }
}
