//! Training data in host memory, and the seeded choices made over it.
//!
//! - [`Dataset`]: images as f32 NHWC in [-1, 1] (the range of G's tanh output, which is what
//!   the trainer feeds D), their resolution and channel count, one label per image (-1 =
//!   unlabelled) and the number of classes. [`Dataset::batch`] gathers images and labels.
//! - Sources: Fashion-MNIST's IDX files ([`fashion_mnist`], [`idx`]), padded from 28x28 to
//!   32x32 with the background value -1; a folder of PNG/JPEG images with an optional CSV of
//!   labels ([`image_folder`]).
//! - [`LabelSpec`] and [`keep_labels`]: keep the labels of a seeded, class-stratified subset
//!   ("10%", "600", "all", "none"); every other image becomes unlabelled.
//! - [`Order`]: a seeded shuffle per epoch and the position in it, as plain state
//!   ([`OrderState`]) that a checkpoint can store and resume from.
//!
//! Every random choice is drawn from [`crate::rng`] (Philox, [`Stream::Data`]), so the same
//! seed gives the same labelled subset and the same batches on any machine.

pub mod folder;
pub mod idx;

pub use folder::{decode_image, image_folder, parse_labels, FolderOptions};
pub use idx::{fashion_mnist, parse_idx, Split, FASHION_MNIST_DIR};

use crate::error::{Error, Result};
use crate::rng::{self, Stream};

/// Images and labels in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[N, resolution, resolution, channels]` values in [-1, 1], channels innermost.
    pub images: Vec<f32>,
    /// Height and width of every image.
    pub resolution: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// One label per image: a class in `0..classes`, or -1 for an unlabelled image.
    pub labels: Vec<i32>,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// A data set from its parts, checked: sizes agree, values are finite and in [-1, 1],
    /// labels are -1 or in `0..classes`.
    pub fn new(
        images: Vec<f32>,
        resolution: usize,
        channels: usize,
        labels: Vec<i32>,
        classes: usize,
    ) -> Result<Dataset> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("data set: {m}")));
        if resolution == 0 || !(channels == 1 || channels == 3) {
            return bad(format!(
                "resolution {resolution} and {channels} channels (need resolution > 0 and 1 or 3 channels)"
            ));
        }
        if classes == 0 || classes > i32::MAX as usize {
            return bad(format!("{classes} classes"));
        }
        let per = resolution * resolution * channels;
        if images.len() != labels.len() * per {
            return bad(format!(
                "{} values for {} labels of {resolution}x{resolution}x{channels} images (need {})",
                images.len(),
                labels.len(),
                labels.len() * per
            ));
        }
        if let Some(i) = images.iter().position(|v| !(-1.0..=1.0).contains(v)) {
            return bad(format!(
                "value {} of image {} is outside [-1, 1]",
                images[i],
                i / per
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l < -1 || l >= classes as i32) {
            return bad(format!(
                "label {} of image {i} is not -1 or in 0..{classes}",
                labels[i]
            ));
        }
        Ok(Dataset {
            images,
            resolution,
            channels,
            labels,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `resolution * resolution * channels`.
    pub fn image_len(&self) -> usize {
        self.resolution * self.resolution * self.channels
    }

    /// Image `i` as HWC values.
    pub fn image(&self, i: usize) -> &[f32] {
        let per = self.image_len();
        &self.images[i * per..(i + 1) * per]
    }

    /// The images (NHWC, `[indices.len(), resolution, resolution, channels]`) and labels of
    /// `indices`, in that order. Panics if an index is out of range.
    pub fn batch(&self, indices: &[usize]) -> (Vec<f32>, Vec<i32>) {
        let mut x = Vec::with_capacity(indices.len() * self.image_len());
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            assert!(
                i < self.len(),
                "data set batch: index {i} of {} images",
                self.len()
            );
            x.extend_from_slice(self.image(i));
            y.push(self.labels[i]);
        }
        (x, y)
    }

    /// Number of images with a label.
    pub fn labelled(&self) -> usize {
        self.labels.iter().filter(|&&l| l >= 0).count()
    }

    /// Number of labelled images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if l >= 0 {
                counts[l as usize] += 1;
            }
        }
        counts
    }
}

/// How many labels to keep: see [`LabelSpec::parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelSpec {
    /// Keep every label.
    All,
    /// Keep none.
    None,
    /// Keep this many.
    Count(usize),
    /// Keep this percentage (0 to 100) of the data set's images, rounded to the nearest count.
    Percent(f64),
}

impl LabelSpec {
    /// `"all"`, `"none"`, a count (`"600"`) or a percentage of all images (`"10%"`,
    /// `"2.5%"`). Anything else, a negative number or more than 100% is an error.
    pub fn parse(s: &str) -> Result<LabelSpec> {
        let t = s.trim();
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "labels {s:?}: {why} (expected a count such as 600, a percentage such as 10%, all or none)"
            )))
        };
        if t.eq_ignore_ascii_case("all") {
            return Ok(LabelSpec::All);
        }
        if t.eq_ignore_ascii_case("none") {
            return Ok(LabelSpec::None);
        }
        if t.starts_with('-') {
            return bad("negative");
        }
        if let Some(p) = t.strip_suffix('%') {
            let p = p.trim();
            // Rust's float parser also takes "inf" and "nan"; only plain decimals are meant.
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return bad("not a number before %");
            }
            return match p.parse::<f64>() {
                Ok(v) if v <= 100.0 => Ok(LabelSpec::Percent(v)),
                Ok(_) => bad("more than 100%"),
                Err(_) => bad("not a number before %"),
            };
        }
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
            return bad("not a count");
        }
        match t.parse::<usize>() {
            Ok(n) => Ok(LabelSpec::Count(n)),
            Err(_) => bad("count too large"),
        }
    }

    /// The number of labels this asks for in a data set of `images` images with `labelled`
    /// of them labelled; an error when it asks for more than there are.
    pub fn count(self, images: usize, labelled: usize) -> Result<usize> {
        let n = match self {
            LabelSpec::All => return Ok(labelled),
            LabelSpec::None => return Ok(0),
            LabelSpec::Count(n) => n,
            LabelSpec::Percent(p) => (p / 100.0 * images as f64).round() as usize,
        };
        if n > labelled {
            let what = match self {
                LabelSpec::Percent(p) => format!("{p}% of {images} images ({n} labels)"),
                _ => format!("{n} labels"),
            };
            return Err(Error::InvalidArgument(format!(
                "labels: asked for {what} but the data set has only {labelled} labelled images"
            )));
        }
        Ok(n)
    }
}

impl std::str::FromStr for LabelSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<LabelSpec> {
        LabelSpec::parse(s)
    }
}

impl std::fmt::Display for LabelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelSpec::All => write!(f, "all"),
            LabelSpec::None => write!(f, "none"),
            LabelSpec::Count(n) => write!(f, "{n}"),
            LabelSpec::Percent(p) => write!(f, "{p}%"),
        }
    }
}

// Word 2 of the Philox counter (the "attempt" of rng::bits) keeps the uses of Stream::Data
// apart: the class order of keep_labels, its choice within a class, and the epoch order.
const TAG_CLASS_ORDER: u32 = 0x4441_0001;
const TAG_CLASS_PICK: u32 = 0x4441_0002;
const TAG_EPOCH: u32 = 0x4441_0003;

/// A uniform integer in [0, n) from draw (index, tag) of `seed`'s data stream.
fn below(seed: u64, index: u64, tag: u32, n: usize) -> usize {
    let b = rng::bits(seed, Stream::Data, index, tag);
    let x = (b[0] as u64) << 32 | b[1] as u64;
    ((x as u128 * n as u128) >> 64) as usize
}

/// Puts a uniformly chosen `k`-subset of `items` in its first `k` places, in random order
/// (the first `k` steps of Fisher-Yates). Draw i uses index `base + i`.
fn pick<T>(items: &mut [T], k: usize, seed: u64, base: u64, tag: u32) {
    let n = items.len();
    for i in 0..k.min(n.saturating_sub(1)) {
        let j = i + below(seed, base + i as u64, tag, n - i);
        items.swap(i, j);
    }
}

/// Per-class counts that add up to `total` (at most the sum of `available`), as even as
/// `available` allows: counts differ by at most 1 except where a class has too few images.
/// Which classes get the one extra is drawn from `seed`.
pub fn stratify(available: &[usize], total: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..available.len()).collect();
    let n = order.len();
    pick(&mut order, n, seed, 0, TAG_CLASS_ORDER);
    let mut take = vec![0; available.len()];
    let mut left = total.min(available.iter().sum());
    while left > 0 {
        let open: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&c| take[c] < available[c])
            .collect();
        let share = left / open.len();
        if share == 0 {
            for &c in &open[..left] {
                take[c] += 1;
            }
            break;
        }
        for &c in &open {
            let t = share.min(available[c] - take[c]);
            take[c] += t;
            left -= t;
        }
    }
    take
}

/// Keeps the labels of `spec`'s number of images, spread evenly over the classes (see
/// [`stratify`]) and chosen at random within each class from `seed`; every other image
/// becomes unlabelled (-1). Only labelled images can keep a label, so asking for more labels
/// than there are labelled images is an error (and nothing changes).
pub fn keep_labels(ds: &mut Dataset, spec: LabelSpec, seed: u64) -> Result<()> {
    let total = spec.count(ds.len(), ds.labelled())?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ds.classes];
    for (i, &l) in ds.labels.iter().enumerate() {
        if l >= 0 {
            members[l as usize].push(i);
        }
    }
    let available: Vec<usize> = members.iter().map(Vec::len).collect();
    let take = stratify(&available, total, seed);
    let mut keep = vec![false; ds.len()];
    for (c, m) in members.iter_mut().enumerate() {
        pick(m, take[c], seed, (c as u64) << 32, TAG_CLASS_PICK);
        for &i in &m[..take[c]] {
            keep[i] = true;
        }
    }
    for (l, k) in ds.labels.iter_mut().zip(keep) {
        if !k {
            *l = -1;
        }
    }
    Ok(())
}

/// The position in a seeded sequence of epochs: everything needed to resume batching
/// (serialisable, for checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OrderState {
    /// Seed of the shuffles.
    pub seed: u64,
    /// Number of images shuffled.
    pub len: usize,
    /// Current epoch, from 0.
    pub epoch: u64,
    /// Position in the current epoch's permutation (0..len).
    pub pos: usize,
}

/// Seeded epoch order: each epoch is a fresh permutation of `0..len`, a pure function of
/// (seed, epoch); [`Order::next_batch`] walks through it and on into the next epoch.
#[derive(Debug, Clone)]
pub struct Order {
    state: OrderState,
    perm: Vec<usize>,
}

impl Order {
    /// Epoch 0, position 0.
    pub fn new(seed: u64, len: usize) -> Result<Order> {
        Order::resume(OrderState {
            seed,
            len,
            epoch: 0,
            pos: 0,
        })
    }

    /// Continues from a stored state.
    pub fn resume(state: OrderState) -> Result<Order> {
        if state.len == 0 || state.len as u64 > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "batch order over {} images (need 1 to 2^32 - 1)",
                state.len
            )));
        }
        if state.pos >= state.len || state.epoch >= u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "batch order: position {} of epoch {} with {} images",
                state.pos, state.epoch, state.len
            )));
        }
        Ok(Order {
            state,
            perm: Order::permutation(state.seed, state.len, state.epoch),
        })
    }

    /// Where the order stands; [`Order::resume`] with it continues exactly here.
    pub fn state(&self) -> OrderState {
        self.state
    }

    /// The permutation of `0..len` for `epoch`.
    pub fn permutation(seed: u64, len: usize, epoch: u64) -> Vec<usize> {
        let mut p: Vec<usize> = (0..len).collect();
        pick(&mut p, len, seed, epoch << 32, TAG_EPOCH);
        p
    }

    /// The next `n` indices. A batch that runs past the end of an epoch continues with the
    /// start of the next one, so every batch is full and every epoch is seen whole.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let s = &mut self.state;
            let take = (n - out.len()).min(s.len - s.pos);
            out.extend_from_slice(&self.perm[s.pos..s.pos + take]);
            s.pos += take;
            if s.pos == s.len {
                s.pos = 0;
                s.epoch += 1;
                self.perm = Order::permutation(s.seed, s.len, s.epoch);
            }
        }
        out
    }
}
