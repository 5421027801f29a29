//! Which encoder implementation runs a rung: the configured choice ([`EncoderChoice`]) and the
//! concrete backends ([`BackendKind`]) that [`crate::probe`] tries and the ladder reports.

use std::fmt;
use std::str::FromStr;

use ffmpeg_next::format::Pixel;

use crate::error::ParseEncoderChoiceError;

/// The `encoder` setting: which backends [`crate::probe`] may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EncoderChoice {
    /// NVENC when a device works, libx264 otherwise.
    #[default]
    Auto,
    /// NVENC only; probing fails when no NVENC device works.
    Nvenc,
    /// libx264 only.
    Software,
}

impl FromStr for EncoderChoice {
    type Err = ParseEncoderChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(EncoderChoice::Auto),
            "nvenc" => Ok(EncoderChoice::Nvenc),
            "software" => Ok(EncoderChoice::Software),
            other => Err(ParseEncoderChoiceError(other.to_string())),
        }
    }
}

impl fmt::Display for EncoderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncoderChoice::Auto => "auto",
            EncoderChoice::Nvenc => "nvenc",
            EncoderChoice::Software => "software",
        })
    }
}

/// One concrete H.264 encoder implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// NVENC through the NVIDIA Video Codec SDK (cargo feature `nvenc`): NV12 pictures from
    /// swscale go to an NVENC session without libavcodec. See `src/nvenc.rs`.
    NvencDirect,
    /// NVENC through libavcodec's `h264_nvenc`, which loads the NVIDIA driver at run time.
    NvencFfmpeg,
    /// libx264 through libavcodec.
    Software,
}

impl BackendKind {
    /// True for the NVENC backends, whose failures mid-stream fall back to software.
    pub fn is_hardware(self) -> bool {
        !matches!(self, BackendKind::Software)
    }

    /// The libavcodec encoder that encodes rungs for this backend (`None`: not libavcodec).
    pub(crate) fn libavcodec_encoder(self) -> Option<&'static str> {
        match self {
            BackendKind::NvencDirect => None,
            BackendKind::NvencFfmpeg => Some("h264_nvenc"),
            BackendKind::Software => Some("libx264"),
        }
    }

    /// The pixel format a rung's scaler produces for this backend: NV12 is what an NVENC
    /// session takes from host memory; libavcodec's encoders take planar 4:2:0 (libx264 also
    /// takes NV12, which a rung keeps after falling back from NVENC direct).
    pub(crate) fn input_format(self) -> Pixel {
        match self {
            BackendKind::NvencDirect => Pixel::NV12,
            BackendKind::NvencFfmpeg | BackendKind::Software => Pixel::YUV420P,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::NvencDirect => "nvenc",
            BackendKind::NvencFfmpeg => "nvenc-ffmpeg",
            BackendKind::Software => "x264",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_values() {
        assert_eq!("auto".parse(), Ok(EncoderChoice::Auto));
        assert_eq!("nvenc".parse(), Ok(EncoderChoice::Nvenc));
        assert_eq!("software".parse(), Ok(EncoderChoice::Software));
        let err = "x265".parse::<EncoderChoice>().expect_err("unknown value");
        assert_eq!(
            err.to_string(),
            "unknown encoder \"x265\": expected \"auto\", \"nvenc\" or \"software\""
        );
    }

    #[test]
    fn backend_names() {
        assert_eq!(BackendKind::NvencDirect.to_string(), "nvenc");
        assert_eq!(BackendKind::NvencFfmpeg.to_string(), "nvenc-ffmpeg");
        assert_eq!(BackendKind::Software.to_string(), "x264");
        assert!(BackendKind::NvencFfmpeg.is_hardware());
        assert!(!BackendKind::Software.is_hardware());
        assert!(BackendKind::NvencDirect.is_hardware());
        assert_eq!(BackendKind::NvencDirect.libavcodec_encoder(), None);
        assert_eq!(BackendKind::NvencDirect.input_format(), Pixel::NV12);
        assert_eq!(BackendKind::Software.input_format(), Pixel::YUV420P);
    }
}
