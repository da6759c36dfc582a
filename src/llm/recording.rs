//! Recorded LLM answers: an append-only JSON Lines log per dataset shard
//! (`DATA/llm/part-NNNN.jsonl`, so that processes working on different shards never write one
//! file), written before an answer is used on a local dataset (on an object store, which cannot
//! append, after each batch of requests), so a crash never pays twice for a request; readable as
//! a replay directory (`--llm replay:DIR` reads every `*.jsonl` file of DIR).

use super::{ChatRequest, Completion, LlmError, Message};
use crate::dataset::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder of a dataset's recording.
pub const RECORDING_DIR: &str = "llm";

/// One recorded call: enough to replay it and to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    pub call_id: String,
    pub stage: String,
    pub prompt_version: String,
    pub label: String,
    pub model: String,
    pub messages: Vec<Message>,
    pub choices: Vec<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    pub attempts: u32,
}

impl RecordedCall {
    pub fn new(call_id: &str, request: &ChatRequest, completion: &Completion) -> RecordedCall {
        RecordedCall {
            call_id: call_id.to_string(),
            stage: request.stage.clone(),
            prompt_version: request.prompt_version.clone(),
            label: request.label.clone(),
            model: request.sampling.model.clone(),
            messages: request.messages.clone(),
            choices: completion.choices.clone(),
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            latency_ms: completion.latency_ms,
            attempts: completion.attempts,
        }
    }

    /// The answer as replayed: no latency, no attempts (this run made no request).
    pub fn completion(&self) -> Completion {
        Completion {
            choices: self.choices.clone(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            latency_ms: None,
            attempts: 0,
        }
    }
}

/// Recorded calls by call id.
#[derive(Debug, Default)]
pub struct Recording {
    calls: HashMap<String, RecordedCall>,
}

impl Recording {
    /// Every `*.jsonl` file of `dir` (none when `dir` does not exist). A torn last line (a crash
    /// mid-append) is skipped; any other unreadable line is an error naming file and line.
    pub fn load(dir: &Path) -> Result<Recording, LlmError> {
        let mut recording = Recording::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(recording),
            Err(source) => return Err(LlmError::Record { path: dir.to_path_buf(), source }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| LlmError::Record { path: file.clone(), source })?;
            recording.add(&file.display().to_string(), &text)?;
        }
        Ok(recording)
    }

    /// The recording of the dataset `data` (every shard's file).
    pub fn load_dataset(data: &Dataset) -> Result<Recording, LlmError> {
        let mut recording = Recording::default();
        for (name, text) in data.text_files(RECORDING_DIR, ".jsonl").map_err(|e| LlmError::Fatal(e.to_string()))? {
            recording.add(&name, &text)?;
        }
        Ok(recording)
    }

    /// Adds the calls of one recording file (`name` for errors). A torn last line (a crash
    /// mid-append) is skipped; any other unreadable line is an error naming file and line.
    fn add(&mut self, name: &str, text: &str) -> Result<(), LlmError> {
        let text = crate::text_file::strip_bom_str(text);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<RecordedCall>(line) {
                Ok(call) => {
                    self.calls.insert(call.call_id.clone(), call);
                }
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                Err(e) => return Err(LlmError::Fatal(format!("{name}: line {}: not a recorded LLM call: {e}", i + 1))),
            }
        }
        Ok(())
    }

    pub fn get(&self, call_id: &str) -> Option<&RecordedCall> {
        self.calls.get(call_id)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// Records live answers into the dataset's recording, in the file of the shard being worked on
/// ([`Recorder::shard`]), one whole line per call.
pub struct Recorder {
    data: Dataset,
    target: Mutex<Option<u32>>,
}

impl Recorder {
    pub fn open(data: &Dataset) -> Recorder {
        Recorder { data: data.clone(), target: Mutex::new(None) }
    }

    /// Records the next answers into `shard`'s file.
    pub fn shard(&self, shard: u32) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(shard);
    }

    pub fn append(&self, call: &RecordedCall) -> Result<(), LlmError> {
        let mut line = serde_json::to_vec(call).expect("recorded calls serialize");
        line.push(b'\n');
        let shard = self.target.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(0);
        let relative = format!("{RECORDING_DIR}/part-{shard:04}.jsonl");
        self.data.append_line(shard, &relative, &line).map_err(|e| LlmError::Fatal(format!("cannot record an answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> RecordedCall {
        RecordedCall {
            call_id: id.into(),
            stage: "oracle".into(),
            prompt_version: "oracle.v1".into(),
            label: "cgs_0001".into(),
            model: "m".into(),
            messages: vec![Message::new("user", "q")],
            choices: vec!["a".into(), "b".into()],
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            latency_ms: Some(120),
            attempts: 2,
        }
    }

    #[test]
    fn recorded_calls_survive_a_torn_append_and_replay_without_latency() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(2)).unwrap();
        let recorder = Recorder::open(&data);
        recorder.shard(1);
        recorder.append(&call("one")).unwrap();
        let path = dir.path().join(RECORDING_DIR).join("part-0001.jsonl");
        let mut torn = std::fs::read_to_string(&path).unwrap();
        torn.push_str("{\"call_id\": \"two\", \"sta");
        std::fs::write(&path, torn).unwrap();
        assert_eq!(Recording::load_dataset(&data).unwrap().len(), 1, "the torn line is skipped");
        recorder.append(&call("three")).unwrap();
        let recording = Recording::load_dataset(&data).unwrap();
        assert_eq!(recording.len(), 2, "appending cuts the torn line first");
        let replayed = recording.get("three").unwrap().completion();
        assert_eq!((replayed.choices.len(), replayed.latency_ms, replayed.attempts), (2, None, 0));
        assert_eq!(
            Recording::load(&dir.path().join(RECORDING_DIR)).unwrap().len(),
            2,
            "a dataset's recording replays as a folder"
        );
    }

    #[test]
    fn a_corrupt_line_in_the_middle_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.jsonl"), "not json\n{}\n").unwrap();
        let error = Recording::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("x.jsonl: line 1"), "{error}");
    }
}
