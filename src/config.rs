//! The build configuration (`codegym build --config FILE`, TOML): corpus, backend, model and
//! sampling, endpoint limits, samples per stage. Relative paths are relative to the file. Every
//! field has a default, and unknown fields are errors (a typo never silently does nothing). Names
//! (`preset`, `llm`) are parsed here into their types, so a bad one names the file; commands take
//! the typed value.

use crate::corpus::Preset;
use crate::llm::{BackendSpec, OpenAiSettings, RetryPolicy, Sampling};
use crate::synthesis::SynthesisSettings;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// The corpus (Parquet or JSON Lines).
    pub corpus: Option<PathBuf>,
    /// Its column layout: kodcode, codegym or generic.
    #[serde(deserialize_with = "parsed")]
    pub preset: Preset,
    /// `openai` or `replay:DIR`.
    #[serde(deserialize_with = "parsed")]
    pub llm: BackendSpec,
    /// Dataset: a directory (relative to the current directory) or an object-store URL.
    pub data: Option<String>,
    pub model: Sampling,
    pub endpoint: Endpoint,
    pub synthesis: Samples,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoint {
    /// Requests in flight at once.
    pub in_flight: usize,
    pub timeout_s: f64,
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Whether the server supports `n` > 1 in one request.
    pub n_per_request: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Samples {
    pub config_samples: u32,
    pub oracle_samples: u32,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            corpus: None,
            preset: Preset::Kodcode,
            llm: BackendSpec::OpenAi,
            data: None,
            model: Sampling::default(),
            endpoint: Endpoint::default(),
            synthesis: Samples::default(),
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Endpoint {
            in_flight: 64,
            timeout_s: 600.0,
            max_attempts: retry.max_attempts,
            initial_backoff_ms: retry.initial_backoff.as_millis() as u64,
            max_backoff_ms: retry.max_backoff.as_millis() as u64,
            n_per_request: true,
        }
    }
}

impl Default for Samples {
    fn default() -> Self {
        let defaults = SynthesisSettings::default();
        Samples { config_samples: defaults.config_samples, oracle_samples: defaults.oracle_samples }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A value spelled as text in the file, parsed with its `FromStr` (the same spelling as the flag).
fn parsed<'de, D: Deserializer<'de>, T: std::str::FromStr<Err: std::fmt::Display>>(deserializer: D) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl BuildConfig {
    /// Reads a configuration file; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<BuildConfig, ConfigError> {
        let text = crate::text_file::read(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config: BuildConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };
        if config.endpoint.in_flight == 0 || config.endpoint.max_attempts == 0 {
            return Err(invalid("endpoint.in_flight and endpoint.max_attempts must be at least 1".into()));
        }
        if !(config.endpoint.timeout_s > 0.0 && config.endpoint.timeout_s.is_finite()) {
            return Err(invalid("endpoint.timeout_s must be a positive number of seconds".into()));
        }
        if config.synthesis.config_samples == 0 || config.synthesis.oracle_samples == 0 {
            return Err(invalid("synthesis.config_samples and synthesis.oracle_samples must be at least 1".into()));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        config.corpus = config.corpus.map(|corpus| base.join(corpus));
        if let BackendSpec::Replay(dir) = &config.llm {
            config.llm = BackendSpec::Replay(base.join(dir));
        }
        Ok(config)
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.endpoint.max_attempts,
            initial_backoff: Duration::from_millis(self.endpoint.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.endpoint.max_backoff_ms),
        }
    }

    /// The endpoint settings, with base URL and key from `OPENAI_BASE_URL` / `OPENAI_API_KEY`.
    pub fn openai(&self) -> Result<OpenAiSettings, String> {
        let base_url = std::env::var("OPENAI_BASE_URL").ok().filter(|url| !url.trim().is_empty()).ok_or_else(|| {
            "--llm openai needs OPENAI_BASE_URL (e.g. http://localhost:8000/v1 for a local vLLM server)".to_string()
        })?;
        Ok(OpenAiSettings {
            base_url,
            api_key: std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()),
            in_flight: self.endpoint.in_flight,
            timeout: Duration::from_secs_f64(self.endpoint.timeout_s),
            retry: self.retry(),
            n_per_request: self.endpoint.n_per_request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_starts_with_a_byte_order_mark_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codegym.toml");
        std::fs::write(&path, "\u{feff}corpus = \"problems.parquet\"\n").unwrap();
        assert_eq!(BuildConfig::load(&path).unwrap().corpus, Some(dir.path().join("problems.parquet")));
    }

    #[test]
    fn configs_resolve_paths_against_their_file_and_refuse_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codegym.toml");
        std::fs::write(&path, "corpus = \"problems.parquet\"\nllm = \"replay:llm\"\n[model]\nmodel = \"m\"\ntemperature = 0.2\ntop_p = 1.0\nmax_tokens = 100\n[synthesis]\noracle_samples = 3\n").unwrap();
        let config = BuildConfig::load(&path).unwrap();
        assert_eq!(config.corpus, Some(dir.path().join("problems.parquet")));
        assert_eq!(config.llm, BackendSpec::Replay(dir.path().join("llm")));
        assert_eq!((config.model.model.as_str(), config.model.seed), ("m", Some(0)), "unset fields keep their defaults");
        assert_eq!((config.synthesis.config_samples, config.synthesis.oracle_samples), (2, 3));
        std::fs::write(&path, "preset = \"kodcod\"\n").unwrap();
        let error = BuildConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("unknown preset `kodcod`") && error.contains("codegym.toml"), "{error}");
        std::fs::write(&path, "[endpoint]\nin_flite = 3\n").unwrap();
        let error = BuildConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("in_flite") && error.contains("codegym.toml"), "{error}");
    }
}
