//! The `hf` format's dataset card, `README.md`: YAML front matter Hugging Face reads (the Hub's
//! metadata: licence ids, language, size and task categories, tags; `configs` with the
//! configurations as the default, `dataset_info` with every config's features and its splits'
//! `num_examples` and `num_bytes`), then the text a person reads: what is in it, the licences
//! carried over from the sources with their row counts, how it was built, the plots, how to use it.
//!
//! The front matter is a typed struct written by a YAML serializer, never by hand, so no string can
//! change its structure; Markdown table cells go through [`cell`] for the same reason.
//!
//! Licences are never guessed: a synthesized environment carries its problem's `license`
//! (`unknown` when the corpus stated none), an imported CodeGym release CC BY-NC 4.0; the front
//! matter has their Hub ids ([`super::license`]), the table the texts as written.

use super::ExportError;
use super::license::{self, HubLicense};
use super::plots::thousands;
use super::settings::ExportSettings;
use super::source::{EnvMeta, Plan, PlanStats};
use crate::dataset::{Dataset, Table};
use crate::tables::Split;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Fields, TimestampMillisecondType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// The licence of imported CodeGym releases (`import-codegym` reads nothing else).
pub(crate) const CODEGYM_RELEASE_LICENSE: &str = "CC BY-NC 4.0";
pub(crate) const UNKNOWN_LICENSE: &str = "unknown";
const PRETTY_NAME: &str = "CodeGym tool-use environments";

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
    /// What the exploit battery tried on the dataset's environments, and caught.
    pub audit: crate::verify::audit::Audit,
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
    facts.audit = crate::verify::audit::audit(data)?;
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

impl Card<'_> {
    /// Rows of the default config (the configurations).
    fn rows(&self) -> u64 {
        self.configs.first().map_or(0, |c| c.splits.iter().map(|s| s.rows).sum())
    }
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

/// The card's YAML front matter, in the order the Hub's editor writes it.
#[derive(Serialize)]
struct FrontMatter<'a> {
    license: Vec<&'static str>,
    /// The name of the licence that is `other` (`various` when several are).
    #[serde(skip_serializing_if = "Option::is_none")]
    license_name: Option<String>,
    language: [&'static str; 1],
    pretty_name: &'static str,
    size_categories: [&'static str; 1],
    task_categories: [&'static str; 2],
    tags: [&'static str; 4],
    configs: Vec<ConfigEntry<'a>>,
    dataset_info: Vec<DatasetInfo<'a>>,
}

#[derive(Serialize)]
struct ConfigEntry<'a> {
    config_name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    data_files: Vec<DataFiles>,
}

#[derive(Serialize)]
struct DataFiles {
    split: &'static str,
    path: String,
}

#[derive(Serialize)]
struct DatasetInfo<'a> {
    config_name: &'a str,
    features: Vec<Feature>,
    splits: Vec<SplitInfo>,
    download_size: u64,
    dataset_size: u64,
}

#[derive(Serialize)]
struct SplitInfo {
    name: &'static str,
    num_bytes: u64,
    num_examples: u64,
}

/// A `datasets` feature as its YAML spells it: `name` and one of `dtype`, `list` or `struct`.
#[derive(Serialize)]
struct Feature {
    name: String,
    #[serde(flatten)]
    kind: FeatureKind,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum FeatureKind {
    Dtype(&'static str),
    List(ListItem),
    Struct(Vec<Feature>),
}

/// What a list holds: a scalar type, or the fields of a struct.
#[derive(Serialize)]
#[serde(untagged)]
enum ListItem {
    Dtype(&'static str),
    Struct(Vec<Feature>),
}

fn features(fields: &Fields) -> Vec<Feature> {
    fields.iter().map(|field| Feature { name: field.name().clone(), kind: feature_kind(field.data_type()) }).collect()
}

/// The `datasets` feature of an Arrow type.
fn feature_kind(data_type: &DataType) -> FeatureKind {
    match data_type {
        DataType::Struct(fields) => FeatureKind::Struct(features(fields)),
        DataType::List(item) => FeatureKind::List(match item.data_type() {
            DataType::Struct(fields) => ListItem::Struct(features(fields)),
            scalar => ListItem::Dtype(dtype(scalar)),
        }),
        scalar => FeatureKind::Dtype(dtype(scalar)),
    }
}

fn dtype(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int64 => "int64",
        DataType::Int32 => "int32",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        DataType::Null => "null",
        other => unreachable!("exports write no {other} column; this is a bug in codegym"),
    }
}

/// The Hub's size bucket of a dataset of `rows` rows.
fn size_category(rows: u64) -> &'static str {
    const BUCKETS: [(u64, &str); 10] = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
        (10_000_000_000, "1B<n<10B"),
        (100_000_000_000, "10B<n<100B"),
        (1_000_000_000_000, "100B<n<1T"),
    ];
    BUCKETS.iter().find(|(below, _)| rows < *below).map_or("n>1T", |(_, bucket)| bucket)
}

/// The Hub licences of the card's licence texts, and the name of the one that is `other`.
fn hub_licenses(card: &Card) -> (Vec<&'static str>, Option<String>) {
    let mut ids: BTreeSet<&'static str> = BTreeSet::new();
    let mut others: Vec<&str> = Vec::new();
    for text in card.licenses.keys() {
        let hub = license::hub_license(text);
        ids.insert(hub.id());
        if hub == HubLicense::Other {
            others.push(text);
        }
    }
    if ids.is_empty() {
        ids.insert(HubLicense::Unknown.id());
    }
    let name = match others.as_slice() {
        [] => None,
        [one] => Some(license::slug(one)),
        _ => Some("various".to_string()),
    };
    (ids.into_iter().collect(), name)
}

fn front_matter(card: &Card) -> String {
    let (license, license_name) = hub_licenses(card);
    let configs = card.configs.iter().enumerate().map(|(i, config)| ConfigEntry {
        config_name: config.name,
        default: i == 0,
        data_files: config
            .splits
            .iter()
            .map(|s| DataFiles { split: s.split.name(), path: format!("{}/{}-*.parquet", config.dir, s.split.name()) })
            .collect(),
    });
    let dataset_info = card.configs.iter().map(|config| DatasetInfo {
        config_name: config.name,
        features: features(config.fields),
        splits: config
            .splits
            .iter()
            .map(|s| SplitInfo { name: s.split.name(), num_bytes: s.arrow_bytes, num_examples: s.rows })
            .collect(),
        download_size: config.splits.iter().map(|s| s.file_bytes).sum(),
        dataset_size: config.splits.iter().map(|s| s.arrow_bytes).sum(),
    });
    let front = FrontMatter {
        license,
        license_name,
        language: ["en"],
        pretty_name: PRETTY_NAME,
        size_categories: [size_category(card.rows())],
        task_categories: ["reinforcement-learning", "text-generation"],
        tags: ["codegym", "tool-use", "reinforcement-learning", "agents"],
        configs: configs.collect(),
        dataset_info: dataset_info.collect(),
    };
    format!("---\n{}---\n", yaml(&front))
}

/// `value` as block YAML. Block scalars (`|`, `>`) are off: a quoted scalar, escapes and all, is
/// the one style every reader takes back exactly.
fn yaml(value: &impl Serialize) -> String {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(value, options).expect("the front matter is maps, lists, strings and numbers")
}

/// `text` as one Markdown table cell that reads as written: Markdown punctuation (`|` among it)
/// and edge spaces escaped, line breaks as `<br>`, other control characters shown as their
/// Unicode control pictures (C0, DEL) or `U+0085`-style codes (C1).
fn cell(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        match c {
            '\n' | '\r' => out.push_str("<br>"),
            ' ' if i == 0 || i == last => out.push_str("&#32;"),
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&visible_control(c)),
            c => out.push(c),
        }
    }
    out
}

/// A control character as something a reader sees: its Unicode control picture (C0, DEL), else
/// its code (`U+0085`).
fn visible_control(c: char) -> String {
    match c {
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).map(String::from).unwrap_or_default(),
        '\u{7f}' => '\u{2421}'.to_string(),
        c => format!("U+{:04X}", c as u32),
    }
}

/// The card's text.
pub(crate) fn render(card: &Card) -> String {
    let mut out = front_matter(card);
    let settings = card.settings;
    let stats = card.stats;
    let facts = card.facts;
    let rows = card.rows();
    let _ = write!(
        out,
        "\n# {PRETTY_NAME}\n\n\
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
         environment imported from a CodeGym release CC BY-NC 4.0; `unknown` means the source stated none. The Hub id \
         is the licence's SPDX id as the Hub spells it, or `other` when the text names no licence the Hub lists (the \
         text is then all there is: read it as written).\n\n\
         | licence | Hub id | environments | configurations |\n|---|---|---:|---:|\n",
    );
    for (license, (envs, configs)) in &card.licenses {
        let hub = license::hub_license(license).id();
        let _ = writeln!(out, "| {} | {hub} | {} | {} |", cell(license), thousands(*envs), thousands(*configs));
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
        last_verify = facts.last_verify.as_deref().map_or("not recorded".to_string(), code),
        problems = thousands(facts.problems),
        passed = thousands(facts.preflight_passed),
        environments = thousands(stats.environments),
        verified = thousands(stats.verified),
        configs = thousands(stats.configs),
        oracle = thousands(stats.oracle_passed),
        kept = thousands(stats.kept),
        rows = thousands(rows),
    );
    out.push_str(&audit_section(&facts.audit));
    out.push_str("## Plots\n\n");
    for (file, title) in &card.plots {
        let _ = writeln!(out, "![{title}]({file})\n");
    }
    out.push_str(USE);
    out
}

/// The hackability audit: every attack the exploit battery made on the dataset's environments
/// (kept or not), and what it caught. An environment it caught is never exported.
fn audit_section(audit: &crate::verify::audit::Audit) -> String {
    let (played, caught) = audit.environments();
    if played == 0 {
        return "## Hackability audit\n\nThe exploit battery has not played any environment of this dataset.\n\n".into();
    }
    format!(
        "## Hackability audit\n\n\
         Before an environment is kept, verification attacks it as a reward-hacking agent would, through the same \
         episode path `codegym serve` uses: answers of every other type and shape, values the agent saw, optional \
         parameters, retries, padding to the step cap, names that are not tools, fuzzed arguments, the answer \
         searched for in everything the agent sees, a session replayed through its pickled state, two episodes in \
         one loaded module, every tool timed. It played {played} environments and caught {caught}; no caught \
         environment is in this dataset's exports. Every run is a row of the `battery_runs` table.\n\n{}\n",
        audit.markdown()
    )
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
    if items.is_empty() { none.to_string() } else { items.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ") }
}

/// `text` as one Markdown code span that reads as written, whatever it holds: fenced by one more
/// backtick than its longest run of them (padded when it starts or ends with one), line breaks as
/// spaces, other control characters shown as in [`cell`].
fn code(text: &str) -> String {
    let visible: String = text
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => " ".to_string(),
            c if c.is_control() => visible_control(c),
            c => c.to_string(),
        })
        .collect();
    let longest = visible.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if visible.starts_with('`') || visible.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{visible}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn a_code_span_holds_any_text_on_one_line() {
        assert_eq!(code("gpt-4o"), "`gpt-4o`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x``"), "``` `x`` ```");
        assert_eq!(code("codegym verify\n--all\u{7f}"), "`codegym verify --all\u{2421}`");
    }

    /// Strings a YAML reader could take for something else, or refuse.
    const HOSTILE: [&str; 22] = [
        "yes",
        "No",
        "on",
        "null",
        "~",
        "",
        "0123",
        "1_000",
        "1:20",
        "0x1F",
        ".inf",
        "2001-12-14",
        "=",
        "<<",
        "- x",
        "* x",
        "&a",
        "!tag",
        "#x",
        "a: b # c",
        "| '\"\\",
        "line\nline\r\t\u{0}\u{7}\u{1b}\u{7f}\u{80}\u{85}\u{9f}\u{feff}\u{2028}😀",
    ];

    /// The characters PyYAML's reader accepts in a document.
    fn pyyaml_accepts(c: char) -> bool {
        matches!(c as u32, 0x09 | 0x0A | 0x0D | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
    }

    #[test]
    fn yaml_quotes_and_escapes_every_string_a_reader_would_misread() {
        let text = yaml(&HOSTILE);
        assert!(text.chars().all(pyyaml_accepts), "{text:?}");
        for line in text.lines() {
            assert!(line.starts_with("- '") || line.starts_with("- \""), "a plain scalar: {line:?} in {text}");
        }
        let back: Vec<String> = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, HOSTILE, "{text}");
    }

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
        assert_eq!(
            yaml(&features(&fields)),
            "- name: prompt\n  list:\n  - name: role\n    dtype: string\n- name: reward_model\n  struct:\n  - name: ground_truth\n    dtype: \"null\"\n- name: tools\n  list: string\n"
        );
    }

    #[test]
    fn table_cells_read_as_written_and_never_break_the_table() {
        assert_eq!(cell("CC BY-NC 4.0"), "CC BY\\-NC 4\\.0");
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(cell("one\r\ntwo\nthree\rfour"), "one<br>two<br>three<br>four");
        assert_eq!(cell(" x "), "&#32;x&#32;");
        assert_eq!(cell("a\\b <i>&amp;"), "a\\\\b \\<i\\>\\&amp\\;");
        assert_eq!(cell("\u{0}\t\u{7f}\u{80}\u{9f}"), "\u{2400}\u{2409}\u{2421}U+0080U+009F");
        assert_eq!(cell("😀 é"), "😀 é");
        for hostile in HOSTILE {
            let escaped = cell(hostile);
            assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
            // Every `|` is escaped, so the row keeps its cells.
            assert!(escaped.match_indices('|').all(|(i, _)| escaped[..i].ends_with('\\')), "{escaped:?}");
        }
    }

    #[test]
    fn sizes_fall_in_the_hubs_buckets() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(999), "n<1K");
        assert_eq!(size_category(1_000), "1K<n<10K");
        assert_eq!(size_category(767), "n<1K");
        assert_eq!(size_category(2_500_000), "1M<n<10M");
        assert_eq!(size_category(u64::MAX), "n>1T");
    }
}
