//! Output policy and progress. Everything a command says about its work (bars, status and
//! summary lines, where a server listens) goes to stderr; stdout carries only data (`sql`
//! results, `runtime info`, a sandboxed program's output), so it can be piped. indicatif is used
//! only here; stages report through `sandbox::JobReporter`, `llm::CallReporter` and
//! `export::RowReporter`.

use crate::env;
use crate::sandbox::{JobOutcome, JobReporter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How chatty a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printer {
    /// Results and errors only.
    Quiet,
    /// Progress bars (when stderr is a terminal) and a summary line per stage.
    Default,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        if quiet { Printer::Quiet } else { Printer::Default }
    }

    /// A status or summary line on stderr, unless quiet.
    pub fn status(self, message: impl AsRef<str>) {
        if self == Printer::Default {
            eprintln!("{}", message.as_ref());
        }
    }

    /// A line on stderr even when quiet: what a caller waits for (a server's addresses, that it
    /// is ready), as opposed to how the work went.
    pub fn announce(self, message: impl AsRef<str>) {
        eprintln!("{}", message.as_ref());
    }

    /// A progress bar over `total` items counted in `unit` (`environments`, `rows`), its rate in
    /// `unit`/s. Hidden when quiet, when stderr is not a terminal, or when `CODEGYM_NO_PROGRESS`
    /// is set.
    pub fn progress(self, label: &str, total: usize, unit: &'static str) -> JobProgress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if self == Printer::Quiet || std::env::var_os(env::CODEGYM_NO_PROGRESS).is_some() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(bar_style(unit));
        bar.set_prefix(label.to_string());
        JobProgress { bar }
    }
}

/// `  verify [=====>    ] 12/28 environments 3.1 environments/s eta 5s`.
fn bar_style(unit: &'static str) -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {unit} {rate} eta {eta}")
        .expect("valid progress template")
        .with_key("unit", move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = out.write_str(unit);
        })
        .with_key("rate", move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.1} {unit}/s", state.per_sec());
        })
        .progress_chars("=> ")
}

/// A progress bar fed by sandbox job completions.
pub struct JobProgress {
    bar: ProgressBar,
}

impl JobReporter for JobProgress {
    fn on_job_done(&self, _index: usize, _outcome: &JobOutcome) {
        self.bar.inc(1);
    }

    fn on_skipped(&self, count: usize) {
        self.bar.inc(count as u64);
    }
}

impl crate::llm::CallReporter for JobProgress {
    fn on_call_done(&self) {
        self.bar.inc(1);
    }
}

impl crate::export::RowReporter for JobProgress {
    fn on_start(&self, rows: u64) {
        self.bar.set_length(rows);
    }

    fn on_rows_written(&self, rows: u64) {
        self.bar.inc(rows);
    }
}

impl JobProgress {
    /// Items done so far, and the total.
    #[cfg(test)]
    fn position(&self) -> (u64, Option<u64>) {
        (self.bar.position(), self.bar.length())
    }
}

impl Drop for JobProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_counts_skipped_items_towards_its_total() {
        let progress = Printer::Quiet.progress("verify", 3, "environments");
        progress.on_skipped(2);
        crate::llm::CallReporter::on_call_done(&progress);
        assert_eq!(progress.position(), (3, Some(3)));
    }
}
