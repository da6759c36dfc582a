//! `codegym bench serve`: `codegym serve` against the CodeGym release's step mechanism
//! (`serve_baseline.py`: a warm worker per thread, each step in a forked process, the state kept
//! on success), side by side on this machine with as many workers as we have sandbox threads.
//! Every session replays a kept configuration's stored oracle trajectory, so every episode must
//! end with reward 1 on both sides. Three measurements:
//! - steps per second at saturation: N sessions replaying with no pause (episode starts included);
//! - step latency (p50, p99) with sessions that pause between steps, as agents generating text do;
//! - the same latency while hostile sessions spin every step to the 10 s timeout (an environment
//!   of our own, `serve_hostile_env.py`, served beside the dataset's), the neighbours a policy
//!   writing endless loops makes;
//! - memory of many idle sessions: the server process's resident memory once they are started,
//!   and once their interpreters have been given back.
//!
//! Our side runs the real server in this process and drives it through its CodeGym REST API on
//! loopback (a client the baseline does not pay for); the baseline has no HTTP layer at all.

use crate::dataset::{Dataset, Table};
use crate::naming::{self, Named};
use crate::serve::{PoolSettings, ServeSettings, Server};
use crate::tables::{EnvironmentRow, TaskConfigRow};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BASELINE: &str = include_str!("serve_baseline.py");
const HOSTILE_ENV: &str = include_str!("serve_hostile_env.py");
const HOSTILE_NAME: &str = "SpinEnv";
const HOSTILE_ID: &str = "bench-hostile";
const HOSTILE_CONFIG: &str = "SpinEnv@{}";

/// Resolved settings of `codegym bench serve`.
#[derive(Debug, Clone)]
pub struct ServeBenchSettings {
    pub data: String,
    pub sessions: usize,
    pub steps: usize,
    pub paced_sessions: usize,
    pub pause: Duration,
    pub paced_for: Duration,
    pub idle_sessions: usize,
    /// Sessions spinning every step to the timeout beside the paced ones (0: not measured).
    pub hostile_sessions: usize,
    pub python: String,
    pub threads: usize,
}

/// One kept configuration and its oracle's actions.
#[derive(Clone)]
struct Episode {
    env_id: String,
    /// `{code_id}__{EnvName}@{json}`: unambiguous, as exports name it.
    env_str: String,
    config: String,
    actions: Vec<String>,
}

pub fn serve(settings: &ServeBenchSettings) -> Result<()> {
    let (envs, episodes) = workload(&settings.data)?;
    let episodes = Arc::new(episodes);
    let sandbox = Arc::new(crate::runtime::ensure()?.sandbox()?);
    sandbox.prepare_images()?;
    let client =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("failed to start the client runtime")?;
    println!(
        "codegym bench serve: {} sandbox threads; {} kept configurations of {} replayed from their oracle trajectories",
        settings.threads,
        episodes.len(),
        settings.data
    );
    println!(
        "baseline: the release's step mechanism in {} ({} warm workers, pickle + a forked process per step, no HTTP)",
        settings.python, settings.threads
    );

    let max_live = settings.sessions.max(settings.paced_sessions) + settings.hostile_sessions + 16;
    let server = start_server(&sandbox, settings, &settings.data, max_live, Duration::from_secs(30))?;
    let rest = Rest::new(server.codegym_addr);
    let (ours, rewarded) = client.block_on(saturate(&rest, &episodes, settings))?;
    let base = baseline(
        settings,
        &envs,
        &episodes,
        json!({ "mode": "saturate", "sessions": settings.sessions, "steps": settings.steps }),
    )?;
    let base_rate = base["steps"].as_f64().unwrap_or(0.0) / base["seconds"].as_f64().unwrap_or(f64::INFINITY);
    println!(
        "saturation, {} sessions, {} steps: codegym {ours:.0} steps/s ({} of {} episodes rewarded 1); baseline {base_rate:.0} steps/s ({} of {}); ratio {:.2}x (target >= 3x)",
        settings.sessions,
        settings.steps,
        rewarded.0,
        rewarded.1,
        base["rewarded"],
        base["episodes"],
        ours / base_rate
    );

    let ours = client.block_on(paced(&rest, &episodes, settings))?;
    server.shutdown()?;
    let base = baseline(
        settings,
        &envs,
        &episodes,
        json!({ "mode": "paced", "sessions": settings.paced_sessions, "pause": settings.pause.as_secs_f64(), "seconds": settings.paced_for.as_secs_f64() }),
    )?;
    let label = format!(
        "latency, {} sessions pausing {} ms, {} s",
        settings.paced_sessions,
        settings.pause.as_millis(),
        settings.paced_for.as_secs()
    );
    print_latencies(&label, &ours, &base);

    if settings.hostile_sessions > 0 {
        hostile(&client, &sandbox, settings, &envs, &episodes, max_live)?;
    }
    if settings.idle_sessions > 0 {
        idle(&client, &sandbox, settings, &envs, &episodes)?;
    }
    Ok(())
}

/// The environments (id -> name, source) and an episode per kept configuration with a trajectory.
#[allow(clippy::type_complexity)]
fn workload(location: &str) -> Result<(BTreeMap<String, (String, String)>, Vec<Episode>)> {
    let data = Dataset::open_existing(location)?;
    let envs: Vec<EnvironmentRow> = data.read_table(Table::Environments)?;
    let configs: Vec<TaskConfigRow> = data.read_table(Table::TaskConfigs)?;
    let code_ids = naming::code_ids(envs.iter().map(Named::from));
    let mut episodes = Vec::new();
    for config in configs.iter().filter(|c| c.kept) {
        let Some(trajectory) = &config.oracle_trajectory else { continue };
        let pairs: Vec<(String, String)> = serde_json::from_str(trajectory).context("an oracle trajectory is not JSON")?;
        episodes.push(Episode {
            env_id: config.env_id.clone(),
            env_str: naming::env_str(&code_ids[&config.env_id], &config.env_name, &config.config),
            config: config.config.clone(),
            actions: pairs.into_iter().map(|(action, _)| action).collect(),
        });
    }
    if episodes.is_empty() {
        bail!("{location} has no kept configuration with an oracle trajectory\n  hint: run `codegym build` first");
    }
    let used: std::collections::BTreeSet<&str> = episodes.iter().map(|e| e.env_id.as_str()).collect();
    let envs =
        envs.into_iter().filter(|e| used.contains(e.env_id.as_str())).map(|e| (e.env_id, (e.env_name, e.env_code))).collect();
    Ok((envs, episodes))
}

fn start_server(
    sandbox: &Arc<crate::sandbox::Sandbox>,
    settings: &ServeBenchSettings,
    data: &str,
    max_live: usize,
    interpreter_idle: Duration,
) -> Result<Server> {
    let loopback = "127.0.0.1:0".parse().expect("a socket address");
    let pool = PoolSettings {
        threads: settings.threads,
        max_sessions: settings.idle_sessions + settings.sessions + settings.paced_sessions + settings.hostile_sessions + 16,
        max_live,
        max_steps: 512,
        limits: crate::sandbox::Limits { timeout: Duration::from_secs(10), ..Default::default() },
        max_observation_bytes: 64 << 10,
        max_state_bytes: 1 << 20,
        max_action_bytes: crate::serve::MAX_ACTION_BYTES,
        idle_timeout: Duration::from_secs(3600),
        interpreter_idle,
    };
    let serve = ServeSettings {
        data: data.to_string(),
        addr: loopback,
        codegym_addr: loopback,
        all_configs: false,
        record: None,
        token: None,
        pool,
    };
    Ok(Server::start(sandbox.clone(), serve)?)
}

/// A client of the CodeGym REST API.
#[derive(Clone)]
struct Rest {
    client: reqwest::Client,
    base: String,
}

impl Rest {
    fn new(addr: std::net::SocketAddr) -> Rest {
        // reqwest wants a TLS crypto provider even for plain HTTP; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Rest { client: reqwest::Client::new(), base: format!("http://{addr}") }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let answer: Value = serde_json::from_slice(&response.bytes().await?)?;
        if !status.is_success() {
            bail!("{path}: {status}: {answer}");
        }
        Ok(answer)
    }

    async fn instance(&self) -> Result<String> {
        Ok(self.post("/get_instance", json!({})).await?["instance_id"].as_str().unwrap_or_default().to_string())
    }

    async fn start(&self, instance: &str, episode: &Episode) -> Result<()> {
        self.post("/start", json!({ "instance_id": instance, "env_str": episode.env_str })).await.map(drop)
    }

    async fn step(&self, instance: &str, action: &str) -> Result<Value> {
        self.post("/step", json!({ "instance_id": instance, "action": action })).await
    }
}

/// Steps per second with `sessions` sessions replaying without pause, and (rewarded, episodes).
async fn saturate(rest: &Rest, episodes: &Arc<Vec<Episode>>, settings: &ServeBenchSettings) -> Result<(f64, (usize, usize))> {
    let budget = Arc::new(AtomicUsize::new(settings.steps));
    let started = Instant::now();
    let tasks: Vec<_> = (0..settings.sessions)
        .map(|session| {
            let (rest, episodes, budget, sessions) = (rest.clone(), episodes.clone(), budget.clone(), settings.sessions);
            tokio::spawn(async move {
                let instance = rest.instance().await?;
                let (mut rewarded, mut finished) = (0, 0);
                for next in (session..).step_by(sessions) {
                    let episode = &episodes[next % episodes.len()];
                    rest.start(&instance, episode).await?;
                    let mut last = json!({});
                    for action in &episode.actions {
                        if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_err() {
                            return anyhow::Ok((rewarded, finished));
                        }
                        last = rest.step(&instance, action).await?;
                    }
                    finished += 1;
                    rewarded += usize::from(last["reward"].as_f64() == Some(1.0) && last["done"] == json!(true));
                }
                unreachable!("the loop over episodes never ends")
            })
        })
        .collect();
    let (mut rewarded, mut finished) = (0, 0);
    for task in tasks {
        let (r, f) = task.await??;
        (rewarded, finished) = (rewarded + r, finished + f);
    }
    Ok((settings.steps as f64 / started.elapsed().as_secs_f64(), (rewarded, finished)))
}

/// Step latencies (ms) of `paced_sessions` sessions that pause between steps.
async fn paced(rest: &Rest, episodes: &Arc<Vec<Episode>>, settings: &ServeBenchSettings) -> Result<Vec<f64>> {
    let until = Instant::now() + settings.paced_for;
    let tasks: Vec<_> = (0..settings.paced_sessions)
        .map(|session| {
            let (rest, episodes, pause, count) = (rest.clone(), episodes.clone(), settings.pause, settings.paced_sessions);
            tokio::spawn(async move {
                let instance = rest.instance().await?;
                // Spread the sessions over one pause, as agents that started at different times.
                tokio::time::sleep(pause.mul_f64(session as f64 / count as f64)).await;
                let mut latencies = Vec::new();
                for next in (session..).step_by(count) {
                    let episode = &episodes[next % episodes.len()];
                    rest.start(&instance, episode).await?;
                    for action in &episode.actions {
                        if Instant::now() >= until {
                            return anyhow::Ok(latencies);
                        }
                        let asked = Instant::now();
                        rest.step(&instance, action).await?;
                        latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
                        tokio::time::sleep(pause).await;
                    }
                }
                unreachable!("the loop over episodes never ends")
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Prints the p50 and p99 of our step latencies (sorted, ms) beside the baseline's (its answer).
fn print_latencies(label: &str, ours: &[f64], base: &Value) {
    let base: Vec<f64> =
        base["latencies"].as_array().into_iter().flatten().filter_map(|l| l.as_f64()).map(|s| s * 1000.0).collect();
    println!(
        "{label}: codegym p50 {:.1} ms, p99 {:.1} ms ({} steps); baseline p50 {:.1} ms, p99 {:.1} ms ({} steps) (target p99 < 50 ms)",
        percentile(ours, 0.5),
        percentile(ours, 0.99),
        ours.len(),
        percentile(&base, 0.5),
        percentile(&base, 0.99),
        base.len()
    );
}

/// Step latency of the paced sessions while `hostile_sessions` others spin every step to the
/// timeout, on a server that serves the hostile environment beside the dataset's, and the
/// baseline's with as many hostile sessions among its workers.
fn hostile(
    client: &tokio::runtime::Runtime,
    sandbox: &Arc<crate::sandbox::Sandbox>,
    settings: &ServeBenchSettings,
    envs: &BTreeMap<String, (String, String)>,
    episodes: &Arc<Vec<Episode>>,
    max_live: usize,
) -> Result<()> {
    let data = tempfile::tempdir()?;
    let location = data.path().to_str().context("the temporary directory's path is not UTF-8")?;
    let spin = with_hostile_env(sandbox, &settings.data, location)?;
    let server = start_server(sandbox, settings, location, max_live, Duration::from_secs(30))?;
    let rest = Rest::new(server.codegym_addr);
    let ours = client.block_on(async {
        let until = Instant::now() + settings.paced_for;
        let spinning: Vec<_> = (0..settings.hostile_sessions)
            .map(|_| {
                let (rest, spin) = (rest.clone(), spin.clone());
                tokio::spawn(async move {
                    let instance = rest.instance().await?;
                    rest.start(&instance, &spin).await?;
                    while Instant::now() < until {
                        rest.step(&instance, &spin.actions[0]).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        let latencies = paced(&rest, episodes, settings).await?;
        for spinning in spinning {
            spinning.await??;
        }
        anyhow::Ok(latencies)
    })?;
    server.shutdown()?;
    let mut envs = envs.clone();
    envs.insert(HOSTILE_ID.into(), (HOSTILE_NAME.into(), HOSTILE_ENV.into()));
    let base = baseline(
        settings,
        &envs,
        episodes,
        json!({ "mode": "paced", "sessions": settings.paced_sessions, "pause": settings.pause.as_secs_f64(), "seconds": settings.paced_for.as_secs_f64(),
                "hostile": settings.hostile_sessions, "hostile_episode": [HOSTILE_ID, HOSTILE_CONFIG, spin.actions] }),
    )?;
    let label = format!(
        "latency beside {} hostile sessions (every step spins to the 10 s timeout), {} sessions pausing {} ms, {} s",
        settings.hostile_sessions,
        settings.paced_sessions,
        settings.pause.as_millis(),
        settings.paced_for.as_secs()
    );
    print_latencies(&label, &ours, &base);
    Ok(())
}

/// Writes a dataset at `location` serving what `source` serves plus the hostile environment
/// (described in the sandbox, as verification would), and returns its episode: one `Spin`.
fn with_hostile_env(sandbox: &crate::sandbox::Sandbox, source: &str, location: &str) -> Result<Episode> {
    let from = Dataset::open_existing(source)?;
    let mut envs: Vec<EnvironmentRow> = from.read_table(Table::Environments)?;
    let mut configs: Vec<TaskConfigRow> = from.read_table(Table::TaskConfigs)?;
    let job = crate::sandbox::Job::call(
        "describe",
        json!({ "source": HOSTILE_ENV, "env_name": HOSTILE_NAME }),
        crate::sandbox::Limits::default(),
    );
    let described = sandbox.run(job)?;
    let described = described.result.with_context(|| format!("the hostile environment: {:?}", described.detail))?;
    let tools: Vec<String> = serde_json::from_value(described["tools"].clone())?;
    envs.push(EnvironmentRow {
        status: crate::verify::VERIFIED.into(),
        servable: Some(true),
        verifier: Some(crate::verify::VerifySettings::default().verifier()),
        tool_count: tools.len() as i32,
        tools,
        tool_docs: described["tool_docs"].as_str().unwrap_or_default().into(),
        ..EnvironmentRow::pending(HOSTILE_ID.into(), "bench".into(), "hostile".into(), HOSTILE_NAME.into(), HOSTILE_ENV.into())
    });
    configs.push(TaskConfigRow {
        kept: true,
        ..TaskConfigRow::pending(HOSTILE_ID, HOSTILE_NAME, HOSTILE_CONFIG.into(), "easy", None)
    });
    let code_ids = naming::code_ids(envs.iter().map(Named::from));
    let to = Dataset::open(location, Some(from.shards()))?;
    to.upsert(Table::Environments, envs, |env| to.shard_of(&env.env_id))?;
    to.upsert(Table::TaskConfigs, configs, |config| to.shard_of(&config.env_id))?;
    Ok(Episode {
        env_id: HOSTILE_ID.into(),
        env_str: naming::env_str(&code_ids[HOSTILE_ID], HOSTILE_NAME, HOSTILE_CONFIG),
        config: HOSTILE_CONFIG.into(),
        actions: vec![r#"{"name": "Spin", "parameters": {}}"#.into()],
    })
}

/// Resident memory of `idle_sessions` started sessions, before and after their interpreters are
/// given back; and the baseline process's holding as many environments.
fn idle(
    client: &tokio::runtime::Runtime,
    sandbox: &Arc<crate::sandbox::Sandbox>,
    settings: &ServeBenchSettings,
    envs: &BTreeMap<String, (String, String)>,
    episodes: &Arc<Vec<Episode>>,
) -> Result<()> {
    let interpreter_idle = Duration::from_secs(2);
    let before = rss_mb();
    let server = start_server(sandbox, settings, &settings.data, crate::serve::DEFAULT_MAX_LIVE, interpreter_idle)?;
    let rest = Rest::new(server.codegym_addr);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    client.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (rest, episodes, next, total) = (rest.clone(), episodes.clone(), next.clone(), settings.idle_sessions);
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            break;
                        }
                        let instance = rest.instance().await?;
                        rest.start(&instance, &episodes[n % episodes.len()]).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })?;
    let (sessions, live) = server.counts();
    let loaded = rss_mb();
    std::thread::sleep(interpreter_idle * 2 + Duration::from_millis(500));
    let settled = rss_mb();
    let (_, live_after) = server.counts();
    server.shutdown()?;
    let base = baseline(settings, envs, episodes, json!({ "mode": "idle", "sessions": settings.idle_sessions }))?;
    println!(
        "memory, {sessions} idle sessions (started in {:.1} s): codegym {:.0} MB resident with {live} live interpreters, {:.0} MB once idle ({live_after} live; {:.0} MB before the server started); baseline process {:.0} MB (target < 2 GB)",
        started.elapsed().as_secs_f64(),
        loaded,
        settled,
        before,
        base["rss_mb"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// Runs the baseline script with `job` (plus the workload) and returns its JSON answer.
fn baseline(
    settings: &ServeBenchSettings,
    envs: &BTreeMap<String, (String, String)>,
    episodes: &[Episode],
    mut job: Value,
) -> Result<Value> {
    job["workers"] = settings.threads.into();
    job["timeout"] = 10.into();
    job["envs"] = json!(envs);
    job["episodes"] = episodes.iter().map(|e| json!([e.env_id, e.config, e.actions])).collect();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("gymnasium.py"), include_str!("../harness/gymnasium.py"))?;
    std::fs::write(dir.path().join("serve_baseline.py"), BASELINE)?;
    let mut child = std::process::Command::new(&settings.python)
        .arg(dir.path().join("serve_baseline.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the baseline's Python `{}`", settings.python))?;
    use std::io::Write;
    child.stdin.take().expect("piped stdin").write_all(job.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("the baseline failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn percentile(sorted: &[f64], share: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * share).round() as usize]
}

/// Resident memory of this process, in MB (0 where the kernel does not say).
fn rss_mb() -> f64 {
    super::memory_now_mb().unwrap_or(0.0)
}
