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
mod events;
mod lines;
mod model;
mod restart;
mod upstream;

pub use error::{ConfError, FieldError};
pub use events::{EventsConfig, KafkaSecurity, Sink};
pub use model::{
    AdminConfig, CacheConfig, EdgeConfig, Encoder, HlsConfig, Http3Config, HttpConfig, HttpsConfig,
    LogConfig, LogFormat, OriginConfig, OriginHttpConfig, RungConfig, ScaleConfig, SrtConfig,
    TranscodeConfig,
};
pub use model::{ClientsConfig, LimitsConfig, PlaybackConfig, PublishAuth};
pub use restart::RestartKeys;
pub use upstream::{OriginPeer, Standby, UpstreamConfig, UpstreamProtocol};

use std::path::Path;

/// Reads a configuration file.
fn read(path: &Path) -> Result<String, ConfError> {
    std::fs::read_to_string(path).map_err(|source| ConfError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfError> {
    toml::from_str(text).map_err(|e| ConfError::Parse {
        path: None,
        message: e.to_string(),
    })
}

/// Whether `name` is a valid room or rendition name: 1 to 64 of A-Z a-z 0-9 _ - (the one
/// pattern for names everywhere; `origin::streamid::valid_name` is this).
pub fn valid_room(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A publish hook's URL split into its `host:port` (port 80 when absent) and its path with
/// query (`/` when absent). Only `http://`: the hook is a service on the operator's own
/// network, and TLS to it would be one more certificate to manage on every box.
pub fn hook_url(url: &str) -> Result<(String, String), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must be an http:// URL")?;
    if rest
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err("must not contain spaces, control characters or a fragment");
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("needs a host (and no user:password@)");
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority.ends_with(']') && i > authority.rfind(']').unwrap_or(0),
        None => false,
    };
    let authority = if has_port {
        let port = &authority[authority.rfind(':').unwrap_or(0) + 1..];
        port.parse::<u16>().map_err(|_| "has an invalid port")?;
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((authority, path))
}

/// What the daemons need of their configuration, whichever it is.
pub trait DaemonConfig:
    Default + Clone + std::fmt::Debug + Send + Sync + RestartKeys + 'static
{
    /// Reads, parses and validates the file; every problem is reported with its key path.
    fn load(path: &Path) -> Result<Self, ConfError>;
    /// Logging settings.
    fn log(&self) -> &LogConfig;
    /// How long a drain may take before what is left is cut (ms).
    fn shutdown_grace(&self) -> std::time::Duration;
    /// How long readiness reads false before a drain starts (the lame-duck period).
    fn drain_delay(&self) -> std::time::Duration;

    /// Scale hint thresholds.
    fn scale(&self) -> &ScaleConfig;

    /// A short digest of the whole configuration (exported as
    /// `daihuo_config_info{fingerprint}` so operators see which version runs). Stable within
    /// one build, not across builds.
    fn fingerprint(&self) -> String
    where
        Self: std::fmt::Debug,
    {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{self:?}").hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

macro_rules! daemon_config {
    ($t:ty) => {
        impl $t {
            /// Parses and validates configuration text; every invalid setting is reported
            /// with its key path and line.
            pub fn from_toml(text: &str) -> Result<Self, ConfError> {
                let config: Self = parse_toml(text)?;
                config.validate().map_err(|e| e.with_lines(text))?;
                Ok(config)
            }

            /// Reads, parses and validates the configuration file.
            pub fn load(path: &Path) -> Result<Self, ConfError> {
                let text = read(path)?;
                <$t>::from_toml(&text).map_err(|e| e.with_path(path))
            }
        }

        impl DaemonConfig for $t {
            fn load(path: &Path) -> Result<Self, ConfError> {
                <$t>::load(path)
            }

            fn log(&self) -> &LogConfig {
                &self.log
            }

            fn scale(&self) -> &ScaleConfig {
                &self.scale
            }

            fn shutdown_grace(&self) -> std::time::Duration {
                std::time::Duration::from_millis(self.shutdown_grace_ms)
            }

            fn drain_delay(&self) -> std::time::Duration {
                std::time::Duration::from_millis(self.drain_delay_ms)
            }
        }
    };
}

daemon_config!(EdgeConfig);
daemon_config!(OriginConfig);

#[cfg(test)]
mod tests;
