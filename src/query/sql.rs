//! The DataFusion session over a data directory, and statement execution.
//!
//! Owns which tables a session sees (every codegym table whose folder exists under the data
//! directory, as a listing table over its `*.parquet` files), how a SQL text with several
//! statements runs (in order, each on the state the previous ones left; the last one's result is
//! the answer), and the "unknown table" diagnosis. Printing is `output`'s job.
//!
//! Tables are registered with the schema from `schemas/` rather than one inferred from the
//! files: an empty folder (a table being written for the first time) still registers, and a file
//! written by an older schema version is read through DataFusion's schema adapter (missing
//! nullable columns read as null) instead of failing the whole table. Files whose name starts
//! with a dot do not end in `.parquet` here (the writer's temporary is `.part-*.parquet.tmp`), so
//! the extension filter alone keeps half-written files out.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::output::write_result;
use super::{OutputFormat, QueryError};
use crate::dataset::{Dataset, Table};

/// The rows a statement produced, with their schema (known even when there are no rows).
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

/// A DataFusion session with every table of `data` registered under its name: tables with files
/// as Parquet listing tables over their folder (local, or on the dataset's object store), tables
/// no stage has written yet as empty tables of their schema (so named queries run on any
/// dataset). Queries run on `threads` partitions at most.
pub async fn session(data: &Dataset, threads: usize) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new().with_information_schema(true).with_target_partitions(threads.max(1));
    let ctx = SessionContext::new_with_config(config);
    let root = match data.object_store() {
        Some((store, url)) => {
            let parsed =
                url::Url::parse(url).map_err(|e| QueryError::Location { location: url.to_string(), detail: e.to_string() })?;
            ctx.register_object_store(&parsed, store);
            url.to_string()
        }
        None => {
            let path = std::path::Path::new(data.location());
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
        }
    };
    for table in Table::ALL {
        let url = format!("{root}/{}/", table.name());
        let register = |source| QueryError::Register { table: table.name().to_string(), path: url.clone().into(), source };
        if !data.shards_with(table).map_err(QueryError::Dataset)?.is_empty() {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            ctx.register_listing_table(table.name(), &url, options, Some(table.schema()), None).await.map_err(register)?;
        } else {
            let empty = MemTable::try_new(table.schema(), vec![vec![]]).map_err(register)?;
            ctx.register_table(table.name(), Arc::new(empty)).map_err(register)?;
        }
    }
    Ok(ctx)
}

/// Runs every `;`-separated statement of `sql` in `ctx`, in order, and returns the result of the
/// last one. DML (`INSERT`, `COPY ... TO`) is refused so the dataset is never modified.
pub async fn execute(ctx: &SessionContext, sql: &str) -> Result<QueryResult, QueryError> {
    let statements = DFParserBuilder::new(sql).with_dialect(&GenericDialect {}).build()?.parse_statements()?;
    if statements.is_empty() {
        return Err(QueryError::EmptySql);
    }
    let options = SQLOptions::new().with_allow_dml(false);
    let mut last = None;
    for statement in statements {
        let state = ctx.state();
        let plan = match state.statement_to_plan(statement.clone()).await {
            Ok(plan) => plan,
            Err(e) => return Err(diagnose(ctx, &statement, e)),
        };
        options.verify_plan(&plan)?;
        let frame = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        last = Some(QueryResult { schema, batches });
    }
    Ok(last.expect("at least one statement ran"))
}

/// Runs `sql` over the dataset `data` on `threads` partitions (see [`execute`]) and writes the last
/// statement's result to `out` in `format`. Returns the number of rows written. An error writing
/// to `out` is returned as [`QueryError::Output`] with the writer's own `io::Error`.
pub async fn run_sql(
    data: &Dataset,
    sql: &str,
    format: OutputFormat,
    threads: usize,
    out: &mut dyn Write,
) -> Result<u64, QueryError> {
    let ctx = session(data, threads).await?;
    let result = execute(&ctx, sql).await?;
    write_result(&result.schema, &result.batches, format, out)
}

/// Turns a planning error caused by a table the session lacks into [`QueryError::UnknownTable`];
/// any other error is returned as is.
fn diagnose(ctx: &SessionContext, statement: &Statement, error: DataFusionError) -> QueryError {
    let missing = ctx
        .state()
        .resolve_table_references(statement)
        .unwrap_or_default()
        .into_iter()
        .find(|r| !ctx.table_exist(r.clone()).unwrap_or(true));
    let Some(missing) = missing else {
        return error.into();
    };
    let mut available = table_names(ctx);
    available.sort();
    QueryError::UnknownTable { table: missing.to_string(), available }
}

/// The tables of the session's default schema.
fn table_names(ctx: &SessionContext) -> Vec<String> {
    let state = ctx.state();
    let catalog_options = &state.config().options().catalog;
    ctx.catalog(&catalog_options.default_catalog)
        .and_then(|c| c.schema(&catalog_options.default_schema))
        .map(|s| s.table_names())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Env {
        env_id: String,
        source: String,
        source_id: String,
        env_name: String,
        env_code: String,
        tool_count: i32,
        tools: Vec<String>,
        tool_docs: String,
        status: String,
    }

    #[derive(Serialize)]
    struct Config {
        config_id: String,
        env_id: String,
        env_name: String,
        config: String,
        difficulty: String,
        oracle_calls: Option<i32>,
        kept: bool,
    }

    fn env(id: &str, status: &str) -> Env {
        Env {
            env_id: id.into(),
            source: "synth".into(),
            source_id: format!("s-{id}"),
            env_name: format!("Env{id}"),
            env_code: "class E: pass".into(),
            tool_count: 2,
            tools: vec!["add".into(), "done".into()],
            tool_docs: "docs".into(),
            status: status.into(),
        }
    }

    fn config(id: &str, env: &str, difficulty: &str, calls: i32, kept: bool) -> Config {
        Config {
            config_id: id.into(),
            env_id: env.into(),
            env_name: format!("Env{env}"),
            config: format!("Env{env}@{{}}"),
            difficulty: difficulty.into(),
            oracle_calls: Some(calls),
            kept,
        }
    }

    /// A dataset with rows in environments and task_configs and every other table empty.
    fn dataset() -> (tempfile::TempDir, Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(4)).unwrap();
        data.write_shard(Table::Environments, 0, &[env("a", "verified"), env("b", "verified")]).unwrap();
        data.write_shard(Table::Environments, 3, &[env("c", "oracle")]).unwrap();
        data.write_shard(
            Table::TaskConfigs,
            1,
            &[
                config("c1", "a", "easy", 3, true),
                config("c2", "a", "hard", 9, true),
                config("c3", "b", "easy", 5, true),
                config("c4", "c", "easy", 1, false),
            ],
        )
        .unwrap();
        (dir, data)
    }

    async fn run(data: &Dataset, sql: &str, format: OutputFormat) -> Result<String, QueryError> {
        let mut out = Vec::new();
        run_sql(data, sql, format, 2, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn count_star() {
        let (_dir, data) = dataset();
        let text = run(&data, "SELECT count(*) AS n FROM environments", OutputFormat::Csv).await.unwrap();
        assert_eq!(text, "n\n3\n");
        let text = run(&data, "SELECT count(*) AS n FROM rejects", OutputFormat::Csv).await.unwrap();
        assert_eq!(text, "n\n0\n");
    }

    #[tokio::test]
    async fn join_environments_and_configs() {
        let (_dir, data) = dataset();
        let sql = "SELECT e.env_id, count(*) AS configs, sum(t.oracle_calls) AS calls \
                   FROM environments e JOIN task_configs t ON t.env_id = e.env_id \
                   WHERE e.status = 'verified' GROUP BY e.env_id ORDER BY e.env_id";
        let text = run(&data, sql, OutputFormat::Csv).await.unwrap();
        assert_eq!(text, "env_id,configs,calls\na,2,12\nb,1,5\n");
        let table = run(&data, sql, OutputFormat::Table).await.unwrap();
        assert!(table.contains("| env_id | configs | calls |"), "{table}");
    }

    #[tokio::test]
    async fn json_lines_and_csv_lists() {
        let (_dir, data) = dataset();
        let sql = "SELECT env_id, tools, problem_id FROM environments ORDER BY env_id LIMIT 2";
        let json = run(&data, sql, OutputFormat::Json).await.unwrap();
        let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], serde_json::json!({"env_id": "a", "tools": ["add", "done"], "problem_id": null}));
        let csv = run(&data, sql, OutputFormat::Csv).await.unwrap();
        assert_eq!(csv.lines().next(), Some("env_id,tools,problem_id"));
        assert_eq!(csv.lines().nth(1), Some("a,\"[\"\"add\"\",\"\"done\"\"]\","));
    }

    #[tokio::test]
    async fn several_statements_print_the_last() {
        let (_dir, data) = dataset();
        let sql = "CREATE VIEW kept AS SELECT * FROM task_configs WHERE kept; \
                   SELECT count(*) AS n FROM kept;";
        assert_eq!(run(&data, sql, OutputFormat::Csv).await.unwrap(), "n\n3\n");
    }

    #[tokio::test]
    async fn unknown_table_lists_available() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().to_str().unwrap(), Some(2)).unwrap();
        data.write_shard(Table::Environments, 0, &[env("a", "verified")]).unwrap();
        let err = run(&data, "SELECT * FROM envs", OutputFormat::Table).await.unwrap_err();
        assert!(matches!(err, QueryError::UnknownTable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("`envs` does not exist"), "{msg}");
        assert!(msg.contains("available tables: battery_runs, environments"), "{msg}");
        // A codegym table that no stage has written yet is empty, not missing.
        assert_eq!(run(&data, "SELECT count(*) AS n FROM rejects", OutputFormat::Csv).await.unwrap(), "n\n0\n");
        // A bad column is not an unknown-table error.
        let err = run(&data, "SELECT nope FROM environments", OutputFormat::Table).await.unwrap_err();
        assert!(matches!(err, QueryError::Sql(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_typo_is_a_syntax_error_in_words() {
        let (_dir, data) = dataset();
        let err = run(&data, "SELEC count(*) FROM environments", OutputFormat::Table).await.unwrap_err();
        let QueryError::Syntax { message } = &err else { panic!("{err:?}") };
        assert!(message.starts_with("Expected: an SQL statement, found: SELEC"), "{message}");
        let text = err.to_string();
        assert!(!text.contains("ParserError(") && !text.contains("sql parser error"), "{text}");
        assert!(text.contains("hint: "), "{text}");
        let err = run(&data, "SELECT count(* FROM environments", OutputFormat::Table).await.unwrap_err();
        assert!(matches!(err, QueryError::Syntax { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_zero_row_file_beside_rows_adds_nothing() {
        let (dir, data) = dataset();
        let folder = dir.path().join(Table::Environments.name());
        let fresh = tempfile::tempdir().unwrap();
        Dataset::open(fresh.path().to_str().unwrap(), Some(4)).unwrap();
        let empty = crate::dataset::EMPTY_PART;
        fs::copy(fresh.path().join(Table::Environments.name()).join(empty), folder.join(empty)).unwrap();
        let text = run(&data, "SELECT count(*) AS n FROM environments", OutputFormat::Csv).await.unwrap();
        assert_eq!(text, "n\n3\n");
    }

    #[tokio::test]
    async fn dml_is_refused_and_empty_sql_is_an_error() {
        let (_dir, data) = dataset();
        let err = run(&data, "INSERT INTO rejects VALUES ('s', 'e', NULL, 'r', NULL)", OutputFormat::Table).await.unwrap_err();
        assert!(matches!(err, QueryError::Sql(_)), "{err:?}");
        let err = run(&data, "  -- nothing\n", OutputFormat::Table).await.unwrap_err();
        assert!(matches!(err, QueryError::EmptySql), "{err:?}");
    }

    #[tokio::test]
    async fn leftover_tmp_file_is_not_read() {
        let (dir, data) = dataset();
        let table_dir = dir.path().join(Table::Environments.name());
        fs::write(table_dir.join(".part-0000.parquet.7.tmp"), b"torn").unwrap();
        let text = run(&data, "SELECT count(*) AS n FROM environments", OutputFormat::Csv).await.unwrap();
        assert_eq!(text, "n\n3\n");
    }

    /// Every named query under `queries/` plans and runs against a dataset of all tables.
    #[tokio::test]
    async fn named_queries_run() {
        let (_dir, data) = dataset();
        let queries = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let mut files: Vec<_> = fs::read_dir(&queries)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{files:?}");
        for file in files {
            let sql = fs::read_to_string(&file).unwrap();
            assert!(sql.starts_with("-- "), "{} must start with a `--` comment", file.display());
            let ctx = session(&data, 2).await.unwrap();
            let result = execute(&ctx, &sql).await.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(!result.schema.fields().is_empty(), "{}", file.display());
        }
    }
}
