//! SQL over a dataset directory, with DataFusion.
//!
//! This module owns the DataFusion side of codegym: registering the table folders of a data
//! directory as Parquet listing tables ([`session`]), running the statements of `codegym sql`
//! ([`run_sql`], [`execute`]) and printing results as a text table, CSV or JSON Lines
//! ([`OutputFormat`]). It reads Parquet only through DataFusion and never writes to the dataset:
//! DML (`INSERT`, `COPY`) is refused; in-memory DDL (`CREATE VIEW`) is allowed so a script can
//! build on earlier statements. Table names and schemas come from `dataset`; argument parsing and
//! exit codes belong to the CLI.

mod output;
mod sql;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use output::write_result;
pub use sql::{QueryResult, execute, run_sql, session};

/// How `codegym sql` prints a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table with a header (`table`).
    #[default]
    Table,
    /// CSV with a header line (`csv`). Nested values (lists, structs) are written as JSON text.
    Csv,
    /// JSON Lines (`json`): one JSON object per row, one row per line, nulls written as `null`.
    Json,
}

impl OutputFormat {
    /// Every format, in the order help text lists them.
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Table, OutputFormat::Csv, OutputFormat::Json];

    /// The name users type after `--format`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an [`OutputFormat`] from a name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format `{name}`; expected one of: table, csv, json")]
pub struct UnknownFormat {
    /// The name that was given.
    pub name: String,
}

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputFormat::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownFormat { name: s.to_string() })
    }
}

/// Running SQL over a dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The dataset could not be opened or read.
    #[error(transparent)]
    Dataset(crate::dataset::DatasetError),
    /// The dataset's URL does not parse.
    #[error("cannot use `{location}`: {detail}")]
    Location {
        /// The URL.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// A table folder could not be registered with DataFusion.
    #[error("cannot open table `{table}` at `{}`: {source}", path.display())]
    Register {
        /// The table name.
        table: String,
        /// The table folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// The SQL names a table the dataset does not have.
    #[error(
        "table `{table}` does not exist; available tables: {}",
        if available.is_empty() { "none (the dataset is empty)".to_string() } else { available.join(", ") }
    )]
    UnknownTable {
        /// The table as written in the SQL.
        table: String,
        /// The tables the session has, sorted.
        available: Vec<String>,
    },
    /// The SQL text holds no statement.
    #[error("no SQL statement given (the text is empty or only comments)")]
    EmptySql,
    /// The SQL does not parse (a typo, a missing keyword).
    #[error(
        "the SQL does not parse: {message}\n  hint: fix the statement where the parser says; `SHOW TABLES` lists the tables, `SHOW COLUMNS FROM t` a table's columns"
    )]
    Syntax {
        /// The parser's words: what it expected, what it found, where.
        message: String,
    },
    /// DataFusion could not plan or run the SQL (an unknown column, a type mismatch, ...). Its
    /// innermost message is printed once, without DataFusion's prefix or a backtrace; it is not a
    /// `source`, so an error chain does not print it again.
    #[error(
        "the SQL cannot run: {}\n  hint: `SHOW TABLES` lists the tables, `SHOW COLUMNS FROM t` a table's columns; queries/*.sql are examples",
        in_words(.0)
    )]
    Sql(datafusion::error::DataFusionError),
    /// A result could not be formatted.
    #[error("cannot format the result: {0}")]
    Format(#[source] arrow::error::ArrowError),
    /// Writing the result to the output failed. The `io::Error` is the one the output returned,
    /// unchanged, so callers can treat `ErrorKind::BrokenPipe` as a normal end.
    #[error("cannot write the result: {0}")]
    Output(#[source] std::io::Error),
}

/// The innermost message of a DataFusion error, without its category prefix or a backtrace.
fn in_words(error: &datafusion::error::DataFusionError) -> String {
    let message = error.find_root().message();
    let message = message.split(datafusion::error::DataFusionError::BACK_TRACE_SEP).next().unwrap_or_default();
    message.trim_end().to_string()
}

impl From<datafusion::error::DataFusionError> for QueryError {
    /// A parser error, however deep DataFusion wrapped it, becomes [`QueryError::Syntax`] in words
    /// (DataFusion prints it in its Rust debug form).
    fn from(error: datafusion::error::DataFusionError) -> QueryError {
        use datafusion::sql::sqlparser::parser::ParserError;
        match error.find_root() {
            datafusion::error::DataFusionError::SQL(parser, _) => {
                let message = match parser.as_ref() {
                    ParserError::ParserError(message) | ParserError::TokenizerError(message) => message.clone(),
                    ParserError::RecursionLimitExceeded => "it nests too deeply".to_string(),
                };
                QueryError::Syntax { message }
            }
            _ => QueryError::Sql(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        for f in OutputFormat::ALL {
            assert_eq!(f.name().parse::<OutputFormat>().unwrap(), f);
        }
        let err = "yaml".parse::<OutputFormat>().unwrap_err().to_string();
        assert!(err.contains("`yaml`") && err.contains("table, csv, json"), "{err}");
    }
}
