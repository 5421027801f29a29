//! What the ladder encodes: [`RungSpec`]s, the [`default_ladder`], and [`plan`], which fits a
//! ladder to a source size (never upscale, keep the source aspect, copy only what fits).

use crate::LadderError;

/// One rendition of the ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RungSpec {
    /// Rendition name, part of the playback URL (`720p`).
    pub name: String,
    /// Picture size in pixels. [`plan`] recomputes the width from the source aspect.
    pub width: u16,
    pub height: u16,
    /// Average bitrate in bit/s.
    pub bitrate: u32,
    /// Peak bitrate in bit/s; also the VBV buffer size in bits (one second at peak).
    pub max_bitrate: u32,
    /// H.264 profile: `high`, `main` or `baseline`.
    pub profile: String,
    /// x264 preset (`veryfast`...); NVENC gets the preset of similar speed (p1..p7).
    pub preset: String,
    /// Pass the source through untouched instead of encoding.
    pub copy: bool,
}

impl RungSpec {
    fn encoded(name: &str, width: u16, height: u16, bitrate: u32, max_bitrate: u32) -> Self {
        RungSpec {
            name: name.to_string(),
            width,
            height,
            bitrate,
            max_bitrate,
            profile: "high".to_string(),
            preset: "veryfast".to_string(),
            copy: false,
        }
    }

    /// Checks what an encoder needs (copy rungs need nothing).
    pub(crate) fn validate(&self) -> Result<(), LadderError> {
        let invalid = |reason: String| LadderError::InvalidRung {
            rung: self.name.clone(),
            reason,
        };
        if self.copy {
            return Ok(());
        }
        if self.width < 16 || self.height < 16 || self.width % 2 != 0 || self.height % 2 != 0 {
            return Err(invalid(format!(
                "size {}x{} must be even and at least 16x16",
                self.width, self.height
            )));
        }
        if self.bitrate == 0 || self.max_bitrate < self.bitrate {
            return Err(invalid(format!(
                "bitrate {} and max_bitrate {} must satisfy 0 < bitrate <= max_bitrate",
                self.bitrate, self.max_bitrate
            )));
        }
        if !matches!(self.profile.as_str(), "baseline" | "main" | "high") {
            return Err(invalid(format!(
                "profile {:?} is not baseline, main or high",
                self.profile
            )));
        }
        const PRESETS: [&str; 10] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(invalid(format!(
                "preset {:?} is not an x264 preset",
                self.preset
            )));
        }
        Ok(())
    }

    /// Pixels per picture, for ordering rungs.
    pub(crate) fn area(&self) -> u32 {
        u32::from(self.width) * u32::from(self.height)
    }
}

/// 1080p at 4.5/5.4 Mbit/s, 720p at 2.5/3 Mbit/s, 480p at 1/1.2 Mbit/s; High profile, x264
/// `veryfast` (NVENC p2).
pub fn default_ladder() -> Vec<RungSpec> {
    vec![
        RungSpec::encoded("1080p", 1920, 1080, 4_500_000, 5_400_000),
        RungSpec::encoded("720p", 1280, 720, 2_500_000, 3_000_000),
        RungSpec::encoded("480p", 854, 480, 1_000_000, 1_200_000),
    ]
}

/// The rungs that apply to a source of this size, largest first.
///
/// - An encoded rung applies when it is not taller than the source (never upscale); its width
///   becomes the source aspect at the rung height, rounded to even (a 4:3 source gets 1440x1080,
///   a portrait 720x1280 source gets a 608x1080 "1080p").
/// - A copy rung applies only when the source fits inside it; it takes the source size.
/// - A name already taken by an earlier rung is skipped (first wins).
/// - If no rung applies (a source smaller than every rung), the smallest encoded rung is kept at
///   the source size and named after it (`360p`), so the stream still has a video rendition.
pub fn plan(rungs: &[RungSpec], source_width: u16, source_height: u16) -> Vec<RungSpec> {
    let mut out: Vec<RungSpec> = Vec::new();
    for rung in rungs {
        if out.iter().any(|r| r.name == rung.name) {
            continue;
        }
        if rung.copy {
            if source_width <= rung.width && source_height <= rung.height {
                out.push(RungSpec {
                    width: source_width,
                    height: source_height,
                    ..rung.clone()
                });
            }
        } else if rung.height <= source_height {
            let (width, height) = fit(source_width, source_height, rung.height);
            out.push(RungSpec {
                width,
                height,
                ..rung.clone()
            });
        }
    }
    if out.is_empty() {
        if let Some(smallest) = rungs.iter().filter(|r| !r.copy).min_by_key(|r| r.area()) {
            let (width, height) = fit(source_width, source_height, source_height);
            out.push(RungSpec {
                name: format!("{height}p"),
                width,
                height,
                ..smallest.clone()
            });
        }
    }
    // Stable: copy rungs (source size) come before encoded rungs of the same size.
    out.sort_by_key(|r| std::cmp::Reverse(r.area()));
    out
}

/// Size at `height` with the source aspect, both even and no larger than the source.
fn fit(source_width: u16, source_height: u16, height: u16) -> (u16, u16) {
    let even = |v: u32| (v & !1).max(2);
    let height = even(u32::from(height.min(source_height)));
    let width = if source_height == 0 {
        0
    } else {
        // Round to the nearest even width.
        (u32::from(source_width) * height + u32::from(source_height))
            / (2 * u32::from(source_height))
            * 2
    };
    let width = even(width.min(u32::from(source_width)));
    (
        u16::try_from(width).unwrap_or(u16::MAX),
        u16::try_from(height).unwrap_or(u16::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rungs: &[RungSpec]) -> Vec<(&str, u16, u16, bool)> {
        rungs
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height, r.copy))
            .collect()
    }

    #[test]
    fn default_ladder_on_1080p() {
        let planned = plan(&default_ladder(), 1920, 1080);
        assert_eq!(
            names(&planned),
            vec![
                ("1080p", 1920, 1080, false),
                ("720p", 1280, 720, false),
                ("480p", 854, 480, false)
            ]
        );
        for r in &planned {
            r.validate().expect("default rungs are valid");
        }
    }

    #[test]
    fn never_upscales() {
        let planned = plan(&default_ladder(), 1280, 720);
        assert_eq!(
            names(&planned),
            vec![("720p", 1280, 720, false), ("480p", 854, 480, false)]
        );
    }

    #[test]
    fn keeps_source_aspect() {
        assert_eq!(
            names(&plan(&default_ladder(), 1440, 1080))[0],
            ("1080p", 1440, 1080, false)
        );
        assert_eq!(
            names(&plan(&default_ladder(), 720, 1280)),
            vec![
                ("1080p", 608, 1080, false),
                ("720p", 406, 720, false),
                ("480p", 270, 480, false)
            ]
        );
    }

    #[test]
    fn copy_rung_only_when_the_source_fits() {
        let mut rungs = default_ladder();
        rungs.remove(0);
        rungs.insert(
            0,
            RungSpec {
                copy: true,
                ..RungSpec::encoded("1080p", 1920, 1080, 4_500_000, 5_400_000)
            },
        );
        assert_eq!(
            names(&plan(&rungs, 1920, 1080)),
            vec![
                ("1080p", 1920, 1080, true),
                ("720p", 1280, 720, false),
                ("480p", 854, 480, false)
            ]
        );
        // A 1280x720 source also fits the 1080p copy rung: it is carried at its own size.
        assert_eq!(
            names(&plan(&rungs, 1280, 720))[0],
            ("1080p", 1280, 720, true)
        );
        // A 4K source does not fit: no copy rung, and nothing taller than the ladder.
        assert_eq!(
            names(&plan(&rungs, 3840, 2160)),
            vec![("720p", 1280, 720, false), ("480p", 854, 480, false)]
        );
    }

    #[test]
    fn tiny_source_keeps_one_rung_at_its_size() {
        let planned = plan(&default_ladder(), 640, 360);
        assert_eq!(names(&planned), vec![("360p", 640, 360, false)]);
        assert_eq!(planned[0].bitrate, 1_000_000);
    }

    #[test]
    fn rejects_unusable_rungs() {
        let mut r = default_ladder().remove(0);
        r.profile = "high10".into();
        assert!(r.validate().is_err());
        let mut r = default_ladder().remove(0);
        r.width = 1921;
        assert!(r.validate().is_err());
        let mut r = default_ladder().remove(0);
        r.max_bitrate = 1;
        assert!(r.validate().is_err());
    }
}
