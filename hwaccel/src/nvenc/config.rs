//! [`NvencParams`] onto the SDK's structs: preset and profile GUIDs, and the changes made to
//! the preset's `NV_ENC_CONFIG` (NVIDIA's recommended flow: fetch the preset configuration for
//! the preset and tuning, then adjust it). Compiled with feature `nvenc`; its tests link the
//! SDK, so they run only where `libnvidia-encode` can be linked.

use nvidia_video_codec_sdk::sys::nvEncodeAPI::{
    GUID, NVENC_INFINITE_GOPLENGTH, NV_ENC_CONFIG, NV_ENC_H264_ENTROPY_CODING_MODE,
    NV_ENC_H264_PROFILE_BASELINE_GUID, NV_ENC_H264_PROFILE_HIGH_GUID,
    NV_ENC_H264_PROFILE_MAIN_GUID, NV_ENC_LEVEL, NV_ENC_PARAMS_RC_MODE, NV_ENC_PRESET_P1_GUID,
    NV_ENC_PRESET_P2_GUID, NV_ENC_PRESET_P3_GUID, NV_ENC_PRESET_P4_GUID, NV_ENC_PRESET_P5_GUID,
    NV_ENC_PRESET_P6_GUID, NV_ENC_PRESET_P7_GUID, NV_ENC_TUNING_INFO,
};

use super::params::{H264Profile, NvencParams, RateControl};
use crate::ffi;

/// Low latency, as libavcodec's `h264_nvenc` is run with (`tune=ll`).
pub(crate) const TUNING: NV_ENC_TUNING_INFO = NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_LOW_LATENCY;

/// The preset GUID for P1..=P7 (out-of-range numbers clamp).
pub(crate) fn preset_guid(preset: u8) -> GUID {
    match preset {
        0 | 1 => NV_ENC_PRESET_P1_GUID,
        2 => NV_ENC_PRESET_P2_GUID,
        3 => NV_ENC_PRESET_P3_GUID,
        4 => NV_ENC_PRESET_P4_GUID,
        5 => NV_ENC_PRESET_P5_GUID,
        6 => NV_ENC_PRESET_P6_GUID,
        _ => NV_ENC_PRESET_P7_GUID,
    }
}

pub(crate) fn profile_guid(profile: H264Profile) -> GUID {
    match profile {
        H264Profile::Baseline => NV_ENC_H264_PROFILE_BASELINE_GUID,
        H264Profile::Main => NV_ENC_H264_PROFILE_MAIN_GUID,
        H264Profile::High => NV_ENC_H264_PROFILE_HIGH_GUID,
    }
}

/// Adjusts a preset configuration (from `Encoder::get_preset_config` for H.264) to `params`:
/// profile, infinite GOP, no B-frames, rate control and VBV, no lookahead, zero reorder delay,
/// SPS/PPS repeated on every IDR, no access unit delimiters, automatic level.
pub(crate) fn apply(params: &NvencParams, config: &mut NV_ENC_CONFIG) {
    config.profileGUID = profile_guid(params.profile);
    config.gopLength = NVENC_INFINITE_GOPLENGTH;
    config.frameIntervalP = 1;

    let rc = &mut config.rcParams;
    rc.rateControlMode = match params.rate_control {
        RateControl::Vbr => NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_VBR,
        RateControl::Cbr => NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR,
    };
    rc.averageBitRate = params.average_bitrate;
    rc.maxBitRate = params.max_bitrate;
    rc.vbvBufferSize = params.vbv_buffer_size;
    rc.vbvInitialDelay = params.vbv_initial_delay;
    rc.set_enableLookahead(0);
    rc.lookaheadDepth = 0;
    rc.set_zeroReorderDelay(1);

    let mut h264 = ffi::nvenc_h264_config(config);
    h264.idrPeriod = NVENC_INFINITE_GOPLENGTH;
    h264.set_repeatSPSPPS(1);
    h264.set_outputAUD(0);
    h264.set_disableSPSPPS(0);
    h264.level = NV_ENC_LEVEL::NV_ENC_LEVEL_AUTOSELECT as u32;
    // 4:2:0 input (NV12).
    h264.chromaFormatIDC = 1;
    h264.entropyCodingMode = match params.profile {
        H264Profile::Baseline => {
            NV_ENC_H264_ENTROPY_CODING_MODE::NV_ENC_H264_ENTROPY_CODING_MODE_CAVLC
        }
        H264Profile::Main | H264Profile::High => {
            NV_ENC_H264_ENTROPY_CODING_MODE::NV_ENC_H264_ENTROPY_CODING_MODE_CABAC
        }
    };
    config.encodeCodecConfig.h264Config = h264;
}

#[cfg(test)]
mod tests {
    use nvidia_video_codec_sdk::sys::nvEncodeAPI::NV_ENC_CONFIG_VER;

    use super::*;

    fn params(profile: H264Profile, rate_control: RateControl) -> NvencParams {
        NvencParams {
            width: 1280,
            height: 720,
            preset: 2,
            profile,
            rate_control,
            average_bitrate: 2_500_000,
            max_bitrate: 3_000_000,
            vbv_buffer_size: 3_000_000,
            vbv_initial_delay: 3_000_000,
            frame_rate: (30, 1),
        }
    }

    #[test]
    fn guids_follow_preset_and_profile() {
        assert_eq!(preset_guid(1), NV_ENC_PRESET_P1_GUID);
        assert_eq!(preset_guid(2), NV_ENC_PRESET_P2_GUID);
        assert_eq!(preset_guid(7), NV_ENC_PRESET_P7_GUID);
        assert_eq!(preset_guid(9), NV_ENC_PRESET_P7_GUID);
        assert_eq!(
            profile_guid(H264Profile::High),
            NV_ENC_H264_PROFILE_HIGH_GUID
        );
        assert_eq!(
            profile_guid(H264Profile::Main),
            NV_ENC_H264_PROFILE_MAIN_GUID
        );
        assert_eq!(
            profile_guid(H264Profile::Baseline),
            NV_ENC_H264_PROFILE_BASELINE_GUID
        );
    }

    #[test]
    fn apply_sets_gop_rate_control_and_parameter_sets() {
        let mut config = NV_ENC_CONFIG {
            version: NV_ENC_CONFIG_VER,
            ..Default::default()
        };
        config.frameIntervalP = 3;
        apply(&params(H264Profile::High, RateControl::Vbr), &mut config);
        assert_eq!(config.profileGUID, NV_ENC_H264_PROFILE_HIGH_GUID);
        assert_eq!(config.gopLength, NVENC_INFINITE_GOPLENGTH);
        assert_eq!(config.frameIntervalP, 1);
        let rc = &config.rcParams;
        assert_eq!(
            rc.rateControlMode,
            NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_VBR
        );
        assert_eq!(
            (
                rc.averageBitRate,
                rc.maxBitRate,
                rc.vbvBufferSize,
                rc.vbvInitialDelay
            ),
            (2_500_000, 3_000_000, 3_000_000, 3_000_000)
        );
        assert_eq!((rc.enableLookahead(), rc.zeroReorderDelay()), (0, 1));
        let h264 = ffi::nvenc_h264_config(&config);
        assert_eq!(h264.idrPeriod, NVENC_INFINITE_GOPLENGTH);
        assert_eq!((h264.repeatSPSPPS(), h264.outputAUD()), (1, 0));
        assert_eq!(h264.chromaFormatIDC, 1);
        assert_eq!(
            h264.entropyCodingMode,
            NV_ENC_H264_ENTROPY_CODING_MODE::NV_ENC_H264_ENTROPY_CODING_MODE_CABAC
        );

        apply(
            &params(H264Profile::Baseline, RateControl::Cbr),
            &mut config,
        );
        assert_eq!(
            config.rcParams.rateControlMode,
            NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR
        );
        assert_eq!(
            ffi::nvenc_h264_config(&config).entropyCodingMode,
            NV_ENC_H264_ENTROPY_CODING_MODE::NV_ENC_H264_ENTROPY_CODING_MODE_CAVLC
        );
    }
}
