//! The names an environment goes by outside the dataset: its `code_id` and the long form of a
//! configuration, `{code_id}__{EnvName}@{json}`, as the released CodeGym data spells them
//! (`ability = "codegym_v1@{code_id}__{EnvName}@{json}"`, environment files
//! `{code_id}__{EnvName}.py`). Exports write these names and `codegym serve` accepts them, so both
//! take them from here.
//!
//! A `code_id` is the environment's `source_id` made safe for a file name. Two environments of the
//! same source and class would then share a name: only those get a short `env_id` suffix, so
//! names stay those of the release wherever they can. Whether a suffix is needed depends on the
//! other environments, so [`code_ids`] names a whole table at once: call it on every row of
//! `environments` (whatever their status), and every command names each environment alike.

use crate::tables::EnvironmentRow;
use std::collections::{BTreeMap, HashMap};

/// The `data_source` of the released rows, and the prefix of their `ability`.
pub const DATA_SOURCE: &str = "codegym_v1";

/// Characters of a `source_id` kept as they are; every other one becomes `_`.
fn file_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Longest `code_id` before its suffix: file names stay well under 255 bytes with the class name.
const MAX_STEM: usize = 120;

/// Hex digits of `env_id` in a suffix, tried in turn until the names differ.
const SUFFIXES: [usize; 3] = [8, 16, 32];

/// `source_id` made safe for a file name: characters other than ASCII letters, digits, `_`, `-`
/// and `.` become `_`, and a leading `.` too (no hidden files); cut to 120 characters;
/// `env` when nothing is left.
pub fn file_safe(source_id: &str) -> String {
    let mut safe: String = source_id.chars().map(|c| if file_safe_char(c) { c } else { '_' }).take(MAX_STEM).collect();
    if safe.starts_with('.') {
        safe.replace_range(..1, "_");
    }
    if safe.is_empty() { "env".to_string() } else { safe }
}

/// One environment as [`code_ids`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub env_id: &'a str,
    pub source_id: &'a str,
    pub env_name: &'a str,
}

impl<'a> From<&'a EnvironmentRow> for Named<'a> {
    fn from(env: &'a EnvironmentRow) -> Named<'a> {
        Named { env_id: &env.env_id, source_id: &env.source_id, env_name: &env.env_name }
    }
}

/// The `code_id` of every environment, by `env_id`: [`file_safe`] of its `source_id`, plus
/// `_{first 8 hex digits of env_id}` when another environment of the list would otherwise have
/// the same `{code_id}__{EnvName}` (16, then 32 digits if even those meet).
pub fn code_ids<'a>(envs: impl IntoIterator<Item = Named<'a>>) -> BTreeMap<String, String> {
    let envs: Vec<Named> = envs.into_iter().collect();
    let mut ids: Vec<String> = envs.iter().map(|env| file_safe(env.source_id)).collect();
    for digits in SUFFIXES {
        // Keyed by the long name itself: `a__b` + `C` and `a` + `b__C` are one name too.
        let mut sharing: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, env) in envs.iter().enumerate() {
            sharing.entry(long_name(&ids[i], env.env_name)).or_default().push(i);
        }
        let clashes: Vec<usize> = sharing.into_values().filter(|group| group.len() > 1).flatten().collect();
        if clashes.is_empty() {
            break;
        }
        for i in clashes {
            let env_id = envs[i].env_id;
            ids[i] = format!("{}_{}", file_safe(envs[i].source_id), &env_id[..env_id.len().min(digits)]);
        }
    }
    envs.iter().zip(ids).map(|(env, id)| (env.env_id.to_string(), id)).collect()
}

/// `{code_id}__{EnvName}`: the stem of an environment's file, and the long form of its name in a
/// configuration string.
pub fn long_name(code_id: &str, env_name: &str) -> String {
    format!("{code_id}__{env_name}")
}

/// The options of a configuration `EnvName@{json}`: its `{json}` (only the first `@` separates).
pub fn options(config: &str) -> &str {
    config.split_once('@').map_or("", |(_, options)| options)
}

/// `{code_id}__{EnvName}@{json}`: the long form of the configuration `config` of the
/// environment `env_name`, which exports carry and `codegym serve` starts an episode from.
pub fn env_str(code_id: &str, env_name: &str, config: &str) -> String {
    format!("{}@{}", long_name(code_id, env_name), options(config))
}

/// The released rows' `ability`: `codegym_v1@` and an `env_str`.
pub fn ability(env_str: &str) -> String {
    format!("{DATA_SOURCE}@{env_str}")
}

/// `text` without a leading `codegym_v1@` (a released `ability` names what its `env_str` does).
pub fn strip_ability(text: &str) -> &str {
    text.strip_prefix(DATA_SOURCE).and_then(|rest| rest.strip_prefix('@')).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(env_id: &'a str, source_id: &'a str, env_name: &'a str) -> Named<'a> {
        Named { env_id, source_id, env_name }
    }

    #[test]
    fn source_ids_become_file_names() {
        assert_eq!(file_safe("Codeforces_38402_I"), "Codeforces_38402_I");
        assert_eq!(file_safe("leetcode/two sum:1"), "leetcode_two_sum_1");
        assert_eq!(file_safe("../etc"), "_._etc");
        assert_eq!(file_safe(""), "env");
        assert_eq!(file_safe(&"x".repeat(500)).len(), MAX_STEM);
        assert_eq!(file_safe("..hidden@x"), "_.hidden_x");
    }

    #[test]
    fn only_environments_that_would_share_a_name_get_a_suffix() {
        let ids = code_ids([
            named("aaaaaaaaaaaa", "cf/1", "SumEnv"),
            named("bbbbbbbbbbbb", "cf:1", "SumEnv"),
            named("cccccccccccc", "cf/1", "MaxEnv"),
            named("dddddddddddd", "lc_2", "SumEnv"),
        ]);
        assert_eq!(ids["aaaaaaaaaaaa"], "cf_1_aaaaaaaa");
        assert_eq!(ids["bbbbbbbbbbbb"], "cf_1_bbbbbbbb");
        assert_eq!(ids["cccccccccccc"], "cf_1", "another class: its long name differs already");
        assert_eq!(ids["dddddddddddd"], "lc_2");
        assert_eq!(long_name(&ids["dddddddddddd"], "SumEnv"), "lc_2__SumEnv");
        assert_eq!(env_str("lc_2", "SumEnv", r#"SumEnv@{"a": "x@y"}"#), r#"lc_2__SumEnv@{"a": "x@y"}"#);
        assert_eq!(strip_ability(&ability("lc_2__SumEnv@{}")), "lc_2__SumEnv@{}");
        assert_eq!(strip_ability("SumEnv@{}"), "SumEnv@{}");
        let across = code_ids([named("111111111111", "a__b", "C"), named("222222222222", "a", "b__C")]);
        assert_ne!(long_name(&across["111111111111"], "C"), long_name(&across["222222222222"], "b__C"), "{across:?}");
        let meeting = code_ids([named("abcdefgh1111", "cf/1", "SumEnv"), named("abcdefgh2222", "cf:1", "SumEnv")]);
        assert_eq!(meeting["abcdefgh1111"], "cf_1_abcdefgh1111", "8 digits meet: longer suffixes");
    }
}
