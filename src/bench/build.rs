//! `codegym bench build`: the nightly at scale, each figure beside the single-file layout (one
//! shard: every table one file, rewritten whole) measured in the same run.
//!
//! - A first build of a generated corpus of cheap problems (each folds a hidden list with its own
//!   operation, a few configurations each), with generated LLM answers (a backend that answers
//!   every request from the problem it is about, as a recording would), then a rebuild with 1%
//!   new problems: time, and bytes written.
//! - Verification of 1,000, 5,000 and 20,000 imported environments (one configuration each):
//!   bytes written per environment, and the peak RSS of the verification.

use super::slice::{self, OPERATIONS, SOLVERS};
use super::{peak_memory_mb, reset_peak_memory};
use crate::corpus::{IngestSettings, Preset};
use crate::dataset::{self, Dataset, ShardSelection};
use crate::llm::{Backend, ChatRequest, Client, Completion, LlmError, Recording};
use crate::report::Printer;
use crate::sandbox::Limits;
use crate::synthesis::{SynthesisSettings, Synthesizer};
use crate::verify::VerifySettings;
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Settings of `bench build`.
#[derive(Debug, Clone)]
pub struct BuildBenchSettings {
    pub problems: usize,
    pub verify_sizes: Vec<usize>,
    /// Sizes up to which the single-file layout is measured too (it grows with the square).
    pub single_file_up_to: usize,
    pub threads: usize,
}

/// Answers every request from the problem it is about (its number is in every prompt): the
/// environment, a few configurations per sample, the candidate solvers.
struct GeneratedBackend;

fn problem_number(request: &ChatRequest) -> Option<usize> {
    let text: String = request.messages.iter().map(|m| m.content.as_str()).collect();
    let at = text.find("problem #")? + "problem #".len();
    text[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn env_name(number: usize) -> String {
    format!("Gen{number:05}{}Env", OPERATIONS[number % OPERATIONS.len()].0)
}

#[async_trait::async_trait]
impl Backend for GeneratedBackend {
    async fn complete(&self, request: &ChatRequest, _call_id: &str) -> Result<Completion, LlmError> {
        let number = problem_number(request).ok_or_else(|| LlmError::Fatal("a generated request names no problem".into()))?;
        let name = env_name(number);
        let choices = (0..request.n as usize)
            .map(|sample| match request.stage.as_str() {
                "environment" => format!(
                    "<task>Fold the hidden values of problem #{number} with Combine, left to right, and submit the result.</task>\n<env>\n{}</env>",
                    slice::environment(&name, OPERATIONS[number % OPERATIONS.len()].1)
                ),
                "configs" => (0..3)
                    .map(|line| {
                        let values: Vec<usize> = (0..5 + (number + line + sample) % 8).map(|i| (i * 37 + number + line) % 100).collect();
                        format!("{name}@{}", serde_json::json!({ "values": values }))
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => format!("```python\n{}```", SOLVERS[sample % 8]),
            })
            .collect();
        Ok(Completion { choices, prompt_tokens: Some(100), completion_tokens: Some(100), latency_ms: None, attempts: 0 })
    }

    fn in_flight(&self) -> usize {
        64
    }

    fn live(&self) -> bool {
        false
    }
}

/// Writes a corpus of `rows` problems (generic columns), numbered from `first`.
fn write_corpus(path: &Path, first: usize, rows: usize) -> Result<()> {
    let mut text = String::new();
    for number in first..first + rows {
        let (operation, expression) = OPERATIONS[number % OPERATIONS.len()];
        let solution =
            format!("from functools import reduce\n\ndef fold(values):\n    return reduce(lambda a, b: {expression}, values)\n");
        let tests = "assert fold([3, 1, 4]) == reduce(lambda a, b: ".to_string() + expression + ", [3, 1, 4])\n";
        let row = serde_json::json!({
            "source_id": format!("gen_{number:05}"),
            "question": format!("problem #{number}: fold a list of integers left to right with the {operation} operation and return the result."),
            "solution": solution,
            "tests": tests,
        });
        text.push_str(&format!("{row}\n"));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// One build of `corpus` into `data`: ingest, preflight, synthesis, verification, finalize.
fn build(corpus: &Path, data: &Dataset, threads: usize) -> Result<()> {
    let sandbox = crate::runtime::ensure()?.sandbox()?;
    let selection = ShardSelection::default();
    crate::corpus::ingest(&IngestSettings::new(corpus.to_path_buf(), Preset::Generic), data, selection)?;
    crate::corpus::preflight(&sandbox, data, selection, Limits::default(), threads, None)?;
    let client = Client::new(Arc::new(GeneratedBackend), Recording::default(), None);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let settings = SynthesisSettings { oracle_samples: 2, config_samples: 1, threads, ..SynthesisSettings::default() };
    let synthesizer =
        Synthesizer { sandbox: &sandbox, client: &client, runtime: &runtime, settings: &settings, printer: Printer::Quiet };
    synthesizer.run(data, selection)?;
    crate::verify::verify(&sandbox, data, &VerifySettings { threads, ..Default::default() }, selection, None)?;
    crate::finalize::finalize(data, Default::default())?;
    Ok(())
}

/// Time, bytes written and peak RSS of `run`.
fn measure(run: impl FnOnce() -> Result<()>) -> Result<(f64, u64, Option<f64>)> {
    reset_peak_memory();
    let bytes = dataset::bytes_written();
    let started = Instant::now();
    run()?;
    Ok((started.elapsed().as_secs_f64(), dataset::bytes_written() - bytes, peak_memory_mb()))
}

pub fn build_bench(settings: &BuildBenchSettings) -> Result<()> {
    println!("codegym bench build: {} workers; `1 shard` is the single-file layout (every table one file)", settings.threads);
    let scratch = tempfile::tempdir()?;
    let new = settings.problems / 100;
    let (first, second) = (scratch.path().join("first.jsonl"), scratch.path().join("second.jsonl"));
    write_corpus(&first, 0, settings.problems)?;
    write_corpus(&second, 0, settings.problems + new)?;
    println!("{:<34} {:>10} {:>12} {:>10} {:>12} {:>10}", "", "first (s)", "first MB", "rebuild s", "rebuild MB", "rebuild %");
    for shards in [dataset::DEFAULT_SHARDS, 1] {
        let data = Dataset::open(scratch.path().join(format!("build-{shards}")).to_str().expect("UTF-8"), Some(shards))?;
        let (first_s, first_b, _) = measure(|| build(&first, &data, settings.threads))?;
        let (again_s, again_b, _) = measure(|| build(&second, &data, settings.threads))?;
        println!(
            "{:<34} {:>10.1} {:>12.1} {:>10.1} {:>12.1} {:>9.1}%",
            format!("{} problems, then +{new}: {shards} shard(s)", settings.problems),
            first_s,
            first_b as f64 / 1e6,
            again_s,
            again_b as f64 / 1e6,
            again_s * 100.0 / first_s
        );
    }
    println!(
        "{:<34} {:>10} {:>14} {:>14} {:>12}",
        "verification of imported envs", "seconds", "bytes/env", "peak RSS MB", "layout"
    );
    for &size in &settings.verify_sizes {
        for shards in [dataset::DEFAULT_SHARDS, 1] {
            if shards == 1 && size > settings.single_file_up_to {
                continue;
            }
            let dir = scratch.path().join(format!("verify-{size}-{shards}"));
            let data = Dataset::open(dir.to_str().expect("UTF-8"), Some(shards))?;
            let release = slice::release(&dir.join("release"), size, 1)?;
            crate::import_codegym::import(
                &crate::import_codegym::Release::new(&release.0, &release.1),
                &data,
                "bench-build",
                ShardSelection::default(),
            )?;
            let sandbox = crate::runtime::ensure()?.sandbox()?;
            let verify = VerifySettings { threads: settings.threads, ..Default::default() };
            let (seconds, bytes, peak) =
                measure(|| Ok(crate::verify::verify(&sandbox, &data, &verify, ShardSelection::default(), None).map(|_| ())?))?;
            println!(
                "{:<34} {:>10.1} {:>14.0} {:>14} {:>12}",
                format!("{size} environments"),
                seconds,
                bytes as f64 / size as f64,
                peak.map_or("n/a".into(), |p| format!("{p:.0}")),
                format!("{shards} shard(s)")
            );
        }
    }
    Ok(())
}
