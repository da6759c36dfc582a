//! Reading model answers: the `<task>` and `<env>` blocks of an environment answer, the
//! `EnvName@{json}` lines of a configuration answer, the `def solve(self)` of a solver answer.
//! Reasoning before `</think>` is dropped and the last tags count (models draft, then answer).
//! Every failure has its own stable reason.

use crate::reasons::Reason;
use serde_json::Value;

/// Text after the last `</think>`: what the model answered, without its reasoning.
pub fn answer_part(text: &str) -> &str {
    text.rfind("</think>").map_or(text, |i| &text[i + "</think>".len()..])
}

/// The content of the last `<tag>...</tag>` block.
fn last_block<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.rfind(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + end].trim())
}

/// The code of a fenced block (```python ... ```), or the text itself when it has no fence.
fn unfence(text: &str) -> &str {
    let Some(open) = text.find("```") else { return text };
    let body = match text[open..].find('\n') {
        Some(newline) => &text[open + newline + 1..],
        None => return "",
    };
    body.find("```").map_or(body, |close| &body[..close])
}

/// An environment answer, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDraft {
    pub task_text: String,
    pub code: String,
}

/// The task text and module of an environment answer, or the reject reason and detail.
pub fn environment(text: &str) -> Result<EnvDraft, (Reason, String)> {
    let answer = answer_part(text);
    let task = last_block(answer, "task").ok_or((Reason::EnvUnparseable, "no complete <task>...</task> block".to_string()))?;
    let env = last_block(answer, "env").ok_or((Reason::EnvUnparseable, "no complete <env>...</env> block".to_string()))?;
    let code = unfence(env).trim_matches('\n');
    if task.is_empty() {
        return Err((Reason::EnvUnparseable, "the <task> block is empty".into()));
    }
    if code.trim().is_empty() {
        return Err((Reason::EnvUnparseable, "the <env> block holds no code".into()));
    }
    Ok(EnvDraft { task_text: task.to_string(), code: format!("{code}\n") })
}

/// Difficulty band of the configuration at 1-based `position` of its answer: 5 easy, 5 medium,
/// 5 hard; anything past 15 is `unknown`.
pub fn difficulty(position: usize) -> &'static str {
    match position {
        1..=5 => "easy",
        6..=10 => "medium",
        11..=15 => "hard",
        _ => "unknown",
    }
}

/// One configuration line of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigLine {
    /// 1-based among the answer's configuration lines (valid or not): the model's intended order.
    pub position: usize,
    /// `EnvName@{json}` as accepted, or the reject reason and the line.
    pub config: Result<String, (Reason, String)>,
}

/// The configuration lines of an answer: lines of the form `Name@...`, with list markers and
/// backticks around them tolerated; other lines (prose) are ignored.
pub fn configs(text: &str, env_name: &str) -> Vec<ConfigLine> {
    let mut out = Vec::new();
    for raw in answer_part(text).lines() {
        let line = strip_list_marker(raw.trim()).trim_matches('`').trim();
        let Some((name, options)) = line.split_once('@') else { continue };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let position = out.len() + 1;
        let config = if name != env_name {
            Err((Reason::ConfigWrongEnv, line.to_string()))
        } else {
            match serde_json::from_str::<Value>(options.trim()) {
                Ok(Value::Object(_)) => Ok(format!("{name}@{}", options.trim())),
                _ => Err((Reason::ConfigNotJson, line.to_string())),
            }
        };
        out.push(ConfigLine { position, config });
    }
    out
}

/// `1. `, `12) `, `- `, `* ` in front of a line.
fn strip_list_marker(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return rest;
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && matches!(line.as_bytes().get(digits), Some(b'.' | b')')) {
        return line[digits + 1..].trim_start();
    }
    line
}

/// The canonical form of an accepted configuration, for deduplication (key order and spacing
/// do not make two configurations different).
pub fn config_key(config: &str) -> String {
    let (name, options) = config.split_once('@').expect("accepted configurations have '@'");
    let value: Value = serde_json::from_str(options).expect("accepted configurations are JSON");
    format!("{name}@{value}")
}

/// The last `def solve(self...)` of a solver answer, dedented, with its body: the lines after it
/// that are blank or indented deeper, up to a closing fence. Works whatever the indentation (a
/// method inside a `class` snippet) and whatever prose surrounds it.
pub fn solver(text: &str) -> Option<String> {
    let lines: Vec<&str> = answer_part(text).lines().collect();
    let start = lines.iter().rposition(|line| is_solve_def(line))?;
    let indent = indentation(lines[start]);
    let mut body = vec![&lines[start][indent..]];
    for line in &lines[start + 1..] {
        if line.trim_start().starts_with("```") || (!line.trim().is_empty() && indentation(line) <= indent) {
            break;
        }
        body.push(if line.trim().is_empty() { "" } else { &line[indent.min(indentation(line))..] });
    }
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    (body.len() > 1).then(|| body.join("\n") + "\n")
}

fn is_solve_def(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix("def solve") else { return false };
    rest.trim_start().strip_prefix('(').is_some_and(|args| args.trim_start().starts_with("self"))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_answers_use_the_last_tags_after_the_reasoning() {
        let text = "<think>Draft: <task>old</task><env>class Old: pass</env></think>\nHere it is.\n<task>\nSum it.\n</task>\n<env>\n```python\nclass SumEnv:\n    pass\n```\n</env>\nDone.";
        let draft = environment(text).unwrap();
        assert_eq!(draft.task_text, "Sum it.");
        assert_eq!(draft.code, "class SumEnv:\n    pass\n");
        let truncated = "<task>t</task>\n<env>\n```python\nclass SumEnv:\n    def step(self";
        assert_eq!(environment(truncated).unwrap_err().0, Reason::EnvUnparseable);
        assert!(environment("I cannot help with that.").unwrap_err().1.contains("<task>"));
        assert_eq!(environment("<task>t</task><env>\n```python\n```\n</env>").unwrap_err().1, "the <env> block holds no code");
    }

    #[test]
    fn configuration_lines_must_be_strict_json_for_the_right_environment() {
        let text = "Here are the configurations:\n\n1. `SumEnv@{\"nums\": [1, 2]}`\nSumEnv@{'nums': [1]}\n- SumEnv@{\"nums\": [3]}\nSunEnv@{\"nums\": [4]}\nSumEnv@{\"nums\": (1, 2)}\nSumEnv@{\"nums\": [0] * 5}\nSumEnv@[1, 2]\nSumEnv@{\"nums\": [5],}\nemail me@example.com\n";
        let lines = configs(text, "SumEnv");
        let outcomes: Vec<Result<&str, Reason>> =
            lines.iter().map(|l| l.config.as_ref().map(String::as_str).map_err(|(r, _)| *r)).collect();
        assert_eq!(
            outcomes,
            [
                Ok("SumEnv@{\"nums\": [1, 2]}"),
                Err(Reason::ConfigNotJson),
                Ok("SumEnv@{\"nums\": [3]}"),
                Err(Reason::ConfigWrongEnv),
                Err(Reason::ConfigNotJson),
                Err(Reason::ConfigNotJson),
                Err(Reason::ConfigNotJson),
                Err(Reason::ConfigNotJson),
            ]
        );
        assert_eq!(lines.iter().map(|l| l.position).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>(), "prose is not a line");
        assert_eq!((difficulty(5), difficulty(6), difficulty(15), difficulty(16)), ("easy", "medium", "hard", "unknown"));
        assert_eq!(config_key("A@{\"b\": 1,  \"a\": [2]}"), config_key("A@{\"a\":[2],\"b\":1}"));
    }

    #[test]
    fn solvers_are_found_whatever_the_indentation_and_prose() {
        let nested = "Sure! Here is the method inside the class:\n\n```python\nclass Solution:\n    def solve(self):\n        total = 0\n\n        for i in range(3):\n            total += i\n        return total\n\n    def other(self):\n        pass\n```\nThis uses three calls.";
        assert_eq!(
            solver(nested).unwrap(),
            "def solve(self):\n    total = 0\n\n    for i in range(3):\n        total += i\n    return total\n"
        );
        let bare = "def solve( self ) -> str:\n\treturn self.step('x')[1]\nprint('after')";
        assert_eq!(solver(bare).unwrap(), "def solve( self ) -> str:\n\treturn self.step('x')[1]\n");
        let drafted = "<think>def solve(self):\n    return 1\n</think>\n```python\ndef solve(self):\n    return 2\n```";
        assert_eq!(solver(drafted).unwrap(), "def solve(self):\n    return 2\n");
        assert_eq!(solver("def solver(self):\n    pass"), None);
        assert_eq!(solver("def solve(self):"), None, "a def without a body is not a solver");
        assert_eq!(solver("I would call GetLength first."), None);
    }
}
