//! The `hf` format's dataset card, `README.md`: YAML front matter Hugging Face reads (the licences,
//! `configs` with the configurations as the default, `dataset_info` with every config's features
//! and its splits' `num_examples` and `num_bytes`), then the text a person reads: what is in it,
//! the licences carried over from the sources with their row counts, how it was built, the plots.
//!
//! Licences are never guessed: a synthesized environment carries its problem's `license`
//! (`unknown` when the corpus stated none), an imported CodeGym release CC BY-NC 4.0.

use super::ExportError;
use super::plots::thousands;
use super::settings::ExportSettings;
use super::source::{EnvMeta, Plan, PlanStats};
use crate::dataset::{Dataset, Table};
use crate::tables::Split;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Fields, TimestampMillisecondType};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// The licence of imported CodeGym releases (`import-codegym` reads nothing else).
pub(crate) const CODEGYM_RELEASE_LICENSE: &str = "CC BY-NC 4.0";
pub(crate) const UNKNOWN_LICENSE: &str = "unknown";

/// What the card says about the dataset beyond the exported rows.
#[derive(Debug, Default)]
pub(crate) struct DatasetFacts {
    pub problems: u64,
    pub preflight_passed: u64,
    /// Rejects per `stage/reason`.
    pub rejects: BTreeMap<String, u64>,
    pub models: BTreeSet<String>,
    pub prompt_versions: BTreeSet<String>,
    /// The command line of the last run that verified (`verify` or `build`).
    pub last_verify: Option<String>,
}

pub(crate) fn dataset_facts(data: &Dataset) -> Result<DatasetFacts, ExportError> {
    let mut facts = DatasetFacts::default();
    for batch in data.scan(Table::Problems, &["preflight"], 8192)? {
        let batch = batch?;
        let preflight = batch.column(0).as_string::<i32>();
        facts.problems += batch.num_rows() as u64;
        facts.preflight_passed += preflight.iter().filter(|v| *v == Some("pass")).count() as u64;
    }
    for batch in data.scan(Table::Rejects, &["stage", "reason"], 8192)? {
        let batch = batch?;
        let (stages, reasons) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        for i in 0..batch.num_rows() {
            *facts.rejects.entry(format!("{}/{}", stages.value(i), reasons.value(i))).or_default() += 1;
        }
    }
    for batch in data.scan(Table::LlmCalls, &["model", "prompt_version"], 8192)? {
        let batch = batch?;
        let (models, versions) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        for i in 0..batch.num_rows() {
            facts.models.insert(models.value(i).to_string());
            facts.prompt_versions.insert(versions.value(i).to_string());
        }
    }
    let mut latest: Option<(i64, String)> = None;
    for batch in data.scan(Table::Runs, &["command", "arguments", "started_at"], 1024)? {
        let batch = batch?;
        let (commands, arguments) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        let started = batch.column(2).as_primitive::<TimestampMillisecondType>();
        for i in 0..batch.num_rows() {
            let verified = matches!(commands.value(i), "verify" | "build");
            if verified && latest.as_ref().is_none_or(|(at, _)| started.value(i) > *at) {
                latest = Some((started.value(i), arguments.value(i).to_string()));
            }
        }
    }
    facts.last_verify = latest.map(|(_, arguments)| {
        let args: Vec<String> = serde_json::from_str(&arguments).unwrap_or_default();
        format!("codegym {}", args.join(" "))
    });
    Ok(facts)
}

/// The licence of every exported environment, by [`EnvMeta::index`].
pub(crate) fn licenses(plan: &Plan) -> Result<Vec<String>, ExportError> {
    let mut licenses = vec![String::new(); plan.envs.len()];
    let mut by_problem: HashMap<&str, Vec<usize>> = HashMap::new();
    for env in plan.exported_envs() {
        match &env.problem_id {
            Some(problem) => by_problem.entry(problem.as_str()).or_default().push(env.index as usize),
            None => licenses[env.index as usize] = CODEGYM_RELEASE_LICENSE.into(),
        }
    }
    if !by_problem.is_empty() {
        for batch in plan.data.scan(Table::Problems, &["problem_id", "license"], 8192)? {
            let batch = batch?;
            let (ids, values) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
            for i in 0..batch.num_rows() {
                let Some(envs) = by_problem.get(ids.value(i)) else { continue };
                let license = values.is_valid(i).then(|| values.value(i).trim()).filter(|l| !l.is_empty());
                for &env in envs {
                    licenses[env] = license.unwrap_or(UNKNOWN_LICENSE).to_string();
                }
            }
        }
    }
    for env in plan.exported_envs() {
        if licenses[env.index as usize].is_empty() {
            licenses[env.index as usize] = UNKNOWN_LICENSE.into();
        }
    }
    Ok(licenses)
}

/// One config's split as written.
#[derive(Debug, Clone)]
pub(crate) struct SplitFiles {
    pub split: Split,
    pub rows: u64,
    pub arrow_bytes: u64,
    pub file_bytes: u64,
}

/// One Hugging Face config: its name, directory, schema and splits.
pub(crate) struct ConfigCard<'a> {
    pub name: &'a str,
    pub dir: &'a str,
    pub fields: &'a Fields,
    pub splits: Vec<SplitFiles>,
}

/// Everything the card shows.
pub(crate) struct Card<'a> {
    pub settings: &'a ExportSettings,
    pub stats: &'a PlanStats,
    pub facts: &'a DatasetFacts,
    /// Licence -> (environments, configurations).
    pub licenses: BTreeMap<String, (u64, u64)>,
    pub configs: Vec<ConfigCard<'a>>,
    /// (file under the export, what it shows).
    pub plots: Vec<(String, String)>,
}

/// Licence -> (environments, configurations) over the exported environments.
pub(crate) fn license_counts<'a>(envs: impl Iterator<Item = &'a EnvMeta>, licenses: &[String]) -> BTreeMap<String, (u64, u64)> {
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for env in envs {
        let slot = counts.entry(licenses[env.index as usize].clone()).or_default();
        slot.0 += 1;
        slot.1 += env.rows;
    }
    counts
}

/// A licence as a Hugging Face licence id (`CC BY-NC 4.0` -> `cc-by-nc-4.0`).
fn license_id(license: &str) -> String {
    license
        .trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// A YAML scalar, quoted when YAML could read it as something else.
fn yaml_str(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn feature_yaml(out: &mut String, fields: &Fields, indent: usize) {
    let pad = " ".repeat(indent);
    for field in fields {
        let _ = writeln!(out, "{pad}- name: {}", field.name());
        type_yaml(out, field.data_type(), indent + 2);
    }
}

/// The `datasets` feature of an Arrow type, as its YAML spells it.
fn type_yaml(out: &mut String, data_type: &DataType, indent: usize) {
    let pad = " ".repeat(indent);
    match data_type {
        DataType::Struct(fields) => {
            let _ = writeln!(out, "{pad}struct:");
            feature_yaml(out, fields, indent);
        }
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => {
                let _ = writeln!(out, "{pad}list:");
                feature_yaml(out, fields, indent);
            }
            scalar => {
                let _ = writeln!(out, "{pad}list: {}", dtype(scalar));
            }
        },
        scalar => {
            let _ = writeln!(out, "{pad}dtype: {}", dtype(scalar));
        }
    }
}

fn dtype(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int64 => "int64",
        DataType::Int32 => "int32",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        DataType::Null => "'null'",
        other => unreachable!("exports write no {other} column; this is a bug in codegym"),
    }
}

fn front_matter(card: &Card) -> String {
    let mut out = String::from("---\nlicense:\n");
    for license in card.licenses.keys() {
        let _ = writeln!(out, "- {}", yaml_str(&license_id(license)));
    }
    if card.licenses.is_empty() {
        let _ = writeln!(out, "- {}", yaml_str(UNKNOWN_LICENSE));
    }
    out.push_str(
        "pretty_name: CodeGym tool-use environments\ntags:\n- codegym\n- tool-use\n- reinforcement-learning\n- agents\n",
    );
    out.push_str("configs:\n");
    for (i, config) in card.configs.iter().enumerate() {
        let _ = writeln!(out, "- config_name: {}", config.name);
        if i == 0 {
            out.push_str("  default: true\n");
        }
        out.push_str("  data_files:\n");
        for split in &config.splits {
            let name = split.split.name();
            let _ = writeln!(out, "  - split: {name}\n    path: {}/{name}-*.parquet", config.dir);
        }
    }
    out.push_str("dataset_info:\n");
    for config in &card.configs {
        let _ = writeln!(out, "- config_name: {}\n  features:", config.name);
        feature_yaml(&mut out, config.fields, 2);
        out.push_str("  splits:\n");
        for split in &config.splits {
            let _ = writeln!(
                out,
                "  - name: {}\n    num_bytes: {}\n    num_examples: {}",
                split.split.name(),
                split.arrow_bytes,
                split.rows
            );
        }
        let download: u64 = config.splits.iter().map(|s| s.file_bytes).sum();
        let size: u64 = config.splits.iter().map(|s| s.arrow_bytes).sum();
        let _ = writeln!(out, "  download_size: {download}\n  dataset_size: {size}");
    }
    out.push_str("---\n");
    out
}

/// The card's text.
pub(crate) fn render(card: &Card) -> String {
    let mut out = front_matter(card);
    let settings = card.settings;
    let stats = card.stats;
    let facts = card.facts;
    let rows: u64 = card.configs.first().map_or(0, |c| c.splits.iter().map(|s| s.rows).sum());
    let _ = write!(
        out,
        "\n# CodeGym tool-use environments\n\n\
         Interactive, verified tool-use environments for training LLM agents with reinforcement learning, built \
         with codegym {version} (the CodeGym method). An agent solves a hidden instance by \
         calling the environment's tools one at a time and submitting its answer with `Done`; the environment \
         grades it 0 or 1.\n\n\
         - `configurations` (the default config): one row per task configuration, {rows} in all, in the CodeGym \
         release's shape (`prompt`, `ability`, `reward_model`, `extra_info`, ...). `extra_info.env_str` and \
         `extra_info.config_id` are what `codegym serve` starts an episode from.\n\
         - `environments`: one row per environment ({envs}), with its Python source (`env_code`, a \
         `gymnasium.Env` subclass using the standard library only), its tool docs and tool schemas; \
         `environments/gymnasium.py` is the `gymnasium` they import.\n\n",
        version = env!("CARGO_PKG_VERSION"),
        rows = thousands(rows),
        envs = thousands(card.configs.get(1).map_or(0, |c| c.splits.iter().map(|s| s.rows).sum())),
    );
    out.push_str("## Contents\n\n| config | split | rows | Parquet bytes |\n|---|---|---:|---:|\n");
    for config in &card.configs {
        for split in &config.splits {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                config.name,
                split.split.name(),
                thousands(split.rows),
                thousands(split.file_bytes)
            );
        }
    }
    out.push_str(
        "\n## Licences\n\nCarried over from the sources: a synthesized environment has its source problem's licence, an \
         environment imported from a CodeGym release CC BY-NC 4.0; `unknown` means the source stated none.\n\n\
         | licence | environments | configurations |\n|---|---:|---:|\n",
    );
    for (license, (envs, configs)) in &card.licenses {
        let _ = writeln!(out, "| {license} | {} | {} |", thousands(*envs), thousands(*configs));
    }
    let (max_calls, max_rate) = if settings.hard { (512, "1/8") } else { (256, "25%") };
    let _ = write!(
        out,
        "\n## How it was built\n\n\
         - codegym {version}; export format `hf` version {format_version}; agent instructions `prompts/{prompt}.md`.\n\
         - Models: {models}. Prompts: {prompts}.\n\
         - Curation{variant}: a configuration is kept when its oracle passed with between 10 and {max_calls} tool \
         calls, its environment is verified and has at least 4 tools, and the reference model solves it at most \
         {max_rate} of the time where that rate is known.\n\
         - Last verification: {last_verify}.\n\
         - Yield: {problems} problems ({passed} passing their own tests), {environments} environments \
         ({verified} verified), {configs} configurations ({oracle} solved by the oracle, {kept} kept), {rows} exported.\n\n",
        version = env!("CARGO_PKG_VERSION"),
        format_version = settings.format.version(),
        prompt = super::prompts::VERSION,
        models = list_or_none(&facts.models, "none recorded (imported data)"),
        prompts = list_or_none(&facts.prompt_versions, "none recorded"),
        variant = if settings.hard { " (hard variant)" } else { "" },
        last_verify = facts.last_verify.as_deref().map_or("not recorded".to_string(), |c| format!("`{c}`")),
        problems = thousands(facts.problems),
        passed = thousands(facts.preflight_passed),
        environments = thousands(stats.environments),
        verified = thousands(stats.verified),
        configs = thousands(stats.configs),
        oracle = thousands(stats.oracle_passed),
        kept = thousands(stats.kept),
        rows = thousands(rows),
    );
    out.push_str("## Plots\n\n");
    for (file, title) in &card.plots {
        let _ = writeln!(out, "![{title}]({file})\n");
    }
    out.push_str(USE);
    out
}

/// The card's last section: loading the configs, and running an environment with plain CPython.
const USE: &str = r#"## Use

```python
import sys
from datasets import load_dataset

root = "path/to/this/directory"
rows = load_dataset(root)  # configurations
envs = load_dataset(root, "environments")

# The environments import `gymnasium`: environments/gymnasium.py is the stand-in they need (a
# plain base class), so they run on the standard library alone. Put it first on the path.
sys.path.insert(0, f"{root}/environments")
env = envs["train"][0]
namespace = {}
exec(env["env_code"], namespace)
stem = env["source"] + "__" + env["env_name"]
row = next(r for r in rows["train"] if r["extra_info"]["env_str"].startswith(stem + "@"))
options = row["extra_info"]["env_str"].split("@", 1)[1]
instance = namespace[env["env_name"]].from_env_str(env["env_name"] + "@" + options)
print(instance.step('{"name": "Observe", "parameters": {}}'))
```

A row's `ability` is `codegym_v1@{code_id}__{env_name}@{json}`; `code_id` is the environment's `source`.
"#;

fn list_or_none(items: &BTreeSet<String>, none: &str) -> String {
    if items.is_empty() { none.to_string() } else { items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn features_spell_types_as_datasets_does() {
        let message = DataType::Struct(Fields::from(vec![Field::new("role", DataType::Utf8, false)]));
        let fields = Fields::from(vec![
            Field::new("prompt", DataType::List(Arc::new(Field::new("item", message, false))), false),
            Field::new(
                "reward_model",
                DataType::Struct(Fields::from(vec![Field::new("ground_truth", DataType::Null, true)])),
                false,
            ),
            Field::new("tools", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
        ]);
        let mut out = String::new();
        feature_yaml(&mut out, &fields, 0);
        assert_eq!(
            out,
            "- name: prompt\n  list:\n  - name: role\n    dtype: string\n- name: reward_model\n  struct:\n  - name: ground_truth\n    dtype: 'null'\n- name: tools\n  list: string\n"
        );
        assert_eq!(license_id("CC BY-NC 4.0"), "cc-by-nc-4.0");
        assert_eq!(license_id("MIT"), "mit");
    }
}
