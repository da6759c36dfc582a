//! The agent's instructions in exported rows: our own text, in the versioned prompt file
//! `prompts/agent.v1.md` (compiled in; its name is the version every manifest records). A file is
//! `#` comment lines for maintainers, then `=== name ===` sections. The user message is the rules,
//! the call syntax of the format, then `Question:` and the task text, which is where
//! `codegym import-codegym` finds the task text again.

/// The prompt file's version.
pub(crate) const VERSION: &str = "agent.v1";
const TEXT: &str = include_str!("../../prompts/agent.v1.md");

/// The text of section `name`, trimmed.
fn section(name: &str) -> &'static str {
    let header = format!("=== {name} ===");
    let start =
        TEXT.find(&header).unwrap_or_else(|| panic!("prompts/{VERSION}.md has a `{name}` section; this is a bug in codegym"));
    let body = &TEXT[start + header.len()..];
    body[..body.find("\n=== ").unwrap_or(body.len())].trim()
}

fn user(syntax: &str, task_text: &str) -> String {
    format!("{}\n\n{}\n\nQuestion:\n\n{}", section("rules"), section(syntax), task_text.trim())
}

/// The user message of the release's shape: calls in `<|FunctionCallBegin|>` syntax.
pub(crate) fn codegym_user(task_text: &str) -> String {
    user("codegym call syntax", task_text)
}

/// verl's user message: calls go through the `codegym_step` function.
pub(crate) fn verl_user(task_text: &str) -> String {
    user("verl call syntax", task_text)
}

/// verl's system message: what `codegym_step` reaches, then the environment's tool docs.
pub(crate) fn verl_system(tool_docs: &str) -> String {
    format!("{}\n\n{}", section("verl system"), tool_docs.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_call_syntax_and_end_with_the_task() {
        let user = codegym_user("  Find the largest sum.\n");
        assert!(
            user.contains(r#"<|FunctionCallBegin|>[{"name": "Lookup", "parameters": {"key": 3}}]<|FunctionCallEnd|>"#),
            "{user}"
        );
        assert!(user.ends_with("Question:\n\nFind the largest sum."), "{user}");
        assert!(!user.contains("codegym_step") && !user.contains("# "), "no other section, no maintainer comments");
        let verl = verl_user("Task.");
        assert!(verl.contains("codegym_step") && !verl.contains("FunctionCallBegin"), "{verl}");
        assert!(verl_system("def Observe():").ends_with("tools are:\n\ndef Observe():"));
    }
}
