//! `codegym bench export`: generates a verified dataset of `configs` task configurations over `envs`
//! environments (CodeGym-sized rows: ~10 KB of environment code, six tools, oracle trajectories of
//! ~44 calls), exports it to `hf` and to `verl`, and reports rows per second and peak memory of
//! each export; side by side, in the same run, a pyarrow + pandas script doing the same work
//! vectorised (`export_baseline.py`), and a check that both wrote the same rows.

use super::{peak_memory_mb, real_interpreter, reset_peak_memory};
use crate::dataset::{Dataset, Table};
use crate::export::{self, ExportSettings, Format, SplitSelection};
use crate::tables::{EnvironmentRow, Split, TaskConfigRow};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Resolved `bench export` settings.
#[derive(Debug, Clone)]
pub struct ExportBenchSettings {
    pub configs: usize,
    pub envs: usize,
    pub python: String,
    pub threads: usize,
}

const SCRIPT: &str = include_str!("export_baseline.py");
const TOOLS: [&str; 6] = ["Observe", "GetLength", "GetElement", "Combine", "UpdateBest", "Done"];

pub fn export(settings: &ExportBenchSettings) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let started = Instant::now();
    generate(&Dataset::open(&data.to_string_lossy(), None)?, settings.configs, settings.envs)?;
    println!(
        "codegym bench export: {} configurations over {} environments ({:.0} MB of tables, generated in {:.1} s), {} threads",
        settings.configs,
        settings.envs,
        dir_bytes(&data) as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        settings.threads
    );
    let script = scratch.path().join("export_baseline.py");
    std::fs::write(&script, SCRIPT)?;
    let python = real_interpreter(&settings.python)?;
    println!(
        "{:<6} {:>9} {:>12} {:>10} {:>12} {:>12} {:>10} {:>12} {:>8}",
        "format", "rows", "ours rows/s", "ours s", "ours RSS MB", "python rows/s", "python s", "python RSS", "ratio"
    );
    for format in [Format::Hf, Format::Verl] {
        let ours_out = scratch.path().join(format!("ours-{format}"));
        let export_settings = ExportSettings {
            data: data.to_string_lossy().into_owned(),
            out: ours_out.clone(),
            format,
            splits: SplitSelection::All,
            hard: false,
            require_independent: false,
            max_shard_bytes: 500_000_000,
            overwrite: true,
            threads: settings.threads,
            server_url: export::DEFAULT_SERVER_URL.into(),
        };
        reset_peak_memory();
        let started = Instant::now();
        let summary = export::export(&export_settings, None)?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_memory_mb().unwrap_or(f64::NAN);
        let rows = summary.total_rows();
        let theirs_out = scratch.path().join(format!("python-{format}"));
        let baseline = run_baseline(&python, &script, &data, &theirs_out, &export_settings)?;
        match baseline {
            Some(b) => {
                let same = compare(&python, &script, &ours_out, &theirs_out, format)?;
                println!(
                    "{:<6} {:>9} {:>12.0} {:>10.2} {:>12.0} {:>12.0} {:>10.2} {:>12.0} {:>7.2}x",
                    format.name(),
                    rows,
                    rows as f64 / seconds,
                    seconds,
                    peak,
                    rows as f64 / b.seconds,
                    b.seconds,
                    b.peak_mb,
                    b.seconds / seconds
                );
                println!("{:<6} same rows as the script: {same}", "");
            }
            None => println!(
                "{:<6} {:>9} {:>12.0} {:>10.2} {:>12.0}   (baseline skipped: `{python}` lacks pyarrow or pandas)",
                format.name(),
                rows,
                rows as f64 / seconds,
                seconds,
                peak
            ),
        }
        let _ = std::fs::remove_dir_all(&ours_out);
        let _ = std::fs::remove_dir_all(&theirs_out);
    }
    Ok(())
}

struct Baseline {
    seconds: f64,
    peak_mb: f64,
}

fn run_baseline(python: &str, script: &Path, data: &Path, out: &Path, settings: &ExportSettings) -> Result<Option<Baseline>> {
    let spec = serde_json::json!({
        "data": data,
        "out": out,
        "format": settings.format.name(),
        "max_shard_bytes": settings.max_shard_bytes,
        "plugin_call_max_round": settings.plugin_call_max_round(),
        "codegym_user_prefix": export::codegym_user_prefix(),
        "verl_user_prefix": export::verl_user_prefix(),
        "verl_system_prefix": export::verl_system_prefix(),
        "tool_config": export::verl_tool_config(&settings.server_url),
    });
    let spec_path = out.with_extension("json");
    std::fs::write(&spec_path, spec.to_string())?;
    let output = Command::new(python).arg(script).arg(&spec_path).output().context("cannot run the baseline")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("ModuleNotFoundError") {
            return Ok(None);
        }
        anyhow::bail!("the baseline failed: {}", stderr.lines().last().unwrap_or(""));
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).context("the baseline's output is not JSON")?;
    Ok(Some(Baseline {
        seconds: result["seconds"].as_f64().unwrap_or(f64::NAN),
        peak_mb: result["peak_mb"].as_f64().unwrap_or(f64::NAN),
    }))
}

fn compare(python: &str, script: &Path, ours: &Path, theirs: &Path, format: Format) -> Result<bool> {
    let output = Command::new(python).arg(script).arg("compare").arg(ours).arg(theirs).arg(format.name()).output()?;
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    Ok(result["same"].as_bool().unwrap_or(false))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
                .sum()
        })
        .unwrap_or(0)
}

/// A row of `splits`.
#[derive(serde::Serialize)]
struct SplitRow {
    env_id: String,
    split: Split,
}

/// Writes `environments`, `splits` and `task_configs` of a verified, finalized dataset, a shard at
/// a time (memory bounded by a shard). Configuration `k` belongs to environment
/// `k * STRIDE mod envs`; each environment lives in the shard of its id.
fn generate(data: &Dataset, configs: usize, envs: usize) -> Result<()> {
    let shard_of: Vec<u32> = (0..envs).map(|i| data.shard_of(&env_id(i))).collect();
    let stride = coprime_stride(envs);
    for shard in 0..data.shards() {
        let members: Vec<usize> = (0..envs).filter(|&i| shard_of[i] == shard).collect();
        let env_rows: Vec<EnvironmentRow> = members.iter().map(|&i| environment(i)).collect();
        data.write_shard(Table::Environments, shard, &env_rows)?;
        let splits: Vec<SplitRow> = members
            .iter()
            .map(|&i| SplitRow { env_id: env_id(i), split: if i % 10 == 0 { Split::Validation } else { Split::Train } })
            .collect();
        data.write_shard(Table::Splits, shard, &splits)?;
        let rows: Vec<TaskConfigRow> = (0..configs)
            .filter(|k| shard_of[(k * stride) % envs] == shard)
            .map(|k| configuration(k, (k * stride) % envs, k / envs))
            .collect();
        data.write_shard(Table::TaskConfigs, shard, &rows)?;
    }
    Ok(())
}

fn coprime_stride(envs: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    (7919..).find(|s| gcd(*s, envs) == 1).expect("some stride is coprime")
}

fn env_id(i: usize) -> String {
    crate::ids::content_id("env", &["bench", &i.to_string()])
}

fn env_name(i: usize) -> String {
    format!("BenchEnv{i}")
}

fn environment(i: usize) -> EnvironmentRow {
    let name = env_name(i);
    let docs: Vec<String> = TOOLS
        .iter()
        .map(|tool| {
            format!(
                "def {tool}(index: int, values: list[int]):\n    r\"\"\"\n    {tool} of environment {i}: reads or updates one element of the hidden array \
                 and reports the state the agent may see after it.\n\n    Args:\n        index (int): The position to use, from 0.\n        \
                 values (list[int]): The values to combine with.\n\n    Returns:\n        str: The visible state.\n    \"\"\""
            )
        })
        .collect();
    let tool_docs = docs.join("\n\n");
    let methods: String = TOOLS
        .iter()
        .map(|tool| format!("    def {tool}(self, index, values):\n        \"\"\"{tool}.\n\n        Args:\n            index (int): position\n        Returns:\n            str: state\n        Example Output:\n            \"3\"\n        \"\"\"\n        return str(self.nums[index % len(self.nums)] + sum(values))\n\n"))
        .collect::<String>()
        .repeat(5);
    let mut row = EnvironmentRow::pending(
        env_id(i),
        "bench".into(),
        format!("bench_{i:06}"),
        name.clone(),
        format!(
            "import gymnasium\nimport ast\nimport json\n\n\nclass {name}(gymnasium.Env):\n    \"\"\"Environment {i}.\"\"\"\n\n{methods}"
        ),
    );
    row.task_text = Some(format!(
        "Environment {i} hides an array of integers. Using the tools, find the largest sum of a contiguous run of elements \
         whose length is at most k, and submit it with Done. The array has between 10 and 50 elements; k is given in the \
         first observation. Tools report only what they are asked for."
    ));
    row.tool_schemas = Some(crate::tools::schemas_json(&tool_docs));
    row.tool_docs = tool_docs;
    row.tool_count = TOOLS.len() as i32;
    row.tools = TOOLS.iter().map(|t| t.to_string()).collect();
    row.status = crate::reasons::Reason::Verified.as_str().into();
    row.oracle_candidate = Some(0);
    row
}

fn configuration(k: usize, env: usize, nth: usize) -> TaskConfigRow {
    let nums: Vec<String> = (0..20).map(|j| ((k * 31 + j * 17) % 100).to_string()).collect();
    let config = format!("{}@{{\"nums\": [{}], \"k\": {}}}", env_name(env), nums.join(", "), 2 + nth % 5);
    let difficulty = ["easy", "medium", "hard"][nth % 3];
    let mut row = TaskConfigRow::pending(&env_id(env), &env_name(env), config, difficulty, Some(nth.to_string()));
    let calls = 10 + (k * 7919) % 69;
    let trajectory: Vec<(String, String)> = (0..calls)
        .map(|c| {
            let tool = TOOLS[c % 5];
            (
                format!("{{\"name\": \"{tool}\", \"parameters\": {{\"index\": {c}, \"values\": [{c}]}}}}"),
                format!("{}", (k + c) % 97),
            )
        })
        .chain(std::iter::once((
            "{\"name\": \"Done\", \"parameters\": {\"answer\": 42}}".to_string(),
            "Your answer 42 is correct. reward=1".to_string(),
        )))
        .collect();
    row.ref_answer = Some("42".into());
    row.oracle_passed = Some(true);
    row.oracle_calls = Some(calls as i32 + 1);
    row.distinct_tools = Some(6);
    row.kept = true;
    row.reference_pass_rate = (!k.is_multiple_of(3)).then_some(0.125);
    row.oracle_trajectory = Some(serde_json::to_string(&trajectory).expect("strings serialize"));
    row
}
