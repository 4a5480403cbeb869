//! IDX files (the MNIST format) and Fashion-MNIST.
//!
//! An IDX file is: two zero bytes, a type byte (0x08 = unsigned byte, the only type read
//! here), a byte with the number of dimensions, each dimension as a big-endian u32, then the
//! values in row-major order. Files may be gzip-compressed (recognised by their first bytes).
//! Fashion-MNIST (Debian's `dataset-fashion-mnist`) ships
//! `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`: 28x28 grey images (0 = background) and
//! labels 0..9. They are scaled to [-1, 1] (`v / 127.5 - 1`) and zero-padded to 32x32, two
//! pixels each side, with the background value -1.

use super::Dataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The unsigned-byte IDX type, the only one read.
const TYPE_U8: u8 = 0x08;

/// The contents of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses IDX bytes (gzip-compressed or not); `name` names the source in errors.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<Idx> {
    let bad = |m: String| Error::Format(format!("{name}: {m}"));
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        raw = gunzip_idx(bytes).map_err(bad)?;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "not an IDX file (magic {:02x} {:02x} {:02x} {:02x}; an IDX file starts 00 00)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != TYPE_U8 {
        return Err(bad(format!(
            "IDX value type 0x{:02x}; only unsigned bytes (0x08) are read",
            bytes[2]
        )));
    }
    let nd = bytes[3] as usize;
    if nd == 0 {
        return Err(bad("IDX file with no dimensions".into()));
    }
    let head = 4 + 4 * nd;
    if bytes.len() < head {
        return Err(bad(format!(
            "truncated header: {nd} dimensions need {head} bytes, the file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} are too large")))?;
    let got = bytes.len() - head;
    if got != want {
        return Err(bad(format!(
            "dimensions {dims:?} need {want} values, the file has {got}{}",
            if got < want { " (truncated)" } else { "" }
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[head..].to_vec(),
    })
}

/// Largest IDX data section read (4 GiB): a gzip stream stops being inflated past it.
pub const MAX_IDX_BYTES: u64 = 1 << 32;

/// Inflate a gzip-compressed IDX file, reading no more than its header says it holds (plus
/// one byte, so that a longer stream is still reported): a small file that inflates to
/// gigabytes (a "zip bomb") is cut off rather than filling memory.
fn gunzip_idx(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut z = flate2::read::MultiGzDecoder::new(bytes);
    let gz = |e: std::io::Error| format!("bad gzip data: {e}");
    let mut out = Vec::new();
    (&mut z).take(4).read_to_end(&mut out).map_err(gz)?;
    if out.len() < 4 {
        return Ok(out);
    }
    let nd = out[3] as u64;
    (&mut z).take(4 * nd).read_to_end(&mut out).map_err(gz)?;
    if (out.len() as u64) < 4 + 4 * nd {
        return Ok(out);
    }
    let want = out[4..]
        .chunks(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
        .try_fold(1u64, |a, d| a.checked_mul(d))
        .filter(|&w| w <= MAX_IDX_BYTES)
        .ok_or_else(|| format!("the header's dimensions hold more than {MAX_IDX_BYTES} values"))?;
    z.take(want + 1).read_to_end(&mut out).map_err(gz)?;
    Ok(out)
}

/// Reads and parses an IDX file (gzip-compressed or not).
pub fn read_idx(path: &Path) -> Result<Idx> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Which part of Fashion-MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60000 images.
    Train,
    /// 10000 images.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Fashion-MNIST's `split` from `dir` (for example [`FASHION_MNIST_DIR`]): 32x32 grey images,
/// every one labelled, 10 classes. Each file may be gzip-compressed (`.gz`) or not.
pub fn fashion_mnist(dir: &Path, split: Split) -> Result<Dataset> {
    let find = |kind: &str| {
        let plain = dir.join(format!("{}-{kind}-ubyte", split.prefix()));
        let gz = dir.join(format!("{}-{kind}-ubyte.gz", split.prefix()));
        if gz.exists() || !plain.exists() {
            gz
        } else {
            plain
        }
    };
    let (ipath, lpath) = (find("images-idx3"), find("labels-idx1"));
    let images = read_idx(&ipath)?;
    let labels = read_idx(&lpath)?;
    idx_dataset(
        &images,
        &ipath.display().to_string(),
        &labels,
        &lpath.display().to_string(),
        10,
        32,
    )
}

/// A data set from an IDX image file (`[N, H, W]` bytes, 0 = background) and an IDX label
/// file (`[N]`, each below `classes`): values scaled to [-1, 1] and each image centred in a
/// `resolution` square padded with -1. The names are the files' names for errors.
pub fn idx_dataset(
    images: &Idx,
    images_name: &str,
    labels: &Idx,
    labels_name: &str,
    classes: usize,
    resolution: usize,
) -> Result<Dataset> {
    let &[n, h, w] = &images.dims[..] else {
        return Err(Error::Format(format!(
            "{images_name}: dimensions {:?}, expected [images, height, width]",
            images.dims
        )));
    };
    if h > resolution || w > resolution || h == 0 || w == 0 {
        return Err(Error::Format(format!(
            "{images_name}: {h}x{w} images do not fit {resolution}x{resolution}"
        )));
    }
    if labels.dims != [n] {
        return Err(Error::Format(format!(
            "{labels_name}: dimensions {:?}, expected [{n}] (one label per image of {images_name})",
            labels.dims
        )));
    }
    if let Some(i) = labels.data.iter().position(|&l| l as usize >= classes) {
        return Err(Error::Format(format!(
            "{labels_name}: label {} of image {i} is not below {classes}",
            labels.data[i]
        )));
    }
    let (top, left) = ((resolution - h) / 2, (resolution - w) / 2);
    let mut out = vec![-1.0f32; n * resolution * resolution];
    for (img, dst) in images
        .data
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(resolution * resolution))
    {
        for (r, row) in img.chunks_exact(w).enumerate() {
            let d = &mut dst[(top + r) * resolution + left..][..w];
            for (o, &v) in d.iter_mut().zip(row) {
                *o = v as f32 / 127.5 - 1.0;
            }
        }
    }
    let labels = labels.data.iter().map(|&l| l as i32).collect();
    Dataset::new(out, resolution, 1, labels, classes)
}
