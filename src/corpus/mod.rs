//! The corpus stage: coding problems in (Parquet or JSON Lines, KodCode / CodeGym / any columns),
//! `problems` and `rejects` out ([`ingest`]), then each problem's reference solution run against its
//! own tests in the sandbox ([`preflight`]), so no LLM money is spent on a broken solution.

pub mod ingest;
pub mod preflight;

pub use ingest::{Field, IngestError, IngestSettings, IngestSummary, PREFLIGHT_PENDING, Preset, ingest};
pub use preflight::{PreflightSummary, preflight};
