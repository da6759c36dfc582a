//! Battery episodes played as `codegym serve` plays a session: every call a job of its own on the
//! interpreter that holds the session (`session_start`, `session_step`, the session module's
//! functions), and, as after an eviction, the state restored before a call (the public modules and
//! the environment's module executed anew, the state unpickled). Nothing of the harness is on the
//! guest's stack while environment code runs, as in `codegym serve`: an environment cannot tell
//! these episodes from a trainer's by looking at its callers, and the records of each call are made
//! here, from the job's report, where no later call can reach them.

use super::{EnvSource, OBSERVATION_LIMIT, StepResult};
use crate::sandbox::{Interpreter, Job, JobOutcome, Limits, Sandbox, SandboxError, Variant, Verdict};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Before which calls an episode's state is restored, as after an eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Before every call: the episode starts where an earlier one of this environment with the same
    /// calls so far left off (its course depends only on them; the serving replay checks that).
    Every,
    /// Never, in a new interpreter of its own: the session a trainer starts, held live.
    Never,
    /// Before the calls at these positions.
    At(Vec<usize>),
}

/// One episode to play.
#[derive(Debug, Clone)]
pub struct ServedEpisode<'a> {
    pub config: &'a str,
    pub actions: &'a [String],
    pub restore: Restore,
}

/// The served episodes of one environment, played in order.
#[derive(Debug, Clone)]
pub struct ServedWork<'a> {
    pub env: EnvSource<'a>,
    /// The documented tools: a call to any other name is refused, as `codegym serve` refuses it.
    pub tools: &'a [String],
    pub seed: u64,
    pub variant: Variant,
    pub episodes: Vec<ServedEpisode<'a>>,
}

/// What a session job reported.
struct Report {
    observation: String,
    reward: f64,
    done: bool,
    state: String,
}

impl Report {
    fn of(outcome: &JobOutcome) -> Result<Report, String> {
        let failed = || format!("{}: {}", outcome.verdict.as_str(), outcome.detail.as_deref().unwrap_or("no result"));
        let result = outcome.result.as_ref().filter(|_| outcome.verdict == Verdict::Ok).ok_or_else(failed)?;
        let text = |key: &str| result.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(Report {
            observation: text("observation").unwrap_or_default(),
            reward: result.get("reward").and_then(Value::as_f64).unwrap_or(0.0),
            done: result.get("done").and_then(Value::as_bool).unwrap_or(false),
            state: text("state").ok_or("the session reported no state")?,
        })
    }

    /// The pickled state's size in bytes (it is base64).
    fn state_bytes(&self) -> u64 {
        let padding = self.state.len() - self.state.trim_end_matches('=').len();
        (self.state.len() * 3 / 4 - padding) as u64
    }
}

/// A session after some calls: the last report, the records of the calls, the largest state.
struct Session {
    state: String,
    reward: f64,
    done: bool,
    records: Vec<Value>,
    largest: u64,
}

/// A session restored before every call, after some calls: what it takes to go on from there,
/// and the record of its last call (the records before it are those of the shorter prefixes).
struct Known {
    state: String,
    reward: f64,
    done: bool,
    largest: u64,
    record: Option<Value>,
}

/// Sessions are kept for later episodes only up to this state size: a player holds many of them.
const KEPT_STATE_BYTES: usize = 64 << 10;

/// The interpreters and the sessions of one environment's episodes.
struct Player<'w, 'a> {
    sandbox: &'w Sandbox,
    work: &'w ServedWork<'a>,
    limits: Limits,
    interpreter: Option<Interpreter>,
    /// The module's bytecode, compiled in an interpreter where no environment code had run.
    code: Option<String>,
    /// Sessions restored before every call, by configuration and calls made.
    known: BTreeMap<(&'a str, Vec<String>), Known>,
    jobs: u64,
    /// Why the sandbox could not give an interpreter: a failure of the run, not of an episode.
    broken: Option<SandboxError>,
}

impl<'w, 'a> Player<'w, 'a> {
    fn job(&mut self, function: &str, args: Value) -> Result<JobOutcome, String> {
        self.jobs += 1;
        let job = Job { seed: self.work.seed ^ self.jobs, variant: self.work.variant, ..Job::call(function, args, self.limits) };
        let interpreter = match &mut self.interpreter {
            Some(interpreter) if interpreter.usable() => interpreter,
            slot => match self.sandbox.interpreter(self.work.variant) {
                Ok(interpreter) => slot.insert(interpreter),
                Err(failure) => {
                    let why = failure.to_string();
                    self.broken = Some(failure);
                    return Err(why);
                }
            },
        };
        Ok(interpreter.run(&job))
    }

    /// The module's bytecode; compiled on first use, in the interpreter about to run it.
    fn code(&mut self) -> Result<String, String> {
        if let Some(code) = &self.code {
            return Ok(code.clone());
        }
        let outcome = self.job("session_compile", json!({ "source": self.work.env.code, "env_name": self.work.env.name }))?;
        let code = match (&outcome.verdict, &outcome.result) {
            (Verdict::Ok, Some(Value::String(code))) => code.clone(),
            _ => return Err(format!("the module does not compile: {}", outcome.detail.as_deref().unwrap_or("no result"))),
        };
        Ok(self.code.insert(code).clone())
    }

    fn start(&mut self, config: &str) -> Result<Session, String> {
        let code = self.code()?;
        let args =
            json!({ "code": code, "env_name": self.work.env.name, "config": config, "max_observation": OBSERVATION_LIMIT });
        let report = Report::of(&self.job("session_start", args)?)?;
        let largest = report.state_bytes();
        Ok(Session { state: report.state, reward: report.reward, done: report.done, records: Vec::new(), largest })
    }

    /// One call of the session; `restore`: the state restored first, as in another interpreter.
    fn call(&mut self, session: &mut Session, action: &str, restore: bool) -> Result<(), String> {
        let refused = super::refusal(action, self.work.tools);
        let observation = match &refused {
            Some(refused) => refused.clone(),
            None => {
                if restore {
                    self.restore(session)?;
                }
                let args = json!({ "action": action, "max_observation": OBSERVATION_LIMIT });
                let report = Report::of(&self.job("session_step", args)?)?;
                session.largest = session.largest.max(report.state_bytes());
                (session.state, session.reward, session.done) = (report.state, report.reward, report.done);
                report.observation
            }
        };
        let record = json!({
            "action": action,
            "observation": observation,
            "reward": session.reward,
            "done": session.done,
            "refused": refused.is_some(),
        });
        session.records.push(record);
        Ok(())
    }

    /// The session's state brought back as after an eviction: the public modules and the
    /// environment's module executed anew (as another interpreter has them), the state unpickled.
    fn restore(&mut self, session: &Session) -> Result<(), String> {
        let code = self.code()?;
        let args = json!({ "code": code, "env_name": self.work.env.name, "state": session.state, "anew": true });
        let outcome = self.job("session_restore", args)?;
        match outcome.verdict {
            Verdict::Ok => Ok(()),
            _ => Err(format!("the state could not be restored: {}", outcome.detail.as_deref().unwrap_or("no detail"))),
        }
    }

    fn play(&mut self, episode: &ServedEpisode<'a>) -> Result<Value, String> {
        if episode.restore == Restore::Never {
            // A new episode never shares an interpreter with the one before it, as in serve.
            self.interpreter = None;
        }
        let (mut made, mut session) = match self.known_prefix(episode) {
            Some(known) => known,
            None => (0, self.start(episode.config)?),
        };
        // Each prefix is kept only after the shorter ones: a kept prefix has all of its records.
        let mut keep = episode.restore == Restore::Every && self.remember(episode.config, &episode.actions[..made], &session);
        while made < episode.actions.len() && !session.done {
            let restore = match &episode.restore {
                Restore::Every => true,
                Restore::Never => false,
                Restore::At(at) => at.contains(&made),
            };
            self.call(&mut session, &episode.actions[made], restore)?;
            made += 1;
            keep = keep && self.remember(episode.config, &episode.actions[..made], &session);
        }
        Ok(json!({ "steps": session.records, "state_bytes": session.largest }))
    }

    /// The longest prefix of the episode's calls an earlier episode restored before every call
    /// made, and the session after it.
    fn known_prefix(&self, episode: &ServedEpisode<'a>) -> Option<(usize, Session)> {
        if episode.restore != Restore::Every {
            return None;
        }
        let known = |made: usize| self.known.get(&(episode.config, episode.actions[..made].to_vec()));
        let made = (0..=episode.actions.len()).rev().find(|&made| known(made).is_some())?;
        let last = known(made)?;
        let records = (1..=made).filter_map(|at| known(at).and_then(|k| k.record.clone())).collect();
        let session = Session { state: last.state.clone(), reward: last.reward, done: last.done, records, largest: last.largest };
        Some((made, session))
    }

    /// Keeps the session after `calls` for later episodes, when its state is small enough; says
    /// whether it did.
    fn remember(&mut self, config: &'a str, calls: &[String], session: &Session) -> bool {
        if session.state.len() > KEPT_STATE_BYTES {
            return false;
        }
        let Session { state, reward, done, largest, records } = session;
        let known =
            Known { state: state.clone(), reward: *reward, done: *done, largest: *largest, record: records.last().cloned() };
        self.known.entry((config, calls.to_vec())).or_insert(known);
        true
    }
}

/// Plays every work's episodes, each work on interpreters of its own, on `threads` worker threads.
/// Returns per work one result per episode, in order: `{"steps", "state_bytes"}`, or why the
/// episode has no evidence (a call that failed or ran out of `limits`). A sandbox that cannot give
/// an interpreter fails the run, as in [`super::run_steps`]: no episode passes for want of one.
pub fn run_served(
    sandbox: &Sandbox,
    works: &[ServedWork],
    limits: Limits,
    threads: usize,
) -> Result<Vec<Vec<StepResult>>, SandboxError> {
    super::on_workers(works.iter().collect(), threads, "codegym-served", |work| play_work(sandbox, work, limits))
}

fn play_work(sandbox: &Sandbox, work: &ServedWork, limits: Limits) -> Result<Vec<StepResult>, SandboxError> {
    let mut player =
        Player { sandbox, work, limits, interpreter: None, code: None, known: BTreeMap::new(), jobs: 0, broken: None };
    let mut results = Vec::with_capacity(work.episodes.len());
    for episode in &work.episodes {
        let started = std::time::Instant::now();
        let value = player.play(episode);
        if let Some(failure) = player.broken.take() {
            return Err(failure);
        }
        let verdict = if value.is_ok() { Verdict::Ok } else { Verdict::Error };
        results.push(StepResult { value, verdict, duration_ms: started.elapsed().as_millis() as u64 });
    }
    Ok(results)
}
