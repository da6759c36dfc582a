//! codegym turns coding-problem corpora into verified, interactive tool-use environments for
//! training LLM agents with reinforcement learning (the CodeGym method), and verifies released
//! CodeGym datasets the same way.
//!
//! # Data flow
//! ```text
//!   corpus (Parquet)        released CodeGym data (envs + tasks)
//!        |                              |
//!     [ingest]                   [import_codegym]
//!        v                              v
//!   problems --[synthesis]-->  environments + task_configs + oracle_candidates
//!        (LLM stages via `llm`: live endpoint or recording)
//!                                       |
//!                                   [verify]  --- sandbox (wasmtime + CPython/WASI) via harness
//!                                       v
//!        environments, task_configs, oracle_runs, tool_call_stats, rejects   (Parquet, `dataset`)
//!                                       |
//!                     [query] SQL (DataFusion)     [export] training shards
//!                                                  (codegym release shape, verl, Hugging Face)
//!                                       |
//!                               [serve] OpenEnv + CodeGym REST rollout server --- sandbox sessions
//! ```
//! A stage reads tables and writes tables; it never reaches into another stage's insides.
//!
//! # Modules
//! - [`runtime`]: provisions the CPython WASI runtime (pip, pinned hash, cache).
//! - [`sandbox`]: runs untrusted Python jobs in wasmtime with time, memory and output limits.
//! - [`harness`]: the environment contract as sandbox jobs (reference answers, oracle runs, tools).
//! - [`corpus`]: corpus -> `problems` (+ `rejects`), and preflight of reference solutions.
//! - [`llm`]: chat requests, their ids, the OpenAI-compatible and replay backends, recording.
//! - [`synthesis`]: the LLM stages (environments, configurations, oracle candidates) and their prompts.
//! - [`config`]: the build configuration file.
//! - [`import_codegym`]: released CodeGym tables -> `environments` + `task_configs` (+ `rejects`).
//! - [`verify`]: reference answers, oracle runs and curation filters over `environments`.
//! - [`tables`]: typed rows of each table; [`reasons`]: every reject reason and environment status.
//! - [`near_duplicates`]: near-duplicate environments across problems, and the train/validation split.
//! - [`finalize`]: the steps that need every shard (near-duplicate groups, the split), after the
//!   shard-wise stages.
//! - [`dataset`]: the sharded layout (local or on an object store), leases, table schemas (from
//!   `schemas/`) and crash-safe Parquet reading and writing.
//! - [`query`]: SQL over a dataset directory.
//! - [`export`]: the kept configurations as training shards (`codegym`, `verl`, `hf`), streaming.
//! - [`tools`]: tool docs -> JSON Schema per tool (OpenAI function form), stored by verification.
//! - [`serve`]: the verified environments as a rollout server (OpenEnv, the CodeGym REST API).
//! - [`text_file`]: text files users hand us, read without a byte order mark.
//! - [`naming`]: an environment's `code_id` and long name, as exports and the server spell them.
//! - [`runs`]: the `runs` table (one row per command that changed a dataset).
//! - [`bench`]: benchmarks side by side with a baseline (verification, ingest, stages, the LLM client).
//! - [`cli`]: argument parsing and the commands (the binary's only module).

pub mod bench;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod dataset;
pub mod env;
pub mod export;
pub mod finalize;
pub mod harness;
pub mod ids;
pub mod import_codegym;
pub mod llm;
pub mod naming;
pub mod near_duplicates;
pub mod query;
pub mod reasons;
pub mod report;
pub mod runs;
pub mod runtime;
pub mod sandbox;
pub mod serve;
pub mod synthesis;
pub mod tables;
pub mod text_file;
pub mod tools;
pub mod verify;
