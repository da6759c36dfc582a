//! Table schemas: the JSON files in `schemas/` turned into Arrow schemas, once per process.
//!
//! `schemas/<table>.json` is the single source of truth for column names, types, nullability,
//! key columns and column docs; this module embeds those files at compile time (so the binary
//! needs no data files at run time), parses and checks them on first use, and hands out
//! [`SchemaRef`]s. The writer, the reader, SQL registration and export all go through here.
//! It does no I/O and knows nothing about Parquet files.
//!
//! The embedded files are checked by a unit test, so a malformed one fails the test suite; at
//! run time it is an internal error (a panic that says it is a bug in codegym).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::Table;

/// The version of the table schemas, written into every Parquet file's key-value metadata (and
/// the Arrow schema metadata) under [`SCHEMA_VERSION_KEY`]. Bump it when a column changes type or
/// meaning, and teach `migrate` to bring the previous version's files up to it.
///
/// - 3: `runs.started_at` is a timestamp (it was RFC 3339 text).
pub const SCHEMA_VERSION: &str = "3";

/// The metadata key under which [`SCHEMA_VERSION`] is stored.
pub const SCHEMA_VERSION_KEY: &str = "codegym.schema_version";

/// The type of a column, as spelled in `schemas/*.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ColumnType {
    /// UTF-8 text (`utf8`).
    #[serde(rename = "utf8")]
    Utf8,
    /// 32-bit signed integer (`int32`).
    #[serde(rename = "int32")]
    Int32,
    /// 64-bit signed integer (`int64`).
    #[serde(rename = "int64")]
    Int64,
    /// 64-bit float (`float64`).
    #[serde(rename = "float64")]
    Float64,
    /// Boolean (`bool`).
    #[serde(rename = "bool")]
    Bool,
    /// List of UTF-8 text (`list<utf8>`); items are nullable.
    #[serde(rename = "list<utf8>")]
    ListUtf8,
    /// An instant, milliseconds since the Unix epoch, in UTC (`timestamp_ms`).
    #[serde(rename = "timestamp_ms")]
    TimestampMs,
}

impl ColumnType {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::ListUtf8 => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            ColumnType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }
}

/// One column of a table, as declared in its schema file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// One-line description of the column.
    pub doc: String,
}

/// A table's schema file, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Table name; equals [`Table::name`].
    pub table: String,
    /// The columns that identify a row: dedup key and sort order.
    pub key: Vec<String>,
    /// The columns, in file order.
    pub columns: Vec<ColumnSpec>,
}

impl TableSpec {
    /// The Arrow schema of the table, carrying the schema version in its metadata.
    fn arrow_schema(&self) -> Schema {
        let fields: Vec<Field> = self.columns.iter().map(|c| Field::new(&c.name, c.ty.data_type(), c.nullable)).collect();
        let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]);
        Schema::new_with_metadata(fields, metadata)
    }

    /// Checks the invariants the writer relies on; the error says what is wrong.
    fn check(&self, table: Table) -> Result<(), String> {
        if self.table != table.name() {
            return Err(format!("the file declares table `{}`, expected `{}`", self.table, table.name()));
        }
        if self.columns.is_empty() {
            return Err("no columns".to_string());
        }
        let mut seen = HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(format!("column `{}` is declared twice", c.name));
            }
            if c.doc.trim().is_empty() {
                return Err(format!("column `{}` has no doc", c.name));
            }
        }
        if self.key.is_empty() {
            return Err("the key is empty".to_string());
        }
        for k in &self.key {
            match self.columns.iter().find(|c| &c.name == k) {
                None => return Err(format!("key column `{k}` is not a column")),
                Some(c) if c.nullable => return Err(format!("key column `{k}` is nullable")),
                Some(c) if c.ty == ColumnType::ListUtf8 => {
                    return Err(format!("key column `{k}` is a list"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The embedded schema file of `table`.
fn schema_source(table: Table) -> &'static str {
    match table {
        Table::Problems => include_str!("../../schemas/problems.json"),
        Table::LlmCalls => include_str!("../../schemas/llm_calls.json"),
        Table::Environments => include_str!("../../schemas/environments.json"),
        Table::TaskConfigs => include_str!("../../schemas/task_configs.json"),
        Table::OracleCandidates => include_str!("../../schemas/oracle_candidates.json"),
        Table::OracleRuns => include_str!("../../schemas/oracle_runs.json"),
        Table::ToolCallStats => include_str!("../../schemas/tool_call_stats.json"),
        Table::BatteryRuns => include_str!("../../schemas/battery_runs.json"),
        Table::Rejects => include_str!("../../schemas/rejects.json"),
        Table::Runs => include_str!("../../schemas/runs.json"),
        Table::NearDuplicates => include_str!("../../schemas/near_duplicates.json"),
        Table::Splits => include_str!("../../schemas/splits.json"),
        Table::Episodes => include_str!("../../schemas/episodes.json"),
    }
}

/// Parses and checks one embedded schema file.
fn parse_spec(table: Table) -> Result<TableSpec, String> {
    let spec: TableSpec =
        serde_json::from_str(schema_source(table)).map_err(|e| format!("schemas/{}.json does not parse: {e}", table.name()))?;
    spec.check(table).map_err(|e| format!("schemas/{}.json: {e}", table.name()))?;
    Ok(spec)
}

struct Loaded {
    spec: TableSpec,
    schema: SchemaRef,
}

fn loaded(table: Table) -> &'static Loaded {
    static ALL: OnceLock<Vec<Loaded>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        Table::ALL
            .iter()
            .map(|&t| {
                let spec = parse_spec(t)
                    .unwrap_or_else(|e| panic!("{e}; the schema files are embedded at build time, this is a bug in codegym"));
                let schema = Arc::new(spec.arrow_schema());
                Loaded { spec, schema }
            })
            .collect()
    });
    let index = Table::ALL.iter().position(|&t| t == table).expect("Table::ALL lists every table");
    &all[index]
}

impl Table {
    /// The parsed schema file of the table.
    pub fn spec(self) -> &'static TableSpec {
        &loaded(self).spec
    }

    /// The Arrow schema of the table (`list<utf8>` is `List(Field("item", Utf8, nullable))`), with
    /// the schema version in its metadata.
    pub fn schema(self) -> SchemaRef {
        loaded(self).schema.clone()
    }

    /// The key columns: a row's identity, used for dedup and as the sort order of written files.
    pub fn key(self) -> &'static [String] {
        &self.spec().key
    }

    /// The columns of the table with their types and docs.
    pub fn columns(self) -> &'static [ColumnSpec] {
        &self.spec().columns
    }

    /// The table's schema restricted to `columns`, in the order given; an unknown name is an
    /// error naming it.
    pub fn projected_schema(self, columns: &[&str]) -> Result<SchemaRef, String> {
        let schema = self.schema();
        let indices = columns
            .iter()
            .map(|name| schema.index_of(name).map_err(|_| format!("table `{self}` has no column `{name}`")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(schema.project(&indices).map_err(|e| e.to_string())?))
    }

    /// The one-line doc of column `name`, or `None` if the table has no such column.
    pub fn column_doc(self, name: &str) -> Option<&'static str> {
        self.columns().iter().find(|c| c.name == name).map(|c| c.doc.as_str())
    }
}

/// Reshapes `batch` to `table`'s schema: columns are matched by name and put in schema order,
/// a column of another type is cast (failing, not nulling, on values that do not convert), a
/// missing nullable column becomes all nulls. Columns the schema does not know are an error
/// unless `allow_extra` (readers tolerate files from newer versions; writers do not silently drop
/// data). The error text names the column; callers add the table and file.
pub(crate) fn conform(table: Table, batch: &RecordBatch, allow_extra: bool) -> Result<RecordBatch, String> {
    conform_to(table, table.schema(), batch, allow_extra)
}

/// [`conform`] to `schema`, some of `table`'s columns (see [`Table::projected_schema`]).
pub(crate) fn conform_to(table: Table, schema: SchemaRef, batch: &RecordBatch, allow_extra: bool) -> Result<RecordBatch, String> {
    if batch.schema().fields() == schema.fields() {
        return RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(|e| e.to_string());
    }
    if !allow_extra {
        let extra: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| schema.field_with_name(name).is_err())
            .collect();
        if !extra.is_empty() {
            return Err(format!("column(s) {} are not in schemas/{}.json", extra.join(", "), table.name()));
        }
    }
    let options = CastOptions { safe: false, ..Default::default() };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => column.clone(),
            Some(column) => cast_with_options(column, field.data_type(), &options).map_err(|e| {
                format!(
                    "column `{}` has type {} and does not convert to {}: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )
            })?,
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => return Err(format!("required column `{}` is missing", field.name())),
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!("column `{}` is not nullable but holds {} null(s)", field.name(), column.null_count()));
        }
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses_and_keys_exist() {
        for t in Table::ALL {
            let spec = parse_spec(t).unwrap();
            let schema = t.schema();
            assert_eq!(schema.fields().len(), spec.columns.len());
            for k in t.key() {
                let field = schema.field_with_name(k).unwrap();
                assert!(!field.is_nullable(), "{t}.{k}");
            }
            assert_eq!(schema.metadata().get(SCHEMA_VERSION_KEY).map(String::as_str), Some(SCHEMA_VERSION));
        }
    }

    #[test]
    fn list_columns_use_nullable_item_field() {
        let schema = Table::Environments.schema();
        let tools = schema.field_with_name("tools").unwrap();
        assert_eq!(tools.data_type(), &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
        assert!(!tools.is_nullable());
    }

    #[test]
    fn keys_and_docs() {
        assert_eq!(Table::OracleRuns.key(), ["env_id", "candidate", "config_id"]);
        assert_eq!(Table::ToolCallStats.key(), ["config_id", "tool"]);
        assert!(Table::Problems.column_doc("preflight").unwrap().contains("no_tests"));
        assert_eq!(Table::Problems.column_doc("nope"), None);
    }

    #[test]
    fn check_rejects_bad_key() {
        let mut spec = parse_spec(Table::Rejects).unwrap();
        spec.key.push("missing".to_string());
        let err = spec.check(Table::Rejects).unwrap_err();
        assert!(err.contains("`missing`"), "{err}");
        assert!(spec.check(Table::Runs).unwrap_err().contains("expected `runs`"));
    }
}
