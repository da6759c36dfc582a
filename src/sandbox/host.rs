//! What the guest sees of the host: the store state, the memory cap, a virtual clock, seeded
//! randomness and our own `poll_oneoff`. Everything here is deterministic: a job observes the same
//! time and the same random bytes however the host is loaded and whichever jobs ran before it.

use super::worker::Shared;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The data of every sandbox `Store`.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryCap,
    pub(crate) shared: Arc<Shared>,
}

/// The guest grew its linear memory past the job's cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the guest asked for {desired} bytes, the cap is {cap}")]
pub(crate) struct MemoryLimitExceeded {
    pub desired: usize,
    pub cap: usize,
}

/// Caps linear memory at the value the worker sets per job. Growth past the cap is an error, which
/// wasmtime turns into a trap: the guest never sees a `MemoryError` it could catch.
pub(crate) struct MemoryCap {
    pub(crate) shared: Arc<Shared>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let cap = self.shared.memory_cap.load(Ordering::Relaxed);
        if desired > cap {
            return Err(MemoryLimitExceeded { desired, cap }.into());
        }
        self.shared.memory_now.store(desired, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Each clock reading advances virtual time by this much, so busy-wait loops end deterministically
/// and elapsed-time measurements are positive.
const NANOS_PER_READING: u64 = 1_000;

/// Virtual time: nanoseconds since the job started (advanced by readings and by sleeps), and the
/// wall-clock second the job started at (set per job by its variant).
#[derive(Clone, Default)]
pub(crate) struct VirtualClock {
    elapsed: Arc<AtomicU64>,
    start_secs: Arc<AtomicU64>,
}

impl VirtualClock {
    /// Restarts the clock at `start_secs` since the Unix epoch.
    pub(crate) fn restart(&self, start_secs: u64) {
        self.elapsed.store(0, Ordering::Relaxed);
        self.start_secs.store(start_secs, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> u64 {
        self.elapsed.fetch_add(NANOS_PER_READING, Ordering::Relaxed)
    }

    fn advance(&self, nanos: u64) {
        self.elapsed.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn wall_nanos(&self, elapsed: u64) -> u64 {
        self.start_secs.load(Ordering::Relaxed) * 1_000_000_000 + elapsed
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(NANOS_PER_READING)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.wall_nanos(self.read()))
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        NANOS_PER_READING
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// Random bytes from a per-job seed (a BLAKE3 output stream), shared by the secure and insecure
/// WASI sources. CPython's hash seed and `os.urandom` draw from it.
#[derive(Clone)]
pub(crate) struct JobRandom(Arc<Mutex<blake3::OutputReader>>);

impl JobRandom {
    pub(crate) fn new(seed: u64) -> JobRandom {
        JobRandom(Arc::new(Mutex::new(Self::stream(seed))))
    }

    pub(crate) fn reseed(&self, seed: u64) {
        *self.0.lock().unwrap() = Self::stream(seed);
    }

    fn stream(seed: u64) -> blake3::OutputReader {
        let mut hasher = blake3::Hasher::new_derive_key("codegym sandbox random v1");
        hasher.update(&seed.to_le_bytes());
        hasher.finalize_xof()
    }
}

impl rand_core::TryRng for JobRandom {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.lock().unwrap().fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.lock().unwrap().fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.lock().unwrap().fill(dst);
        Ok(())
    }
}

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;

/// Replaces WASI's `poll_oneoff`. The stock one sleeps in real time inside a host call, where no
/// epoch deadline can interrupt it (`time.sleep(1e9)` would hang a worker). Ours never blocks:
/// clock subscriptions fire at once and advance the virtual clock by the shortest timeout; fd
/// subscriptions (only stdio exists) are reported ready.
pub(crate) fn add_poll_oneoff(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, GuestState>, subs: i32, events: i32, count: i32, nevents: i32| -> wasmtime::Result<i32> {
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                wasmtime::bail!("the guest exports no memory");
            };
            let clock = caller.data().shared.clock.clone();
            let request = PollRequest {
                subs: subs as u32 as usize,
                events: events as u32 as usize,
                count: count as u32 as usize,
                nevents: nevents as u32 as usize,
            };
            Ok(poll_oneoff(memory.data_mut(&mut caller), &clock, request))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The booting interpreter asked for the time right after announcing it is ready: the moment an
/// image is taken (the driver holds the GIL there, so the host can call into the interpreter later).
#[derive(Debug, thiserror::Error)]
#[error("the interpreter is booted")]
pub(crate) struct SnapshotPoint;

/// Replaces WASI's `clock_time_get` with the same virtual clock, plus the snapshot trigger: once
/// the host has armed it (the driver announced it is ready), the next reading traps.
pub(crate) fn add_clock_time_get(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "clock_time_get",
        |mut caller: Caller<'_, GuestState>, id: i32, _precision: i64, out: i32| -> wasmtime::Result<i32> {
            let shared = caller.data().shared.clone();
            if shared.snapshot_armed() {
                return Err(SnapshotPoint.into());
            }
            let now = match id {
                0 => shared.clock.wall_nanos(shared.clock.read()),
                1 => shared.clock.read(),
                2 | 3 => return Ok(ERRNO_BADF),
                _ => return Ok(ERRNO_INVAL),
            };
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                wasmtime::bail!("the guest exports no memory");
            };
            let at = out as u32 as usize;
            match memory.data_mut(&mut caller).get_mut(at..at + 8) {
                Some(slot) => slot.copy_from_slice(&now.to_le_bytes()),
                None => return Ok(ERRNO_FAULT),
            }
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

struct PollRequest {
    subs: usize,
    events: usize,
    count: usize,
    nevents: usize,
}

fn poll_oneoff(memory: &mut [u8], clock: &VirtualClock, request: PollRequest) -> i32 {
    let PollRequest { subs, events, count, nevents } = request;
    if count == 0 {
        return ERRNO_INVAL;
    }
    let in_bounds = |start: usize, len: usize| start.checked_add(len).is_some_and(|end| end <= memory.len());
    if !in_bounds(subs, count * SUBSCRIPTION_SIZE) || !in_bounds(events, count * EVENT_SIZE) || !in_bounds(nevents, 4) {
        return ERRNO_FAULT;
    }
    let read_u64 = |memory: &[u8], at: usize| u64::from_le_bytes(memory[at..at + 8].try_into().unwrap());
    let now = clock.elapsed.load(Ordering::Relaxed);
    let mut fired: Vec<(u64, u8)> = Vec::new();
    let mut timers: Vec<(u64, u64)> = Vec::new();
    for i in 0..count {
        let sub = subs + i * SUBSCRIPTION_SIZE;
        let userdata = read_u64(memory, sub);
        match memory[sub + 8] {
            EVENTTYPE_CLOCK => {
                let clock_id = u32::from_le_bytes(memory[sub + 16..sub + 20].try_into().unwrap());
                let timeout = read_u64(memory, sub + 24);
                let absolute = memory[sub + 40] & 1 == 1;
                let current = if clock_id == 0 { clock.wall_nanos(now) } else { now };
                let wait = if absolute { timeout.saturating_sub(current) } else { timeout };
                timers.push((userdata, wait));
            }
            kind @ (1 | 2) => fired.push((userdata, kind)),
            _ => return ERRNO_INVAL,
        }
    }
    if fired.is_empty() {
        let shortest = timers.iter().map(|&(_, wait)| wait).min().unwrap_or(0);
        clock.advance(shortest);
        fired.extend(timers.iter().filter(|&&(_, wait)| wait <= shortest).map(|&(userdata, _)| (userdata, EVENTTYPE_CLOCK)));
    }
    for (i, (userdata, kind)) in fired.iter().enumerate() {
        let event = &mut memory[events + i * EVENT_SIZE..events + (i + 1) * EVENT_SIZE];
        event.fill(0);
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        event[10] = *kind;
    }
    memory[nevents..nevents + 4].copy_from_slice(&(fired.len() as u32).to_le_bytes());
    ERRNO_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock_sub(memory: &mut [u8], at: usize, userdata: u64, timeout: u64) {
        memory[at..at + 8].copy_from_slice(&userdata.to_le_bytes());
        memory[at + 8] = EVENTTYPE_CLOCK;
        memory[at + 16..at + 20].copy_from_slice(&1u32.to_le_bytes());
        memory[at + 24..at + 32].copy_from_slice(&timeout.to_le_bytes());
    }

    #[test]
    fn sleeping_advances_virtual_time_without_blocking() {
        let mut memory = vec![0u8; 1024];
        clock_sub(&mut memory, 0, 7, 5_000_000_000);
        clock_sub(&mut memory, 48, 8, 9_000_000_000);
        let clock = VirtualClock::default();
        let started = std::time::Instant::now();
        let errno = poll_oneoff(&mut memory, &clock, PollRequest { subs: 0, events: 512, count: 2, nevents: 1000 });
        assert_eq!(errno, ERRNO_SUCCESS);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(u32::from_le_bytes(memory[1000..1004].try_into().unwrap()), 1, "only the shortest timer fires");
        assert_eq!(u64::from_le_bytes(memory[512..520].try_into().unwrap()), 7);
        assert_eq!(clock.elapsed.load(Ordering::Relaxed), 5_000_000_000);
    }

    #[test]
    fn out_of_bounds_requests_are_refused() {
        let mut memory = vec![0u8; 64];
        let clock = VirtualClock::default();
        let errno = poll_oneoff(&mut memory, &clock, PollRequest { subs: 0, events: 48, count: 2, nevents: 60 });
        assert_eq!(errno, ERRNO_FAULT);
        assert_eq!(poll_oneoff(&mut memory, &clock, PollRequest { subs: 0, events: 0, count: 0, nevents: 0 }), ERRNO_INVAL);
    }

    #[test]
    fn job_random_is_a_function_of_the_seed() {
        use rand_core::TryRng;
        let mut a = JobRandom::new(1);
        let mut b = JobRandom::new(2);
        let first = a.try_next_u64().unwrap();
        assert_ne!(first, b.try_next_u64().unwrap());
        a.reseed(1);
        assert_eq!(a.try_next_u64().unwrap(), first);
    }
}
