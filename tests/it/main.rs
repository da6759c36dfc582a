//! Integration tests: one binary, one module per area. Tests run the real `codegym` binary on real
//! files; tests that need `../shared/fixtures` say so and skip where it is absent.

mod adversarial;
mod build;
mod candidates;
mod cli;
mod codegym_release;
mod corpus;
mod export;
mod harness;
mod isolation;
mod llm_endpoint;
mod object_stores;
mod sandbox;
mod scale;
mod serve;
mod sql;
mod trl;
mod util;
mod verl;
