//! Image files: writing sample grids (PNG or JPEG by extension) and reading images to
//! classify.

use crate::{io_fail, Res};
use std::path::Path;

/// Pixels between grid cells.
const GAP: usize = 2;
/// Grey level of the gaps.
const GAP_LEVEL: u8 = 128;

/// The format to write, from the file's extension.
fn format_of(path: &Path) -> Res<image::ImageFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(image::ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(image::ImageFormat::Jpeg),
        _ => Err(format!(
            "{}: unsupported image file extension (use .png, .jpg or .jpeg)",
            path.display()
        )
        .into()),
    }
}

/// Writes 8-bit pixels (`channels` 1 or 3, interleaved) of a `w` x `h` image, atomically.
pub fn write_pixels(path: &Path, px: &[u8], w: usize, h: usize, channels: usize) -> Res<()> {
    let format = format_of(path)?;
    let colour = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut bytes = Vec::new();
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut bytes),
        px,
        w as u32,
        h as u32,
        colour,
        format,
    )
    .map_err(|e| io_fail(path, e))?;
    Ok(fewlabels::model::file::write_atomic(path, &bytes)?)
}

/// Writes CHW images in [0, 1] (`channels` x `r` x `r` each) as a grid of rows of `cols`
/// images with thin grey gaps between them; returns the image's width and height.
pub fn write_grid(
    path: &Path,
    chw: &[f32],
    channels: usize,
    r: usize,
    cols: usize,
) -> Res<(usize, usize)> {
    let n = chw.len() / (channels * r * r);
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let gap = if n > 1 { GAP } else { 0 };
    let (w, h) = (cols * r + (cols - 1) * gap, rows * r + (rows - 1) * gap);
    let mut px = vec![GAP_LEVEL; w * h * channels];
    for (i, im) in chw.chunks_exact(channels * r * r).enumerate() {
        let (gx, gy) = ((i % cols) * (r + gap), (i / cols) * (r + gap));
        for y in 0..r {
            for x in 0..r {
                for c in 0..channels {
                    let v = im[c * r * r + y * r + x];
                    px[((gy + y) * w + gx + x) * channels + c] =
                        (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    write_pixels(path, &px, w, h, channels)?;
    Ok((w, h))
}

/// Decodes one image file to HWC values in [-1, 1] with `channels` channels (grey and RGB
/// are converted into each other, alpha is dropped); it must be `r` x `r`.
pub fn read_image(path: &Path, r: usize, channels: usize) -> Res<Vec<f32>> {
    let img = image::ImageReader::open(path)
        .map_err(|e| io_fail(path, e))?
        .with_guessed_format()
        .map_err(|e| io_fail(path, e))?
        .decode()
        .map_err(|e| io_fail(path, e))?;
    if img.width() as usize != r || img.height() as usize != r {
        return Err(format!(
            "{}: the image is {}x{}, the model takes {r}x{r} (images are not resized)",
            path.display(),
            img.width(),
            img.height()
        )
        .into());
    }
    let scale = |v: &u8| *v as f32 / 127.5 - 1.0;
    Ok(if channels == 1 {
        img.to_luma8().iter().map(scale).collect()
    } else {
        img.to_rgb8().iter().map(scale).collect()
    })
}
