//! What a server serves: the verified, servable environments of a dataset and their kept
//! configurations (every configuration of a verified environment with `--all-configs`), read once
//! at start-up, and how a client names one: by `config_id`, or by `env_str`, `EnvName@{json}` when
//! exactly one served environment has that class and `{code_id}__{EnvName}@{json}` always (the
//! form exports carry, see [`crate::naming`]). The JSON part is matched by value, so key order and
//! spacing do not matter.

use super::tools::{self, ToolSpec};
use crate::dataset::{Dataset, DatasetError, Table};
use crate::naming::{self, Named};
use crate::tables::{EnvironmentRow, TaskConfigRow};
use crate::verify::VERIFIED;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

/// An environment being served.
#[derive(Debug)]
pub struct ServedEnv {
    pub env_id: String,
    pub env_name: String,
    /// `{code_id}__{EnvName}`: the unambiguous name of the environment.
    pub long_name: String,
    pub source: String,
    /// The problem statement the agent solves (`environments.task_text`; empty when absent).
    pub task_text: String,
    /// Tools in `func_mapping` order, with what MCP lists of them.
    pub tools: Vec<ToolSpec>,
    /// The module's bytecode, marshalled, once a session has compiled it (`session.py`): later
    /// sessions unmarshal it instead of compiling the source again.
    pub bytecode: OnceLock<Arc<str>>,
}

impl ServedEnv {
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_str()).collect()
    }
}

/// A configuration being served.
#[derive(Debug)]
pub struct ServedConfig {
    pub config_id: String,
    /// `EnvName@{json}`, as stored.
    pub config: String,
    pub env: Arc<ServedEnv>,
    /// The seed of an episode whose client gave none.
    pub seed: u64,
}

/// How a client names a configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigRef {
    Id(String),
    EnvStr(String),
}

impl ConfigRef {
    /// What a request names by its `config_id` or, without one, its `env_str`.
    pub fn from_keys(config_id: Option<String>, env_str: Option<String>) -> Option<ConfigRef> {
        config_id.map(ConfigRef::Id).or(env_str.map(ConfigRef::EnvStr))
    }
}

/// A configuration that cannot be found; each says what would have been accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown config_id `{0}`: no configuration served has it")]
    UnknownId(String),
    #[error("malformed env_str `{0}`: expected `EnvName@{{json}}` or `{{code_id}}__{{EnvName}}@{{json}}`")]
    Malformed(String),
    #[error("env_str `{0}`: its options are not JSON: {1}")]
    NotJson(String, String),
    #[error("no environment `{name}` is served{}", hint(.known))]
    UnknownEnv { name: String, known: Vec<String> },
    #[error("`{name}` names {} environments; use one of their long names: {}", .long.len(), .long.join(", "))]
    Ambiguous { name: String, long: Vec<String> },
    #[error("`{env}` has no served configuration with the options {options} ({served} configurations of it are served)")]
    UnknownConfig { env: String, options: String, served: usize },
}

fn hint(known: &[String]) -> String {
    match known.len() {
        0 => String::new(),
        n if n <= 12 => format!("; the environments are: {}", known.join(", ")),
        n => format!("; {n} environments are served, e.g. {}", known[..12].join(", ")),
    }
}

/// What start-up skipped, to say so.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Verified environments that cannot be served as they are played live, with why: their
    /// state does not survive a pickle round trip, or an older verifier never replayed a session
    /// through it (re-verifying decides).
    pub not_servable: Vec<(String, String)>,
    /// Their configurations that would have been served.
    pub not_servable_configs: usize,
}

/// The environments and configurations a server serves.
#[derive(Debug, Default)]
pub struct Catalog {
    envs: Vec<Arc<ServedEnv>>,
    configs: Vec<Arc<ServedConfig>>,
    by_id: HashMap<String, usize>,
    /// By environment index, then by the canonical JSON of the options.
    by_options: Vec<HashMap<String, usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_long_name: HashMap<String, usize>,
    pub skipped: Skipped,
}

/// Why a verified environment is not served, if it is not.
fn not_servable_because(env: &EnvironmentRow) -> Option<String> {
    if env.servable == Some(false) {
        return Some(env.serve_detail.clone().unwrap_or_else(|| "its state does not survive pickling".into()));
    }
    if !crate::verify::replays_serving(env.verifier.as_deref()) {
        let by = env.verifier.as_deref().map_or("an unknown verifier".to_string(), |v| format!("`{v}`"));
        return Some(format!(
            "verified by {by}, which never replayed a session through its pickled state; run `codegym verify` to re-verify it"
        ));
    }
    None
}

impl Catalog {
    /// Reads the dataset at `data`: every verified environment whose state survives a pickle
    /// round trip, with its kept configurations (`all_configs`: every configuration).
    pub fn load(data: &Dataset, all_configs: bool) -> Result<Catalog, DatasetError> {
        let envs: Vec<EnvironmentRow> = data.read_table(Table::Environments)?;
        let configs: Vec<TaskConfigRow> = data.read_table(Table::TaskConfigs)?;
        Ok(Catalog::new(&envs, &configs, all_configs))
    }

    pub fn new(envs: &[EnvironmentRow], configs: &[TaskConfigRow], all_configs: bool) -> Catalog {
        let code_ids = naming::code_ids(envs.iter().map(Named::from));
        let mut catalog = Catalog::default();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut not_servable: HashMap<&str, usize> = HashMap::new();
        for env in envs.iter().filter(|e| e.status == VERIFIED) {
            if let Some(detail) = not_servable_because(env) {
                catalog.skipped.not_servable.push((env.env_name.clone(), detail));
                not_servable.insert(&env.env_id, 0);
                continue;
            }
            index_of.insert(&env.env_id, catalog.envs.len());
            catalog.add_env(env, &code_ids[&env.env_id]);
        }
        for config in configs.iter().filter(|c| c.kept || all_configs) {
            if let Some(&env) = index_of.get(config.env_id.as_str()) {
                catalog.add_config(env, config);
            } else if let Some(count) = not_servable.get_mut(config.env_id.as_str()) {
                *count += 1;
            }
        }
        catalog.skipped.not_servable_configs = not_servable.values().sum();
        catalog
    }

    fn add_env(&mut self, env: &EnvironmentRow, code_id: &str) {
        let index = self.envs.len();
        let long_name = naming::long_name(code_id, &env.env_name);
        self.by_name.entry(env.env_name.clone()).or_default().push(index);
        self.by_long_name.insert(long_name.clone(), index);
        self.by_options.push(HashMap::new());
        self.envs.push(Arc::new(ServedEnv {
            env_id: env.env_id.clone(),
            env_name: env.env_name.clone(),
            long_name,
            source: env.env_code.clone(),
            task_text: env.task_text.clone().unwrap_or_default(),
            tools: tools::from_schemas(
                &env.tools,
                &crate::tools::stored_or_computed(env.tool_schemas.as_deref(), &env.tool_docs),
            ),
            bytecode: OnceLock::new(),
        }));
    }

    fn add_config(&mut self, env: usize, row: &TaskConfigRow) {
        let options = naming::options(&row.config);
        let key = canonical(options).unwrap_or_else(|_| options.to_string());
        self.by_options[env].insert(key, self.configs.len());
        self.by_id.insert(row.config_id.clone(), self.configs.len());
        self.configs.push(Arc::new(ServedConfig {
            config_id: row.config_id.clone(),
            config: row.config.clone(),
            env: self.envs[env].clone(),
            seed: crate::harness::seed_for(&row.config_id),
        }));
    }

    pub fn envs(&self) -> &[Arc<ServedEnv>] {
        &self.envs
    }

    pub fn configs(&self) -> &[Arc<ServedConfig>] {
        &self.configs
    }

    /// The served configuration `reference` names.
    pub fn resolve(&self, reference: &ConfigRef) -> Result<Arc<ServedConfig>, ResolveError> {
        match reference {
            ConfigRef::Id(id) => self.by_id.get(id).map(|&i| self.configs[i].clone()).ok_or(ResolveError::UnknownId(id.clone())),
            ConfigRef::EnvStr(env_str) => self.resolve_env_str(env_str),
        }
    }

    fn resolve_env_str(&self, env_str: &str) -> Result<Arc<ServedConfig>, ResolveError> {
        let bare = naming::strip_ability(env_str);
        let (name, options) = bare.split_once('@').ok_or_else(|| ResolveError::Malformed(env_str.to_string()))?;
        let key = canonical(options).map_err(|e| ResolveError::NotJson(env_str.to_string(), e))?;
        let env = self.env_named(name)?;
        self.by_options[env].get(&key).map(|&i| self.configs[i].clone()).ok_or_else(|| ResolveError::UnknownConfig {
            env: name.to_string(),
            options: key,
            served: self.by_options[env].len(),
        })
    }

    /// The environment a name in an `env_str` (or MCP's `env_name`) names: a long name, or a class
    /// name exactly one served environment has.
    pub fn env_named(&self, name: &str) -> Result<usize, ResolveError> {
        if let Some(&env) = self.by_long_name.get(name) {
            return Ok(env);
        }
        match self.by_name.get(name).map(Vec::as_slice) {
            Some([env]) => Ok(*env),
            Some(many) => Err(ResolveError::Ambiguous {
                name: name.to_string(),
                long: many.iter().map(|&i| self.envs[i].long_name.clone()).collect(),
            }),
            None => {
                let known: BTreeSet<&String> = self.by_name.keys().collect();
                Err(ResolveError::UnknownEnv { name: name.to_string(), known: known.into_iter().cloned().collect() })
            }
        }
    }
}

/// The JSON text `options` with keys sorted and no spacing: two spellings of the same options
/// give the same text. Values compare as Python reads them: integers exactly, whatever their size
/// (never through a float), other numbers by their float value.
fn canonical(options: &str) -> Result<String, String> {
    let mut out = String::new();
    write_canonical(options, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn write_canonical(text: &str, out: &mut String) -> Result<(), serde_json::Error> {
    use serde_json::value::RawValue;
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let members: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                out.push_str(if i == 0 { "" } else { "," });
                out.push_str(&serde_json::to_string(&key)?);
                out.push(':');
                write_canonical(value.get(), out)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                out.push_str(if i == 0 { "" } else { "," });
                write_canonical(item.get(), out)?;
            }
            out.push(']');
        }
        Some(b'"') => out.push_str(&serde_json::to_string(&serde_json::from_str::<String>(text)?)?),
        _ => {
            // A literal or a number, checked as JSON first.
            let value: serde_json::Value = serde_json::from_str(text)?;
            match value {
                serde_json::Value::Number(_) if !text.contains(['.', 'e', 'E']) => {
                    out.push_str(if text == "-0" { "0" } else { text })
                }
                other => out.push_str(&other.to_string()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, source_id: &str, name: &str) -> EnvironmentRow {
        EnvironmentRow {
            status: VERIFIED.into(),
            servable: Some(true),
            verifier: Some(crate::verify::VerifySettings::default().verifier()),
            tools: vec!["Observe".into(), "Done".into()],
            ..EnvironmentRow::pending(id.into(), "s".into(), source_id.into(), name.into(), "code".into())
        }
    }

    fn config(env_id: &str, name: &str, options: &str) -> TaskConfigRow {
        TaskConfigRow { kept: true, ..TaskConfigRow::pending(env_id, name, format!("{name}@{options}"), "easy", None) }
    }

    fn catalog() -> Catalog {
        let envs = [
            env("e1", "cf_1", "SumEnv"),
            env("e2", "cf_2", "SumEnv"),
            env("e3", "cf_3", "MaxEnv"),
            EnvironmentRow { servable: Some(false), serve_detail: Some("a generator".into()), ..env("e4", "cf_4", "GenEnv") },
            EnvironmentRow { verifier: Some("verify-checks-v2+0123456789ab".into()), ..env("e5", "cf_5", "OldEnv") },
        ];
        let configs = [
            config("e1", "SumEnv", r#"{"a": [1, 2], "b": 3}"#),
            config("e2", "SumEnv", r#"{"a": [1, 2], "b": 3}"#),
            config("e3", "MaxEnv", r#"{"xs": [4]}"#),
            TaskConfigRow { kept: false, ..config("e3", "MaxEnv", r#"{"xs": [5]}"#) },
            config("e4", "GenEnv", "{}"),
            config("e5", "OldEnv", "{}"),
        ];
        Catalog::new(&envs, &configs, false)
    }

    #[test]
    fn configurations_are_named_by_id_short_name_or_long_name() {
        let catalog = catalog();
        assert_eq!(catalog.configs().len(), 3, "kept configurations of servable environments");
        let max = catalog.resolve(&ConfigRef::EnvStr(r#"MaxEnv@{ "xs":[4] }"#.into())).unwrap();
        assert_eq!(max.env.env_id, "e3");
        assert_eq!(catalog.resolve(&ConfigRef::Id(max.config_id.clone())).unwrap().config, max.config);
        let long = catalog.resolve(&ConfigRef::EnvStr(r#"codegym_v1@cf_2__SumEnv@{"b": 3, "a": [1, 2]}"#.into())).unwrap();
        assert_eq!(long.env.env_id, "e2");
    }

    #[test]
    fn options_are_matched_by_exact_value_big_integers_included() {
        let big = |n: &str| config("e1", "BigEnv", &format!(r#"{{"n": {n}, "w": [1.5, "x"]}}"#));
        let configs = [big("18446744073709551617"), big("18446744073709551618")];
        let catalog = Catalog::new(&[env("e1", "cf_1", "BigEnv")], &configs, false);
        assert_eq!(catalog.configs().len(), 2);
        for (i, n) in ["18446744073709551617", "18446744073709551618"].into_iter().enumerate() {
            let asked = format!(r#"BigEnv@{{ "w": [15e-1, "x"], "n": {n} }}"#);
            let found = catalog.resolve(&ConfigRef::EnvStr(asked)).unwrap();
            assert_eq!(found.config_id, configs[i].config_id, "{n}");
        }
        assert_eq!(canonical(r#"{"b": -0, "a": "\u0041"}"#).unwrap(), r#"{"a":"A","b":0}"#);
        assert!(canonical("{x}").is_err() && canonical("[1,]").is_err() && canonical("01").is_err());
    }

    #[test]
    fn what_cannot_be_found_says_what_can() {
        let catalog = catalog();
        let resolve = |s: &str| catalog.resolve(&ConfigRef::EnvStr(s.into())).unwrap_err().to_string();
        assert!(resolve(r#"SumEnv@{"a": [1, 2], "b": 3}"#).contains("cf_1__SumEnv, cf_2__SumEnv"));
        assert!(resolve(r#"MaxEnv@{"xs": [5]}"#).contains("no served configuration"), "not kept");
        assert!(resolve(r#"GenEnv@{}"#).contains("the environments are: MaxEnv, SumEnv"));
        assert!(resolve("MaxEnv").contains("malformed"));
        assert!(resolve("MaxEnv@{xs}").contains("not JSON"));
        assert!(catalog.resolve(&ConfigRef::Id("nope".into())).unwrap_err().to_string().contains("unknown config_id"));
        assert!(resolve(r#"MaxEnv@{"xs": [4.0]}"#).contains("no served configuration"), "a float is not the int");
        assert_eq!(catalog.skipped.not_servable[0], ("GenEnv".to_string(), "a generator".to_string()));
        let (old, why) = &catalog.skipped.not_servable[1];
        assert!(old == "OldEnv" && why.contains("verify-checks-v2") && why.contains("re-verify"), "{why}");
        assert_eq!(catalog.skipped.not_servable_configs, 2);
    }
}
