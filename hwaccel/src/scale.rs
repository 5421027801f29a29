//! Picture resizing for one rung (swscale, bicubic), into its encoder's input format (planar
//! YUV 4:2:0 for libavcodec, NV12 for NVENC direct: [`crate::BackendKind::input_format`]). The
//! scaler follows changes of the input size or pixel format.

use ffmpeg_next::software::scaling::{self, Flags};
use ffmpeg_next::{format::Pixel, frame, Error};

use crate::ffi::SendScaler;

/// Resizes pictures to one output size.
pub(crate) struct Scaler {
    width: u32,
    height: u32,
    /// The output pixel format.
    format: Pixel,
    /// The context and the input (format, width, height) it was built for.
    context: Option<((Pixel, u32, u32), SendScaler)>,
}

impl Scaler {
    pub(crate) fn new(width: u32, height: u32, format: Pixel) -> Self {
        Scaler {
            width,
            height,
            format,
            context: None,
        }
    }

    /// Whether `picture` can go to the encoder as it is.
    pub(crate) fn passes_through(&self, picture: &frame::Video) -> bool {
        picture.width() == self.width
            && picture.height() == self.height
            && picture.format() == self.format
    }

    /// A new picture of the output size.
    pub(crate) fn scale(&mut self, input: &frame::Video) -> Result<frame::Video, Error> {
        let key = (input.format(), input.width(), input.height());
        let context = match &mut self.context {
            Some((k, ctx)) if *k == key => ctx,
            slot => {
                let ctx = scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    self.format,
                    self.width,
                    self.height,
                    Flags::BICUBIC,
                )?;
                &mut slot.insert((key, SendScaler(ctx))).1
            }
        };
        // A fresh picture each time: the encoder may still hold a reference to the last one.
        let mut output = frame::Video::new(self.format, self.width, self.height);
        context.0.run(input, &mut output)?;
        Ok(output)
    }
}
