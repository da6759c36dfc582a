//! The threads the pool's calls run on, and which call gets a thread next.
//!
//! Guest code runs to its end (or its time limit) on the thread that started it, so a call that
//! spins to the step timeout holds its thread for the whole timeout. With one FIFO queue over a
//! fixed set of threads, a few such calls take every thread and every other session waits behind
//! them: 4 sessions spinning to a 10 s limit made another session's 9 ms step take 13-30 s. So
//! calls go into two lanes:
//! - the *prompt* lane, for sessions whose last call was not slow. It has `threads` threads ready
//!   at all times: a call that runs past [`OVERDUE_AFTER`] stops counting against them (a watcher
//!   notices, and starts a thread in its place), and the thread it ran on ends with it once the
//!   lane has its `threads` again. A session's first long call therefore delays others by at
//!   most [`OVERDUE_AFTER`], never by its whole run.
//! - the *slow* lane, for sessions whose last call ran past [`SLOW_CALL`]: `threads` threads of
//!   its own, in FIFO order. Slow sessions wait for each other there, and the prompt lane's
//!   threads keep their share of the CPU.
//!
//! The two thresholds differ on purpose: replacing a thread is cheap, so it happens early; moving
//! a session to the slow lane makes it wait behind the slow ones, so only a call that is slow by
//! any measure (not an episode start on a busy machine) does that. A session moves back to the
//! prompt lane as soon as one of its calls is quick again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A prompt call running longer than this gives up its thread's place to a new thread: well
/// above a step's few milliseconds, and short enough that a call that will spin to the timeout
/// delays nobody noticeably.
pub const OVERDUE_AFTER: Duration = Duration::from_millis(50);

/// A call that ran longer than this sends its session's next call to the slow lane: far above
/// any sound step or episode start, far below a step timeout.
pub const SLOW_CALL: Duration = Duration::from_secs(1);

pub(crate) type Task = Box<dyn FnOnce() + Send>;

/// Where a call waits for a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Prompt,
    Slow,
}

/// The pool's threads; cloning shares them.
#[derive(Clone)]
pub(crate) struct Workers {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes idle prompt threads, idle slow threads, and the watcher.
    prompt_ready: Condvar,
    slow_ready: Condvar,
    watch: Condvar,
    /// Threads per lane.
    threads: usize,
    stack_bytes: usize,
}

#[derive(Default)]
struct State {
    prompt: VecDeque<Task>,
    slow: VecDeque<Task>,
    /// Every prompt-lane thread, by number.
    prompt_threads: HashMap<u64, Slot>,
    next_thread: u64,
    stopping: bool,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// What a prompt-lane thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Idle,
    /// Running a call started at this instant.
    Running(Instant),
    /// Running a call that went past [`OVERDUE_AFTER`]: another thread took its place.
    Overdue,
}

impl State {
    /// Prompt threads free or running a call that is not overdue.
    fn prompt_places(&self) -> usize {
        self.prompt_threads.values().filter(|slot| **slot != Slot::Overdue).count()
    }
}

impl Workers {
    /// Starts `threads` threads per lane (at least one), with stacks of `stack_bytes`.
    pub(crate) fn new(threads: usize, stack_bytes: usize) -> Workers {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            prompt_ready: Condvar::new(),
            slow_ready: Condvar::new(),
            watch: Condvar::new(),
            threads: threads.max(1),
            stack_bytes,
        });
        let workers = Workers { shared };
        let mut state = workers.shared.state.lock().unwrap();
        for _ in 0..workers.shared.threads {
            workers.start_prompt_thread(&mut state);
            let shared = workers.shared.clone();
            let handle = workers.spawn("slow", move || shared.run_slow());
            state.handles.push(handle);
        }
        let shared = workers.shared.clone();
        let watcher = workers.spawn("watch", move || shared.watch_prompt());
        state.handles.push(watcher);
        drop(state);
        workers
    }

    fn spawn(&self, role: &str, body: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name(format!("codegym-serve-{role}"))
            .stack_size(self.shared.stack_bytes)
            .spawn(body)
            .expect("spawn a serve worker thread")
    }

    fn start_prompt_thread(&self, state: &mut State) {
        let number = state.next_thread;
        state.next_thread += 1;
        state.prompt_threads.insert(number, Slot::Idle);
        let shared = self.shared.clone();
        let handle = self.spawn("prompt", move || shared.run_prompt(number));
        state.handles.push(handle);
    }

    /// Queues `task` in `lane`; `false` when the threads are stopping (the task is dropped).
    pub(crate) fn submit(&self, lane: Lane, task: Task) -> bool {
        let mut state = self.shared.state.lock().unwrap();
        if state.stopping {
            return false;
        }
        match lane {
            Lane::Prompt => {
                state.prompt.push_back(task);
                self.shared.prompt_ready.notify_one();
            }
            Lane::Slow => {
                state.slow.push_back(task);
                self.shared.slow_ready.notify_one();
            }
        }
        true
    }

    /// Lets the threads finish every queued task, then stops them.
    pub(crate) fn shutdown(&self) {
        self.shared.state.lock().unwrap().stopping = true;
        for ready in [&self.shared.prompt_ready, &self.shared.slow_ready, &self.shared.watch] {
            ready.notify_all();
        }
        loop {
            let handles = std::mem::take(&mut self.shared.state.lock().unwrap().handles);
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A prompt-lane thread: runs prompt calls until stopped, or until the call it ran went
    /// overdue and the lane has its places without it.
    fn run_prompt(self: Arc<Self>, number: u64) {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.prompt.pop_front() {
                state.prompt_threads.insert(number, Slot::Running(Instant::now()));
                self.watch.notify_one();
                drop(state);
                task();
                state = self.lock();
                let overdue = state.prompt_threads.get(&number) == Some(&Slot::Overdue);
                if overdue && state.prompt_places() >= self.threads {
                    state.prompt_threads.remove(&number);
                    return;
                }
                state.prompt_threads.insert(number, Slot::Idle);
            } else if state.stopping {
                state.prompt_threads.remove(&number);
                return;
            } else {
                state = self.prompt_ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
    }

    /// A slow-lane thread: runs slow calls, in order, until stopped.
    fn run_slow(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.slow.pop_front() {
                drop(state);
                task();
                state = self.lock();
            } else if state.stopping {
                return;
            } else {
                state = self.slow_ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
    }

    /// Marks prompt calls that run past [`OVERDUE_AFTER`] overdue and starts a thread in the place
    /// of each, sleeping until the next call would go overdue.
    fn watch_prompt(self: Arc<Self>) {
        let workers = Workers { shared: self.clone() };
        let mut state = self.lock();
        while !state.stopping {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut overdue = Vec::new();
            for (&number, slot) in &state.prompt_threads {
                if let Slot::Running(started) = *slot {
                    let due = started + OVERDUE_AFTER;
                    if due <= now {
                        overdue.push(number);
                    } else {
                        next = Some(next.map_or(due, |next| next.min(due)));
                    }
                }
            }
            for number in overdue {
                state.prompt_threads.insert(number, Slot::Overdue);
            }
            while state.prompt_places() < self.threads {
                workers.start_prompt_thread(&mut state);
            }
            state = match next {
                Some(next) => self.watch.wait_timeout(state, next - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0,
                None => self.watch.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A task that reports when it starts and runs until told to end.
    fn held(started: &mpsc::Sender<&'static str>, name: &'static str) -> (Task, mpsc::Sender<()>) {
        let (end, ended) = mpsc::channel::<()>();
        let started = started.clone();
        let task: Task = Box::new(move || {
            started.send(name).unwrap();
            let _ = ended.recv();
        });
        (task, end)
    }

    #[test]
    fn calls_that_run_long_do_not_keep_quick_ones_waiting() {
        let workers = Workers::new(1, 1 << 20);
        let (started, starts) = mpsc::channel();
        // Two calls that will not end until told, on a lane of one thread each.
        let (long_prompt, end_prompt) = held(&started, "long prompt call");
        let (long_slow, end_slow) = held(&started, "long slow call");
        assert!(workers.submit(Lane::Prompt, long_prompt));
        assert!(workers.submit(Lane::Slow, long_slow));
        let mut first: Vec<&str> = vec![starts.recv().unwrap(), starts.recv().unwrap()];
        first.sort();
        assert_eq!(first, ["long prompt call", "long slow call"]);
        // A quick call gets a thread while both still run: the long prompt call went overdue.
        let (quick, end_quick) = held(&started, "quick call");
        assert!(workers.submit(Lane::Prompt, quick));
        assert_eq!(starts.recv().unwrap(), "quick call");
        // A second slow call waits for the first: slow calls take turns.
        let first_ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (order, ordered) = mpsc::channel();
        let seen = first_ended.clone();
        assert!(
            workers.submit(Lane::Slow, Box::new(move || order.send(seen.load(std::sync::atomic::Ordering::SeqCst)).unwrap()))
        );
        end_quick.send(()).unwrap();
        end_prompt.send(()).unwrap();
        first_ended.store(true, std::sync::atomic::Ordering::SeqCst);
        end_slow.send(()).unwrap();
        assert!(ordered.recv().unwrap(), "the second slow call started before the first ended");
        workers.shutdown();
        assert!(workers.shared.lock().prompt_threads.is_empty(), "every thread stopped");
        assert!(!workers.submit(Lane::Prompt, Box::new(|| {})), "a stopped pool takes no call");
    }

    #[test]
    fn shutdown_runs_what_was_queued() {
        let workers = Workers::new(1, 1 << 20);
        let (done, finished) = mpsc::channel();
        for lane in [Lane::Prompt, Lane::Slow, Lane::Prompt] {
            let done = done.clone();
            workers.submit(lane, Box::new(move || done.send(lane).unwrap()));
        }
        workers.shutdown();
        assert_eq!(finished.try_iter().count(), 3);
    }
}
