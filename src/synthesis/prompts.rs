//! The prompts of the three LLM stages, one versioned file per stage in `prompts/` (compiled in).
//! A file is `#` comment lines for maintainers, then `=== system ===` and `=== user ===` sections
//! with `{{name}}` placeholders. The file's name (`environment.v1`) is the prompt's version and is
//! part of every request's id, so changing a prompt never replays a stale answer.

use crate::llm::Message;

/// One stage's prompt.
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    /// `environment.v1`, `configs.v1`, `oracle.v1`.
    pub version: &'static str,
    text: &'static str,
}

pub const ENVIRONMENT: Prompt = Prompt { version: "environment.v1", text: include_str!("../../prompts/environment.v1.md") };
pub const CONFIGS: Prompt = Prompt { version: "configs.v1", text: include_str!("../../prompts/configs.v1.md") };
pub const ORACLE: Prompt = Prompt { version: "oracle.v1", text: include_str!("../../prompts/oracle.v1.md") };

const SYSTEM: &str = "=== system ===";
const USER: &str = "=== user ===";

impl Prompt {
    /// The system and user messages with `values` filled in. Placeholders are replaced in one pass,
    /// so text filled in (a problem statement quoting `{{...}}`) is never expanded again.
    pub fn render(&self, values: &[(&str, &str)]) -> Vec<Message> {
        let body = &self.text[self.text.find(SYSTEM).expect("prompt files have a system section")..];
        let (system, user) = body[SYSTEM.len()..].split_once(USER).expect("prompt files have a user section");
        vec![Message::new("system", fill(system.trim(), values)), Message::new("user", fill(user.trim(), values))]
    }
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| Some((values.iter().find(|(k, _)| *k == &after[..end])?, end))) {
            Some(((_, value), end)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The worked example's environment module, as the environment prompt shows it.
pub fn example_environment() -> &'static str {
    let text = ENVIRONMENT.text;
    let start =
        text.find("<env>\n```python\n").expect("the environment prompt has a worked example") + "<env>\n```python\n".len();
    let end = start + text[start..].find("```").expect("the worked example's fence is closed");
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(text: &str) -> Vec<&str> {
        text.match_indices("{{").map(|(i, _)| &text[i + 2..i + 2 + text[i + 2..].find("}}").unwrap()]).collect()
    }

    #[test]
    fn every_prompt_fills_every_placeholder_it_has() {
        let cases = [
            (ENVIRONMENT, vec!["question", "solution"]),
            (CONFIGS, vec!["task_text", "env_name", "env_code"]),
            (ORACLE, vec!["env_name", "task_text", "tool_docs"]),
        ];
        for (prompt, names) in cases {
            let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, "VALUE")).collect();
            let messages = prompt.render(&values);
            assert_eq!(messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user"]);
            for message in &messages {
                assert!(placeholders(&message.content).is_empty(), "{}: {:?}", prompt.version, placeholders(&message.content));
                assert!(!message.content.contains("# codegym prompt"), "maintainer comments are not sent");
            }
        }
    }

    #[test]
    fn filled_text_is_not_expanded_again() {
        assert_eq!(fill("a {{x}} b {{y}}", &[("x", "{{y}}"), ("y", "2")]), "a {{y}} b 2");
        assert_eq!(fill("keep {{unknown}} and {{", &[]), "keep {{unknown}} and {{");
    }

    #[test]
    fn the_environment_prompt_repeats_the_rules_after_its_example_and_the_oracle_prompt_hides_the_source() {
        let user = &ENVIRONMENT.render(&[("question", "Q"), ("solution", "S")])[1].content;
        let example = user.find("## Worked example").unwrap();
        assert!(user[example..].contains("Check your module against the rules"));
        let oracle = &ORACLE.render(&[("env_name", "E"), ("task_text", "T"), ("tool_docs", "D")])[1].content;
        assert!(!oracle.contains("class MaxGainEnv") && !oracle.contains("Example Output") && !oracle.contains("(self,"));
    }
}
