//! The daihuo configuration model.
//!
//! One typed tree per binary ([`EdgeConfig`], [`OriginConfig`]) built from shared sections, every
//! field with a default so that an empty file (or none at all) is a working single box. Loading
//! is two steps: serde parses the TOML (unknown keys are errors, so typos never pass silently),
//! then [`EdgeConfig::validate`] / [`OriginConfig::validate`] check what types cannot and return
//! *every* problem at once, each with its key path (`hls.part_target_ms: ...`).
//!
//! This crate holds no runtime state; reload (re-read, validate, swap) is driven by the daemons.

mod error;
mod model;
mod upstream;

pub use error::{ConfError, FieldError};
pub use model::{
    AdminConfig, CacheConfig, EdgeConfig, Encoder, HlsConfig, Http3Config, HttpConfig, HttpsConfig,
    LogConfig, LogFormat, OriginConfig, OriginHttpConfig, RungConfig, SrtConfig, TranscodeConfig,
};
pub use upstream::{OriginPeer, Standby, UpstreamConfig, UpstreamProtocol};

use std::path::Path;

/// Reads and parses a TOML file into `T` without validating it.
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text).map_err(|e| e.with_path(path))
}

fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfError> {
    toml::from_str(text).map_err(|e| ConfError::Parse {
        path: None,
        message: e.to_string(),
    })
}

impl EdgeConfig {
    /// Reads, parses and validates the edge configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let config: Self = read_toml(path)?;
        config.validate().map_err(|e| e.with_path(path))?;
        Ok(config)
    }

    /// Parses and validates configuration text (used by tests and `check`).
    pub fn from_toml(text: &str) -> Result<Self, ConfError> {
        let config: Self = parse_toml(text)?;
        config.validate()?;
        Ok(config)
    }
}

impl OriginConfig {
    /// Reads, parses and validates the origin configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let config: Self = read_toml(path)?;
        config.validate().map_err(|e| e.with_path(path))?;
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn from_toml(text: &str) -> Result<Self, ConfError> {
        let config: Self = parse_toml(text)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
