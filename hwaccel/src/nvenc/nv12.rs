//! NV12 pictures from swscale laid out the way an NVENC-allocated host input buffer holds
//! them: `height` luma rows of `pitch` bytes, then the interleaved chroma (UV) rows, also
//! `pitch` bytes apart, starting at `pitch * height`. The SDK's input write is one contiguous
//! copy, so the picture is packed here first (the buffer is reused from picture to picture).

use ffmpeg_next::{format::Pixel, frame};

/// Packs `picture` (NV12, `width` x `height`) into `out` at `pitch` bytes per row; `out` ends
/// up exactly `pitch * (height + ceil(height / 2))` bytes long. Padding bytes are zero.
pub(crate) fn pack(
    picture: &frame::Video,
    width: u32,
    height: u32,
    pitch: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if picture.format() != Pixel::NV12 {
        return Err(format!("nvenc input is {:?}, not nv12", picture.format()));
    }
    if (picture.width(), picture.height()) != (width, height) {
        return Err(format!(
            "nvenc input is {}x{}, session is {width}x{height}",
            picture.width(),
            picture.height()
        ));
    }
    if pitch < width {
        return Err(format!("nvenc pitch {pitch} below width {width}"));
    }
    let (w, h, pitch) = (width as usize, height as usize, pitch as usize);
    let chroma_rows = h.div_ceil(2);
    out.clear();
    out.resize(pitch * (h + chroma_rows), 0);
    let (luma, chroma) = out.split_at_mut(pitch * h);
    copy_rows(picture.data(0), picture.stride(0), luma, pitch, w, h)?;
    copy_rows(
        picture.data(1),
        picture.stride(1),
        chroma,
        pitch,
        w,
        chroma_rows,
    )
}

/// Copies `rows` rows of `width` bytes from `src` (`stride` apart) to `dst` (`pitch` apart).
fn copy_rows(
    src: &[u8],
    stride: usize,
    dst: &mut [u8],
    pitch: usize,
    width: usize,
    rows: usize,
) -> Result<(), String> {
    if stride < width {
        return Err(format!("picture stride {stride} below width {width}"));
    }
    let mut copied = 0;
    for (to, from) in dst.chunks_mut(pitch).zip(src.chunks(stride)).take(rows) {
        match (to.get_mut(..width), from.get(..width)) {
            (Some(to), Some(from)) => to.copy_from_slice(from),
            _ => return Err("picture plane shorter than its size".to_string()),
        }
        copied += 1;
    }
    if copied == rows {
        Ok(())
    } else {
        Err("picture plane shorter than its size".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: u32, height: u32) -> frame::Video {
        let mut pic = frame::Video::new(Pixel::NV12, width, height);
        for plane in 0..2 {
            let stride = pic.stride(plane);
            for (n, px) in pic.data_mut(plane).iter_mut().enumerate() {
                // Row number in the high bits, column in the low: every byte says where it is.
                *px = ((n / stride) * 16 + (n % stride) % 16) as u8 ^ (plane as u8 * 0x80);
            }
        }
        pic
    }

    #[test]
    fn rows_land_at_the_pitch() {
        let (w, h, pitch) = (20u32, 6u32, 32u32);
        let pic = picture(w, h);
        let mut out = vec![0xAA; 3];
        pack(&pic, w, h, pitch, &mut out).expect("packs");
        assert_eq!(out.len(), 32 * (6 + 3));
        for row in 0..6usize {
            let got = &out[row * 32..row * 32 + 20];
            let want = &pic.data(0)[row * pic.stride(0)..row * pic.stride(0) + 20];
            assert_eq!(got, want, "luma row {row}");
            assert!(out[row * 32 + 20..(row + 1) * 32].iter().all(|&b| b == 0));
        }
        for row in 0..3usize {
            let at = 32 * 6 + row * 32;
            let want = &pic.data(1)[row * pic.stride(1)..row * pic.stride(1) + 20];
            assert_eq!(&out[at..at + 20], want, "chroma row {row}");
        }
    }

    #[test]
    fn wrong_input_is_an_error() {
        let mut out = Vec::new();
        let pic = picture(20, 6);
        assert!(pack(&pic, 22, 6, 32, &mut out).is_err());
        assert!(pack(&pic, 20, 6, 16, &mut out).is_err());
        let yuv = frame::Video::new(Pixel::YUV420P, 20, 6);
        assert!(pack(&yuv, 20, 6, 32, &mut out).is_err());
    }
}
