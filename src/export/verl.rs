//! The `verl` format: `{split}.parquet` in verl's RL dataset shape, `tool_config.yaml` and the tool
//! module `codegym_tool.py` it names.
//!
//! verl offers every tool of its config to every row, so the export ships one generic tool,
//! `codegym_step(name, arguments)` (`arguments`: a JSON object as a string), and puts the row's
//! own environment's tool docs in the system message, as CodeGym does. A row: `data_source`,
//! `agent_name` `tool_agent`, `prompt` (role/content messages), `ability`, `reward_model` (with a
//! null `ground_truth`), and `extra_info`: `index`, `need_tools_kwargs`, `tools_kwargs` (the
//! `create_kwargs` of `codegym_step`: the configuration `codegym serve` starts), the
//! configuration's keys and the oracle's figures. The tool module plays each call through
//! `codegym serve`'s CodeGym REST API at the tool config's `server_url`.

use super::rows::{self, ParquetFiles};
use super::settings::ExportSettings;
use super::source::{ConfigRow, EnvMeta, EnvText, Plan};
use super::{ExportError, FormatWriter};
use crate::naming;
use crate::tables::Split;
use crate::tools::{ParamType, Parameter, ToolSchema};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The name of the one tool every row is offered.
pub const STEP_TOOL: &str = "codegym_step";
/// The tool module, importable without verl (it subclasses verl's `BaseTool` when verl is there).
pub const TOOL_MODULE: &str = include_str!("codegym_tool.py");
/// The tool module's file name; `tool_config.yaml` names its class as `codegym_tool.CodegymStepTool`.
pub const TOOL_MODULE_FILE: &str = "codegym_tool.py";

/// `codegym_step`'s schema in OpenAI function form.
pub fn step_tool() -> ToolSchema {
    let parameter = |name: &str, description: &str| Parameter {
        name: name.into(),
        ty: ParamType::String,
        description: description.into(),
        required: true,
    };
    ToolSchema {
        name: STEP_TOOL.into(),
        description: "Call one tool of the environment described in the system message and get its output.".into(),
        parameters: vec![
            parameter("name", "The name of the environment's tool, as the system message lists it."),
            parameter(
                "arguments",
                "The tool's arguments as a JSON object written as a string, e.g. {\"index\": 2}; {} for a tool without arguments.",
            ),
        ],
    }
}

/// `tool_config.yaml`: verl's tool list with `codegym_step` (YAML, the schema as a JSON flow
/// mapping, which YAML reads as it is), and the tool's settings (`codegym_tool.py` says what each
/// does).
pub fn tool_config(server_url: &str) -> String {
    let schema = serde_json::json!({"type": "function", "function": step_tool()});
    format!(
        "# verl tool config written by `codegym export --format verl` (codegym {version}).\n\
         # Use it with actor_rollout_ref.rollout.multi_turn.tool_config_path=<this file>, with this\n\
         # directory on PYTHONPATH so that verl imports `codegym_tool`. The tool plays every call\n\
         # through `codegym serve --codegym-addr HOST:PORT`, at config.server_url.\n\
         tools:\n  \
           - class_name: codegym_tool.CodegymStepTool\n    \
             config:\n      \
               type: native\n      \
               server_url: {url}\n      \
               # The server's --token; when null, the variable {token_env} is read.\n      \
               token: null\n      \
               timeout_s: 60\n      \
               # The server frees the instances of a rollout this long after its trainer stops\n      \
               # renewing them (a crashed worker); the tool renews every third of it.\n      \
               lease_s: 60\n      \
               # Stop the rollout on a server failure, rather than count it in codegym_error.\n      \
               fail_on_server_error: false\n      \
               # actor_rollout_ref.rollout.multi_turn's limits of the same name: the episode is\n      \
               # released right after the last turn the rollout may take.\n      \
               max_assistant_turns: null\n      \
               max_user_turns: null\n    \
             tool_schema: {schema}\n",
        version = env!("CARGO_PKG_VERSION"),
        url = serde_json::Value::from(server_url),
        token_env = crate::env::CODEGYM_SERVE_TOKEN,
    )
}

fn create_kwargs_fields() -> Vec<Field> {
    vec![rows::utf8("env_str", false), rows::utf8("config_id", false)]
}

fn tools_kwargs_type() -> DataType {
    let create = Field::new("create_kwargs", rows::struct_type(create_kwargs_fields()), false);
    rows::struct_type(vec![Field::new(STEP_TOOL, rows::struct_type(vec![create]), false)])
}

fn extra_info_fields() -> Vec<Field> {
    vec![
        Field::new("index", DataType::Int64, false),
        Field::new("need_tools_kwargs", DataType::Boolean, false),
        Field::new("tools_kwargs", tools_kwargs_type(), false),
        rows::utf8("config_id", false),
        rows::utf8("env_str", false),
        rows::utf8("split", false),
        rows::utf8("difficulty", false),
        Field::new("solve_fc_round", DataType::Int64, false),
        Field::new("plugin_call_max_round", DataType::Int64, false),
        Field::new("reference_pass_rate", DataType::Float64, true),
    ]
}

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        rows::utf8("data_source", false),
        rows::utf8("agent_name", false),
        Field::new("prompt", rows::prompt_type(false), false),
        rows::utf8("ability", false),
        Field::new("reward_model", rows::reward_model_type(), false),
        Field::new("extra_info", rows::struct_type(extra_info_fields()), false),
    ]))
}

pub(crate) fn batch(
    config_rows: &[ConfigRow<'_>],
    prompts: &[(&str, &str)],
    split: Split,
    max_round: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = config_rows.len();
    let env_strs: Vec<String> = config_rows.iter().map(ConfigRow::env_str).collect();
    let env_str_column = rows::strings(env_strs.iter().map(String::as_str));
    let config_ids = rows::strings(config_rows.iter().map(|r| r.config_id));
    let create_kwargs =
        rows::structure(create_kwargs_fields().into_iter().zip([env_str_column.clone(), config_ids.clone()]).collect());
    let DataType::Struct(step_fields) = tools_kwargs_type() else { unreachable!("tools_kwargs is a struct") };
    let step = rows::structure(vec![(
        step_fields[0].as_ref().clone(),
        rows::structure(vec![(Field::new("create_kwargs", create_kwargs.data_type().clone(), false), create_kwargs)]),
    )]);
    let extra: Vec<ArrayRef> = vec![
        rows::int64s(config_rows.iter().map(|r| r.index as i64)),
        rows::booleans(true, n),
        step,
        config_ids,
        env_str_column,
        rows::constant(split.name(), n),
        rows::strings(config_rows.iter().map(|r| r.difficulty)),
        rows::int64s(config_rows.iter().map(|r| r.oracle_calls)),
        rows::int64s(std::iter::repeat_n(max_round, n)),
        rows::float64s(config_rows.iter().map(|r| r.reference_pass_rate)),
    ];
    let columns: Vec<ArrayRef> = vec![
        rows::constant(naming::DATA_SOURCE, n),
        rows::constant("tool_agent", n),
        rows::prompt_column(prompts, false),
        rows::owned_strings(env_strs.iter().map(|s| naming::ability(s))),
        rows::reward_model_column(n),
        rows::structure(extra_info_fields().into_iter().zip(extra).collect()),
    ];
    RecordBatch::try_new(schema(), columns)
}

pub struct Writer {
    splits: BTreeMap<Split, ParquetFiles>,
}

impl Writer {
    pub(crate) fn create(dir: &Path, settings: &ExportSettings, plan: &Plan) -> Result<Writer, ExportError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| ExportError::io(&path, e))
        };
        write("tool_config.yaml", &tool_config(&settings.server_url))?;
        write(TOOL_MODULE_FILE, TOOL_MODULE)?;
        let mut splits = BTreeMap::new();
        for &split in plan.rows.keys() {
            splits.insert(split, ParquetFiles::create(dir, split.name(), schema(), None)?);
        }
        Ok(Writer { splits })
    }
}

impl FormatWriter for Writer {
    fn prompt(&self, _env: &EnvMeta, text: &EnvText<'_>) -> (String, String) {
        (super::prompts::verl_system(text.tool_docs), super::prompts::verl_user(text.task_text))
    }

    fn environment(&mut self, _env: &EnvMeta, _text: &EnvText<'_>) -> Result<(), ExportError> {
        Ok(())
    }

    fn rows(&mut self, batches: Vec<(Split, RecordBatch)>) -> Result<(), ExportError> {
        for (split, batch) in batches {
            self.splits.get_mut(&split).expect("rows come only from selected splits").write(&batch)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        for (split, files) in self.splits {
            files.finish(|_, _| format!("{}.parquet", split.name()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_config_is_yaml_holding_the_schema_as_json() {
        let text = tool_config("http://10.0.0.1:9000");
        assert!(text.contains("server_url: \"http://10.0.0.1:9000\"\n"), "{text}");
        let schema_line = text.lines().find_map(|l| l.trim().strip_prefix("tool_schema: ")).unwrap();
        let schema: serde_json::Value = serde_json::from_str(schema_line).unwrap();
        assert_eq!(schema["function"]["name"], STEP_TOOL);
        assert_eq!(schema["function"]["parameters"]["required"], serde_json::json!(["name", "arguments"]));
    }
}
