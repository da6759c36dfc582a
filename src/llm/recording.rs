//! Recorded LLM answers: an append-only JSON Lines log per dataset (`DATA/llm/responses.jsonl`),
//! written before an answer is used, so a crash never pays twice for a request, and readable as a
//! replay directory (`--llm replay:DIR` reads every `*.jsonl` file of DIR).

use super::{ChatRequest, Completion, LlmError, Message};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file a dataset's live answers are appended to, under `DATA/llm/`.
pub const RESPONSES_FILE: &str = "responses.jsonl";

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
        let mut calls = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recording { calls }),
            Err(source) => return Err(LlmError::Record { path: dir.to_path_buf(), source }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| LlmError::Record { path: file.clone(), source })?;
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<RecordedCall>(line) {
                    Ok(call) => {
                        calls.insert(call.call_id.clone(), call);
                    }
                    Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                    Err(e) => {
                        return Err(LlmError::Fatal(format!("{}: line {}: not a recorded LLM call: {e}", file.display(), i + 1)));
                    }
                }
            }
        }
        Ok(Recording { calls })
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

/// Appends live answers to `DIR/responses.jsonl`, one whole line per write.
pub struct Recorder {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Recorder {
    pub fn open(dir: &Path) -> Result<Recorder, LlmError> {
        let path = dir.join(RESPONSES_FILE);
        let record_error = |source| LlmError::Record { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(record_error)?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(record_error)?;
        // A crash mid-append leaves a torn last line, never used (answers are used only once
        // recorded): cut it, so the next record starts on a line of its own.
        let whole = whole_lines_len(&path).map_err(record_error)?;
        if whole < file.metadata().map_err(record_error)?.len() {
            file.set_len(whole).map_err(record_error)?;
        }
        Ok(Recorder { path, file: Mutex::new(file) })
    }

    pub fn append(&self, call: &RecordedCall) -> Result<(), LlmError> {
        let mut line = serde_json::to_vec(call).expect("recorded calls serialize");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line).and_then(|()| file.flush()).map_err(|source| LlmError::Record { path: self.path.clone(), source })
    }
}

/// The length of the file up to and including its last newline, read from the end backwards
/// (a recording can be large; a torn line is short).
fn whole_lines_len(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
        Recorder::open(dir.path()).unwrap().append(&call("one")).unwrap();
        let path = dir.path().join(RESPONSES_FILE);
        let mut torn = std::fs::read_to_string(&path).unwrap();
        torn.push_str("{\"call_id\": \"two\", \"sta");
        std::fs::write(&path, torn).unwrap();
        assert_eq!(Recording::load(dir.path()).unwrap().len(), 1, "the torn line is skipped");
        Recorder::open(dir.path()).unwrap().append(&call("three")).unwrap();
        let recording = Recording::load(dir.path()).unwrap();
        assert_eq!(recording.len(), 2, "reopening cuts the torn line");
        let replayed = recording.get("three").unwrap().completion();
        assert_eq!((replayed.choices.len(), replayed.latency_ms, replayed.attempts), (2, None, 0));
    }

    #[test]
    fn the_whole_lines_are_found_across_read_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let long = "x".repeat(150 * 1024);
        std::fs::write(&path, format!("{long}\n{long}")).unwrap();
        assert_eq!(whole_lines_len(&path).unwrap(), long.len() as u64 + 1);
        std::fs::write(&path, &long).unwrap();
        assert_eq!(whole_lines_len(&path).unwrap(), 0);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.jsonl"), "not json\n{}\n").unwrap();
        let error = Recording::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("x.jsonl: line 1"), "{error}");
    }
}
