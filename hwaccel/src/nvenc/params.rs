//! What an NVENC-direct session is opened with, derived from a rung's [`EncoderSettings`]
//! without touching the SDK: plain numbers and enums that `config` (feature `nvenc`) copies
//! into the SDK's structs, so the mapping is tested on machines without a GPU or the feature.

use crate::encode::{nvenc_preset_number, EncoderSettings};

/// H.264 profile of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum H264Profile {
    /// CAVLC, no 8x8 transform.
    Baseline,
    Main,
    High,
}

/// Rate control of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateControl {
    /// Variable bitrate around the average, capped by the peak through the VBV.
    Vbr,
    /// Constant bitrate (the rung's peak equals its average).
    Cbr,
}

/// NVENC session parameters of one rung.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NvencParams {
    /// Picture size in pixels.
    pub width: u32,
    pub height: u32,
    /// NVENC preset P1 (fastest) ..= P7 (slowest), used with low-latency tuning.
    pub preset: u8,
    pub profile: H264Profile,
    pub rate_control: RateControl,
    /// Bit/s.
    pub average_bitrate: u32,
    pub max_bitrate: u32,
    /// Bits: one second at the peak rate, as for libavcodec's `bufsize`.
    pub vbv_buffer_size: u32,
    /// Bits: the decoder starts with a full buffer.
    pub vbv_initial_delay: u32,
    /// Frames per second as (numerator, denominator), for rate control.
    pub frame_rate: (u32, u32),
}

/// Frame rate used when the source's is unusable (zero or negative terms).
const FALLBACK_FRAME_RATE: (u32, u32) = (30, 1);

impl NvencParams {
    /// The session parameters for `settings`; an error names what NVENC cannot take.
    pub(crate) fn from_settings(settings: &EncoderSettings) -> Result<Self, String> {
        let profile = match settings.profile.as_str() {
            "baseline" => H264Profile::Baseline,
            "main" => H264Profile::Main,
            "high" => H264Profile::High,
            other => return Err(format!("nvenc: unsupported h.264 profile {other:?}")),
        };
        if settings.width == 0 || settings.height == 0 || settings.width % 2 != 0 {
            return Err(format!(
                "nvenc: unusable picture size {}x{}",
                settings.width, settings.height
            ));
        }
        if settings.bitrate == 0 || settings.max_bitrate < settings.bitrate {
            return Err(format!(
                "nvenc: unusable bitrates {} / {}",
                settings.bitrate, settings.max_bitrate
            ));
        }
        let rate_control = if settings.max_bitrate == settings.bitrate {
            RateControl::Cbr
        } else {
            RateControl::Vbr
        };
        let frame_rate = match settings.frame_rate {
            (n, d) if n > 0 && d > 0 => (n.unsigned_abs(), d.unsigned_abs()),
            _ => FALLBACK_FRAME_RATE,
        };
        Ok(NvencParams {
            width: settings.width,
            height: settings.height,
            preset: nvenc_preset_number(&settings.preset),
            profile,
            rate_control,
            average_bitrate: settings.bitrate,
            max_bitrate: settings.max_bitrate,
            vbv_buffer_size: settings.max_bitrate,
            vbv_initial_delay: settings.max_bitrate,
            frame_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use ffmpeg_next::format::Pixel;

    use super::*;

    fn settings() -> EncoderSettings {
        EncoderSettings {
            width: 1280,
            height: 720,
            format: Pixel::NV12,
            bitrate: 2_500_000,
            max_bitrate: 3_000_000,
            profile: "high".into(),
            preset: "veryfast".into(),
            threads: 0,
            frame_rate: (30_000, 1001),
        }
    }

    #[test]
    fn default_rung_maps_to_vbr_high_p2() {
        let p = NvencParams::from_settings(&settings()).expect("valid");
        assert_eq!(
            p,
            NvencParams {
                width: 1280,
                height: 720,
                preset: 2,
                profile: H264Profile::High,
                rate_control: RateControl::Vbr,
                average_bitrate: 2_500_000,
                max_bitrate: 3_000_000,
                vbv_buffer_size: 3_000_000,
                vbv_initial_delay: 3_000_000,
                frame_rate: (30_000, 1001),
            }
        );
    }

    #[test]
    fn equal_peak_is_cbr_and_profiles_map() {
        let mut s = settings();
        s.max_bitrate = s.bitrate;
        s.profile = "baseline".into();
        s.preset = "medium".into();
        let p = NvencParams::from_settings(&s).expect("valid");
        assert_eq!(p.rate_control, RateControl::Cbr);
        assert_eq!(p.profile, H264Profile::Baseline);
        assert_eq!(p.preset, 5);
        s.profile = "main".into();
        let p = NvencParams::from_settings(&s).expect("valid");
        assert_eq!(p.profile, H264Profile::Main);
    }

    #[test]
    fn unusable_settings_are_errors() {
        let mut s = settings();
        s.profile = "high10".into();
        assert!(NvencParams::from_settings(&s).is_err());
        let mut s = settings();
        s.max_bitrate = 1;
        assert!(NvencParams::from_settings(&s).is_err());
        let mut s = settings();
        s.frame_rate = (0, 1);
        let p = NvencParams::from_settings(&s).expect("frame rate falls back");
        assert_eq!(p.frame_rate, (30, 1));
    }
}
