//! The `codegym` format: the CodeGym release's instance shape (`../shared/spec/codegym-pipeline.md`),
//! as `{split}.jsonl` and `{split}.parquet`, with the environments beside them as
//! `envs/{code_id}__{EnvName}.py` and the `gymnasium` stand-in they import, `envs/gymnasium.py`,
//! so CPython runs them with the standard library alone.
//!
//! A row: `data_source` `codegym_v1`; `ability` `codegym_v1@{code_id}__{EnvName}@{json}`;
//! `code_id`; `prompt`, a system message named `functions` holding the tool docs and a user
//! message (named ``) with our instructions and the task text; `answer` "There is no answer";
//! `reward_model` `{style: agent_env, ground_truth: null}`; `plugin_call_max_round` (256, 512
//! with `--hard`); `extra_info` with the release's `index` (a string), `solve_fc_round` and
//! `plugin_call_max_round`, and ours: the configuration's keys for `codegym serve`, its difficulty
//! band, the oracle's trajectory as stored, the reference model's pass rate when known. The `hf`
//! format's configuration rows have this shape too ([`schema`], [`batch`]).

use super::rows::{self, ParquetFiles};
use super::source::{ConfigRow, EnvMeta, EnvText, Plan};
use super::{ExportError, FormatWriter};
use crate::naming;
use crate::tables::Split;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::writer::{LineDelimited, Writer as JsonWriter, WriterBuilder};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `gymnasium` stand-in the environments import, as the sandbox provides it.
const GYMNASIUM_STAND_IN: &str = include_str!("../harness/gymnasium.py");

/// Writes the stand-in as `dir/gymnasium.py` (creating `dir`), for exports that ship environments.
pub(crate) fn write_gymnasium(dir: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    let path = dir.join("gymnasium.py");
    std::fs::write(&path, GYMNASIUM_STAND_IN).map_err(|e| ExportError::io(&path, e))
}

fn extra_info_fields() -> Vec<Field> {
    vec![
        rows::utf8("index", false),
        Field::new("solve_fc_round", DataType::Int64, false),
        Field::new("plugin_call_max_round", DataType::Int64, false),
        rows::utf8("config_id", false),
        rows::utf8("env_str", false),
        rows::utf8("split", false),
        rows::utf8("difficulty", false),
        Field::new("reference_pass_rate", DataType::Float64, true),
        rows::utf8("oracle_trajectory", true),
        rows::utf8("source_index", true),
    ]
}

/// The schema of a release-shaped row.
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        rows::utf8("data_source", false),
        rows::utf8("ability", false),
        rows::utf8("code_id", false),
        Field::new("prompt", rows::prompt_type(true), false),
        rows::utf8("answer", false),
        Field::new("reward_model", rows::reward_model_type(), false),
        Field::new("plugin_call_max_round", DataType::Int64, false),
        Field::new("extra_info", rows::struct_type(extra_info_fields()), false),
    ]))
}

/// Release-shaped rows, with each row's `(system, user)` messages.
pub(crate) fn batch(
    config_rows: &[ConfigRow<'_>],
    prompts: &[(&str, &str)],
    split: Split,
    max_round: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = config_rows.len();
    let env_strs: Vec<String> = config_rows.iter().map(ConfigRow::env_str).collect();
    let extra: Vec<ArrayRef> = vec![
        rows::owned_strings(config_rows.iter().map(|r| r.index.to_string())),
        rows::int64s(config_rows.iter().map(|r| r.oracle_calls)),
        rows::int64s(std::iter::repeat_n(max_round, n)),
        rows::strings(config_rows.iter().map(|r| r.config_id)),
        rows::strings(env_strs.iter().map(String::as_str)),
        rows::constant(split.name(), n),
        rows::strings(config_rows.iter().map(|r| r.difficulty)),
        rows::float64s(config_rows.iter().map(|r| r.reference_pass_rate)),
        rows::optional_strings(config_rows.iter().map(|r| r.oracle_trajectory)),
        rows::optional_strings(config_rows.iter().map(|r| r.source_index)),
    ];
    let columns: Vec<ArrayRef> = vec![
        rows::constant(naming::DATA_SOURCE, n),
        rows::owned_strings(env_strs.iter().map(|s| naming::ability(s))),
        rows::strings(config_rows.iter().map(|r| r.env.code_id.as_str())),
        rows::prompt_column(prompts, true),
        rows::constant(rows::ANSWER, n),
        rows::reward_model_column(n),
        rows::int64s(std::iter::repeat_n(max_round, n)),
        rows::structure(extra_info_fields().into_iter().zip(extra).collect()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// The release's messages: the tool docs as they are, our instructions before the task text.
pub(crate) fn prompt(text: &EnvText<'_>) -> (String, String) {
    (text.tool_docs.to_string(), super::prompts::codegym_user(text.task_text))
}

/// One split's two files.
struct SplitFiles {
    parquet: ParquetFiles,
    jsonl: JsonWriter<BufWriter<File>, LineDelimited>,
    jsonl_path: PathBuf,
}

pub struct Writer {
    envs_dir: PathBuf,
    splits: BTreeMap<Split, SplitFiles>,
}

impl Writer {
    pub(crate) fn create(dir: &Path, plan: &Plan) -> Result<Writer, ExportError> {
        let envs_dir = dir.join("envs");
        write_gymnasium(&envs_dir)?;
        let mut splits = BTreeMap::new();
        for &split in plan.rows.keys() {
            let jsonl_path = dir.join(format!("{}.jsonl", split.name()));
            let file = File::create(&jsonl_path).map_err(|e| ExportError::io(&jsonl_path, e))?;
            let jsonl = WriterBuilder::new().with_explicit_nulls(true).build(BufWriter::new(file));
            let parquet = ParquetFiles::create(dir, split.name(), schema(), None)?;
            splits.insert(split, SplitFiles { parquet, jsonl, jsonl_path });
        }
        Ok(Writer { envs_dir, splits })
    }
}

impl FormatWriter for Writer {
    fn prompt(&self, _env: &EnvMeta, text: &EnvText<'_>) -> (String, String) {
        prompt(text)
    }

    fn environment(&mut self, env: &EnvMeta, text: &EnvText<'_>) -> Result<(), ExportError> {
        let path = self.envs_dir.join(format!("{}.py", env.file_stem()));
        std::fs::write(&path, text.env_code).map_err(|e| ExportError::io(&path, e))
    }

    fn rows(&mut self, batches: Vec<(Split, RecordBatch)>) -> Result<(), ExportError> {
        for (split, batch) in batches {
            let files = self.splits.get_mut(&split).expect("rows come only from selected splits");
            files.parquet.write(&batch)?;
            files.jsonl.write(&batch).map_err(|source| ExportError::Arrow { path: files.jsonl_path.clone(), source })?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        for (split, mut files) in self.splits {
            files.jsonl.finish().map_err(|source| ExportError::Arrow { path: files.jsonl_path.clone(), source })?;
            let mut out = files.jsonl.into_inner();
            std::io::Write::flush(&mut out).map_err(|e| ExportError::io(&files.jsonl_path, e))?;
            files.parquet.finish(|_, _| format!("{}.parquet", split.name()))?;
        }
        Ok(())
    }
}
