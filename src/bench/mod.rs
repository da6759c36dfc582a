//! Benchmarks, each side by side with a baseline run on this machine in the same run: `verify` and
//! `stages` ([`verify`]: verification against a lean process-per-cell baseline, the cost of every
//! check and of the isolation, a generated slice of the paper's shape), `ingest` ([`ingest`]:
//! against pyarrow + Python) and `llm` ([`llm`]: the OpenAI-compatible client against a Python
//! thread pool), `build` ([`build`]: first builds and rebuilds, and verification at growing
//! sizes, against the single-file layout) and `export` ([`export`]: hf and verl shards against
//! pyarrow + pandas), and `serve`
//! ([`serve`]: the rollout server against a forked process per step).

mod build;
mod export;
mod ingest;
mod llm;
mod serve;
mod slice;
mod verify;

pub use build::{BuildBenchSettings, build_bench};
pub use export::{ExportBenchSettings, export};
pub use ingest::ingest;
pub use llm::{LlmBenchSettings, llm};
pub use serve::{ServeBenchSettings, serve};
pub use verify::{BenchSettings, stages, verify};

use anyhow::{Context, Result};
use std::process::Command;

/// The interpreter binary itself: a version-manager shim (pyenv, asdf) in front of it would add its
/// own start-up to every baseline cell.
pub(crate) fn real_interpreter(python: &str) -> Result<String> {
    let output = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .with_context(|| format!("cannot run the baseline interpreter `{python}`"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(if path.is_empty() { python.to_string() } else { path })
}

/// Resets the kernel's peak-RSS mark of this process (Linux), so what follows has its own peak.
pub(crate) fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak RSS of this process since the last reset, in MB (Linux).
pub(crate) fn peak_memory_mb() -> Option<f64> {
    memory_mb("VmHWM:")
}

/// The resident memory of this process now, in MB (Linux).
pub(crate) fn memory_now_mb() -> Option<f64> {
    memory_mb("VmRSS:")
}

/// A `kB` field of `/proc/self/status`, in MB.
fn memory_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}
