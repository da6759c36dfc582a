//! `--llm replay:DIR`: answers requests from recorded calls only; a request without a recording is
//! an error naming the problem and stage, never a silent gap.

use super::{Backend, ChatRequest, Completion, LlmError, Recording};
use std::path::PathBuf;

pub struct ReplayBackend {
    dir: PathBuf,
    recording: Recording,
}

impl ReplayBackend {
    pub fn open(dir: PathBuf) -> Result<ReplayBackend, LlmError> {
        if !dir.is_dir() {
            return Err(LlmError::Fatal(format!("replay directory {} does not exist", dir.display())));
        }
        let recording = Recording::load(&dir)?;
        Ok(ReplayBackend { dir, recording })
    }
}

#[async_trait::async_trait]
impl Backend for ReplayBackend {
    async fn complete(&self, request: &ChatRequest, call_id: &str) -> Result<Completion, LlmError> {
        match self.recording.get(call_id) {
            Some(call) => Ok(call.completion()),
            None => Err(LlmError::NotRecorded {
                stage: request.stage.clone(),
                label: request.label.clone(),
                call_id: call_id.to_string(),
                dir: self.dir.display().to_string(),
            }),
        }
    }

    fn in_flight(&self) -> usize {
        64
    }

    fn live(&self) -> bool {
        false
    }
}
