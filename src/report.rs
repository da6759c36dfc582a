//! Output policy and progress: what goes to stderr while work runs (bars, one-line summaries),
//! never data. indicatif is used only here; stages report through `sandbox::JobReporter`,
//! `llm::CallReporter` and `export::RowReporter`.

use crate::env;
use crate::sandbox::{JobOutcome, JobReporter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

    /// A status line on stderr, unless quiet.
    pub fn status(self, message: impl AsRef<str>) {
        if self == Printer::Default {
            eprintln!("{}", message.as_ref());
        }
    }

    /// A progress bar over `total` jobs (hidden when quiet, when stderr is not a terminal, or when
    /// `CODEGYM_NO_PROGRESS` is set).
    pub fn progress(self, label: &str, total: usize) -> JobProgress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if self == Printer::Quiet || std::env::var_os(env::CODEGYM_NO_PROGRESS).is_some() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid progress template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        JobProgress { bar }
    }
}

/// A progress bar fed by sandbox job completions.
pub struct JobProgress {
    bar: ProgressBar,
}

impl JobReporter for JobProgress {
    fn on_job_done(&self, _index: usize, _outcome: &JobOutcome) {
        self.bar.inc(1);
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

impl Drop for JobProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
