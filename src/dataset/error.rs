//! The error type of the `dataset` module. Every variant names the file or table it concerns, so
//! the message alone tells the user where to look.

use std::path::PathBuf;

/// Reading or writing a dataset table failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file-system operation failed (create, rename, read a directory, ...).
    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding or decoding failed: a corrupt or non-Parquet file, or a write failure.
    #[error("Parquet error in `{}`: {source} (is it a Parquet file written completely?)", path.display())]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Rows could not be turned into the table's Arrow columns, usually because a row field's
    /// type does not match the column type in `schemas/<table>.json`, or a non-nullable column
    /// was missing or null.
    #[error("cannot build rows of table `{table}` (check the row fields against schemas/{table}.json): {source}")]
    Arrow {
        /// The table name.
        table: String,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A table's schema is invalid, or data does not fit it.
    #[error("schema error in table `{table}`: {detail}")]
    Schema {
        /// The table name.
        table: String,
        /// What is wrong.
        detail: String,
    },
    /// `--data` does not name a usable location (an unknown URL scheme, a bad shard count).
    #[error("cannot use `{location}` as a dataset: {detail}")]
    Location {
        /// The location as given.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing is stored at the location.
    #[error(
        "no dataset at `{location}`\n  hint: run `codegym build`, `codegym ingest` or `codegym import-codegym` to create one"
    )]
    NoDataset {
        /// The location as given.
        location: String,
    },
    /// An object store refused or failed an operation.
    #[error("object store error on `{}`: {source}", path.display())]
    Remote {
        /// The object's URL.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// This process leased the shard, and the lease ran out or another process took it over: it
    /// stopped before writing the shard again.
    #[error(
        "lost the lease on shard {shard} of `{location}`{}; stopped without writing it\n  hint: another process took the shard over after this one's lease ran out unrenewed; run the command again to finish",
        holder.as_ref().map(|h| format!(" (now held by {h})")).unwrap_or_default()
    )]
    LeaseLost {
        /// The dataset.
        location: String,
        /// The shard.
        shard: u32,
        /// Who holds it now, if anyone.
        holder: Option<String>,
    },
    /// Parquet rows could not be converted to the requested row type.
    #[error("cannot decode rows of `{}`: {detail}", path.display())]
    Decode {
        /// The Parquet file the rows came from.
        path: PathBuf,
        /// What did not fit.
        detail: String,
    },
}

impl DatasetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io { path: path.into(), source }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        DatasetError::Parquet { path: path.into(), source }
    }

    pub(crate) fn arrow(table: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        DatasetError::Arrow { table: table.into(), source }
    }

    pub(crate) fn schema(table: impl Into<String>, detail: impl Into<String>) -> Self {
        DatasetError::Schema { table: table.into(), detail: detail.into() }
    }

    pub(crate) fn decode(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DatasetError::Decode { path: path.into(), detail: detail.into() }
    }
}
