//! What both daemons change while running, on reload: the SRT checks for new publishers
//! (passphrase, stream limit), the ladder for new streams, the served certificate (re-read
//! from disk on every reload) and the log level. Everything fallible is prepared first, so a
//! reload that fails changes nothing; live streams and connections are never touched.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use conf::{SrtConfig, TranscodeConfig};

use crate::transcode::{self, TranscodeSettings};
use daemon::cli::{LogControl, ReloadError};
use daemon::tls::{Certificates, Identity};

/// The parts of a configuration [`Live`] applies.
pub struct Settings<'a> {
    pub srt: &'a SrtConfig,
    /// `None` where nothing is packaged here (an edge with remote origins).
    pub transcode: Option<&'a TranscodeConfig>,
    /// The PEM files served, when configured (else a self-signed certificate stays).
    pub certificate: Option<(&'a Path, &'a Path)>,
    pub log_level: &'a str,
}

/// Handles on what can change while running.
pub struct Live {
    pub srt: Arc<ArcSwap<SrtConfig>>,
    pub transcode: Option<Arc<ArcSwap<TranscodeSettings>>>,
    pub certificates: Arc<Certificates>,
}

impl Live {
    /// Applies `next` over `current`; on error nothing changed.
    pub async fn apply(
        &self,
        current: &Settings<'_>,
        next: &Settings<'_>,
        log: &LogControl,
    ) -> Result<(), ReloadError> {
        // Prepare: probe a changed ladder (it opens real encoders), read the certificate, parse
        // the log filter.
        let ladder = match (&self.transcode, next.transcode) {
            (Some(_), Some(config)) if current.transcode != Some(config) => {
                let config = config.clone();
                let probed = tokio::task::spawn_blocking(move || transcode::probe(&config))
                    .await
                    .map_err(|e| ReloadError::Setting {
                        key: "transcode",
                        reason: format!("probe: {e}"),
                    })?
                    .map_err(|e| ReloadError::Setting {
                        key: "transcode",
                        reason: e.to_string(),
                    })?;
                Some(probed)
            }
            _ => None,
        };
        let certificate = match next.certificate {
            Some((cert, key)) => Some(Identity::load(cert, key).and_then(|id| id.certified())?),
            None => None,
        };
        let level = log.prepare(next.log_level)?;
        // Apply.
        if let (Some(slot), Some(ladder)) = (&self.transcode, ladder) {
            slot.store(Arc::new(ladder));
        }
        if let Some(certificate) = certificate {
            self.certificates.store(certificate);
        }
        self.srt.store(Arc::new(next.srt.clone()));
        log.apply(level);
        Ok(())
    }
}
