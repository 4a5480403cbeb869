//! A folder of PNG and JPEG images, with an optional CSV of labels.
//!
//! Every `.png`, `.jpg` and `.jpeg` file directly in the folder (case-insensitive extension;
//! other files and sub-folders are ignored) is one image, in the order of their file names,
//! so the same folder always gives the same data set. Each must be `resolution` square and
//! grey (1 channel) or RGB (3 channels) as asked; with [`FolderOptions::convert`] grey images
//! are repeated into RGB, RGB images are turned grey (ITU-R BT.709 luma) and an alpha channel
//! is dropped. Nothing is resized. Values are scaled to [-1, 1].
//!
//! The CSV has `filename,label` lines for any subset of the images (the rest are unlabelled):
//! the file name as in the folder, a class in `0..classes`. A first line whose label is not a
//! number is a header; blank lines and lines starting with `#` are skipped. A name that is
//! not an image of the folder, a name given twice, or a label that is not an integer in range
//! is an error naming the line.

use super::Dataset;
use crate::error::{Error, Result};
use image::{ColorType, DynamicImage, ImageDecoder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What [`image_folder`] expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOptions {
    /// Width and height every image must have (the model's resolution).
    pub resolution: usize,
    /// 1 (grey) or 3 (RGB): the model's channels.
    pub channels: usize,
    /// Number of classes (labels are `0..classes`).
    pub classes: usize,
    /// The CSV of labels; `None`: every image unlabelled.
    pub labels: Option<PathBuf>,
    /// Convert grey to RGB, RGB to grey, and drop alpha, instead of refusing such images.
    pub convert: bool,
}

impl FolderOptions {
    pub fn new(resolution: usize, channels: usize, classes: usize) -> FolderOptions {
        FolderOptions {
            resolution,
            channels,
            classes,
            labels: None,
            convert: false,
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// The image files of `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn describe(w: u32, h: u32, c: ColorType) -> String {
    let kind = match (c.channel_count(), c.has_alpha()) {
        (1, _) => "grey".to_string(),
        (2, _) => "grey+alpha".to_string(),
        (3, _) => "RGB".to_string(),
        (4, _) => "RGBA".to_string(),
        (n, _) => format!("{n}-channel"),
    };
    let bits = 8 * c.bytes_per_pixel() as u32 / c.channel_count() as u32;
    format!("{w}x{h} {kind} ({bits}-bit)")
}

/// Decodes one image file and appends its HWC values in [-1, 1] to `out`.
fn load_image(path: &Path, opts: &FolderOptions, out: &mut Vec<f32>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    decode_image(&bytes, &path.display().to_string(), opts, out)
}

/// Decodes one PNG or JPEG file's bytes (`source` names it in errors) and appends its HWC
/// values in [-1, 1] to `out`. The size and colour type are checked from the header before
/// any pixel is decoded, so a header claiming a huge image costs nothing.
pub fn decode_image(
    bytes: &[u8],
    source: &str,
    opts: &FolderOptions,
    out: &mut Vec<f32>,
) -> Result<()> {
    let format = |e: image::ImageError| Error::Format(format!("{source}: {e}"));
    let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Format(format!("{source}: {e}")))?
        .into_decoder()
        .map_err(format)?;
    let (w, h) = decoder.dimensions();
    let c = decoder.color_type();
    let colour = c.channel_count() as usize - c.has_alpha() as usize;
    let r = opts.resolution;
    let size_ok = w as usize == r && h as usize == r;
    let colour_ok = opts.convert || (colour == opts.channels && !c.has_alpha());
    if !size_ok || !colour_ok {
        let want = if opts.channels == 1 { "grey" } else { "RGB" };
        return Err(Error::Format(format!(
            "{source}: the image is {}, expected {r}x{r} {want} (resolution {r}, {} channel{}){}",
            describe(w, h, c),
            opts.channels,
            if opts.channels == 1 { "" } else { "s" },
            if size_ok {
                "; the convert option turns grey into RGB, RGB into grey and drops alpha"
            } else {
                "; images are not resized"
            }
        )));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(format)?;
    let c = img.color();
    let wide = c.bytes_per_pixel() as usize / c.channel_count() as usize > 1;
    match (opts.channels, wide) {
        (1, false) => out.extend(img.to_luma8().iter().map(|&v| v as f32 / 127.5 - 1.0)),
        (1, true) => out.extend(img.to_luma16().iter().map(|&v| v as f32 / 32767.5 - 1.0)),
        (_, false) => out.extend(img.to_rgb8().iter().map(|&v| v as f32 / 127.5 - 1.0)),
        (_, true) => out.extend(img.to_rgb16().iter().map(|&v| v as f32 / 32767.5 - 1.0)),
    }
    Ok(())
}

/// Parses the labels CSV: for each line naming one of `names`, that image's label.
pub fn parse_labels(
    text: &str,
    source: &str,
    names: &[String],
    classes: usize,
) -> Result<Vec<i32>> {
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut labels = vec![-1i32; names.len()];
    let mut seen: Vec<usize> = vec![0; names.len()];
    // A byte order mark (as some spreadsheets write) is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: String| Err(Error::Format(format!("{source} line {no}: {m}")));
        let Some((name, label)) = line.rsplit_once(',') else {
            return bad(format!("{line:?} is not `filename,label`"));
        };
        let (name, label) = (name.trim(), label.trim());
        let value = label.parse::<i64>();
        if no == 1 && value.is_err() {
            continue; // a header
        }
        let Some(&i) = index.get(name) else {
            return bad(format!("{name:?} is not an image of the folder"));
        };
        if seen[i] != 0 {
            return bad(format!("{name:?} was already labelled on line {}", seen[i]));
        }
        let Ok(v) = value else {
            return bad(format!("label {label:?} of {name:?} is not an integer"));
        };
        if v < 0 || v >= classes as i64 {
            return bad(format!(
                "label {v} of {name:?} is not in 0..{classes} (leave an image out of the file to leave it unlabelled)"
            ));
        }
        seen[i] = no;
        labels[i] = v as i32;
    }
    Ok(labels)
}

/// Loads every image of `dir` (see the module docs) with the labels of `opts.labels`.
pub fn image_folder(dir: &Path, opts: &FolderOptions) -> Result<Dataset> {
    if !(opts.channels == 1 || opts.channels == 3) || opts.resolution == 0 || opts.classes == 0 {
        return Err(Error::InvalidArgument(format!(
            "image folder: resolution {}, {} channels, {} classes (need a resolution, 1 or 3 channels and a class)",
            opts.resolution, opts.channels, opts.classes
        )));
    }
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(Error::Format(format!(
            "{}: no .png, .jpg or .jpeg images in the folder",
            dir.display()
        )));
    }
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let labels = match &opts.labels {
        Some(csv) => {
            let text = std::fs::read_to_string(csv).map_err(|e| io(csv, e))?;
            parse_labels(&text, &csv.display().to_string(), &names, opts.classes)?
        }
        None => vec![-1; files.len()],
    };
    let mut images = Vec::with_capacity(files.len() * opts.resolution.pow(2) * opts.channels);
    for f in &files {
        load_image(f, opts, &mut images)?;
    }
    Dataset::new(images, opts.resolution, opts.channels, labels, opts.classes)
}
