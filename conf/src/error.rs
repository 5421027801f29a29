//! Configuration errors: unreadable file, TOML syntax or type error, failed validation.

use std::fmt;
use std::path::{Path, PathBuf};

/// One invalid setting, named by its key path (`https.cert`) and, when the file sets it (or
/// a part of its path), the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: String,
    pub message: String,
    pub line: Option<usize>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Why a configuration could not be used. Nothing is applied when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type. The message
    /// from the TOML parser carries the line, column and key.
    #[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    /// Values that parse but cannot work together; every problem is listed.
    #[error("{}{} invalid setting(s):\n{}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(), errors.len(), list(errors))]
    Invalid {
        path: Option<PathBuf>,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfError {
    pub(crate) fn with_path(self, file: &Path) -> Self {
        match self {
            ConfError::Parse { message, .. } => ConfError::Parse {
                path: Some(file.to_path_buf()),
                message,
            },
            ConfError::Invalid { errors, .. } => ConfError::Invalid {
                path: Some(file.to_path_buf()),
                errors,
            },
            other => other,
        }
    }

    /// Adds the line of each invalid setting in `text`, the file it was read from.
    pub(crate) fn with_lines(mut self, text: &str) -> Self {
        if let ConfError::Invalid { errors, .. } = &mut self {
            for e in errors {
                e.line = crate::lines::line_of(text, &e.key);
            }
        }
        self
    }

    /// The individual invalid settings, when this is a validation error.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Collects field errors during validation.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            key: key.to_string(),
            message: message.into(),
            line: None,
        });
    }

    pub(crate) fn check(&mut self, ok: bool, key: &str, message: impl Into<String>) {
        if !ok {
            self.push(key, message);
        }
    }

    /// Signing secrets under `key`: each at least 32 characters, and at least one when
    /// `required_by` (the setting that needs them) is on.
    pub(crate) fn secrets(&mut self, key: &str, secrets: &[String], required_by: Option<&str>) {
        if let Some(setting) = required_by {
            self.check(!secrets.is_empty(), key, format!("required with {setting}"));
        }
        for (i, s) in secrets.iter().enumerate() {
            self.check(
                s.len() >= 32,
                &format!("{key}[{i}]"),
                "secrets are at least 32 characters",
            );
        }
    }

    pub(crate) fn finish(self) -> Result<(), ConfError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfError::Invalid {
                path: None,
                errors: self.0,
            })
        }
    }
}
