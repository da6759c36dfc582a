//! What the first observation of an episode carries, so that any client can put the task in front
//! of a model without knowing CodeGym: the task text first, then our instructions (how to call the
//! tools and finish with `Done`, from the versioned prompt file `prompts/serve.v1.md`), then the
//! tools of that configuration (names, descriptions and the JSON Schemas verification stored).
//! OpenEnv's reset, MCP's session start and the REST API's `/start` and `/reset` all hand out this
//! one briefing.
//!
//! The tools go under `available_tools`, not `tools`: OpenEnv's MCP client reads an observation
//! with a `tools` member as the answer to a tool listing and would drop the task text.

use super::catalog::ServedEnv;
use super::tools::ToolSpec;
use serde::Serialize;
use std::sync::LazyLock;

/// The prompt file's version.
pub const VERSION: &str = "serve.v1";
const FILE: &str = include_str!("../../prompts/serve.v1.md");

/// The instructions: the prompt file without its leading comment lines.
static INSTRUCTIONS: LazyLock<String> =
    LazyLock::new(|| FILE.lines().skip_while(|line| line.starts_with('#')).collect::<Vec<_>>().join("\n").trim().to_string());

/// The briefing of an episode of `env`, serialized in this order (task text first).
#[derive(Debug, Serialize)]
pub struct Briefing<'a> {
    pub task: &'a str,
    pub instructions: &'static str,
    pub instructions_version: &'static str,
    pub available_tools: &'a [ToolSpec],
}

impl Briefing<'_> {
    pub fn of(env: &ServedEnv) -> Briefing<'_> {
        Briefing { task: &env.task_text, instructions: &INSTRUCTIONS, instructions_version: VERSION, available_tools: &env.tools }
    }
}

/// The instructions alone (MCP's `initialize` answers them before any episode).
pub fn instructions() -> &'static str {
    &INSTRUCTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instructions_have_no_maintainer_comments_and_say_how_to_finish() {
        assert!(!instructions().contains("# "), "{}", instructions());
        assert!(instructions().starts_with("You are solving the task above"), "{}", instructions());
        assert!(instructions().contains("call the `Done` tool"), "{}", instructions());
    }
}
