//! The network configuration. Serialised as JSON into a model file's metadata (key
//! `config`), so a file describes itself. Keys equal those of tests/reference/biggan.py.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Shape of a BigGAN generator/discriminator pair with S3GAN heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Output side in pixels: 16, 32, 64 or 128. G starts at 4x4 and each block doubles.
    pub resolution: usize,
    /// Image channels: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Width multiplier.
    pub ch: usize,
    /// G channels are `ch * g_mult[i]`; block i maps `g_mult[i]` to `g_mult[i + 1]`.
    pub g_mult: Vec<usize>,
    /// D block i outputs `ch * d_mult[i]`; D has one block more than G, the last without
    /// downsampling.
    pub d_mult: Vec<usize>,
    pub num_classes: usize,
    pub z_dim: usize,
    /// Size of the shared class embedding.
    pub shared_dim: usize,
    /// Hierarchical latent: z split into one chunk per G block plus one for the linear layer.
    pub hier: bool,
    /// Resolutions after whose G block self-attention runs.
    pub g_attn: Vec<usize>,
    /// Resolutions after whose D block self-attention runs.
    pub d_attn: Vec<usize>,
    /// Spectral norm on the layers the reference names.
    pub sn: bool,
    pub bn_eps: f32,
    pub sn_eps: f32,
    pub rotation_head: bool,
    pub class_head: bool,
}

/// Most channels of one layer (and largest z_dim, shared_dim) a config may ask for.
pub const MAX_CHANNELS: usize = 1 << 16;
/// Most classes a config may have.
pub const MAX_CLASSES: usize = 1 << 20;

impl Config {
    /// Number of G blocks: log2(resolution / 4).
    pub fn g_blocks(&self) -> usize {
        (self.resolution / 4).trailing_zeros() as usize
    }

    /// Number of D blocks: one more than G.
    pub fn d_blocks(&self) -> usize {
        self.g_blocks() + 1
    }

    /// z values per chunk with a hierarchical latent (the whole z otherwise).
    pub fn z_chunk(&self) -> usize {
        if self.hier {
            self.z_dim / (self.g_blocks() + 1)
        } else {
            self.z_dim
        }
    }

    /// Width of the conditioning vector of each G block: a z chunk plus the embedding.
    pub fn cond_dim(&self) -> usize {
        if self.hier {
            self.z_chunk() + self.shared_dim
        } else {
            self.shared_dim
        }
    }

    /// Channels of G at each resolution, from 4x4 up.
    pub fn g_channels(&self) -> Vec<usize> {
        self.g_mult.iter().map(|m| m * self.ch).collect()
    }

    /// Output channels of each D block.
    pub fn d_channels(&self) -> Vec<usize> {
        self.d_mult.iter().map(|m| m * self.ch).collect()
    }

    /// Check every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("model config: {m}")));
        if ![16, 32, 64, 128].contains(&self.resolution) {
            return bad(format!(
                "resolution {} is not 16, 32, 64 or 128",
                self.resolution
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return bad(format!("channels {} is not 1 or 3", self.channels));
        }
        let n = self.g_blocks();
        if self.g_mult.len() != n + 1 {
            return bad(format!(
                "g_mult needs {} entries for resolution {}, has {}",
                n + 1,
                self.resolution,
                self.g_mult.len()
            ));
        }
        if self.d_mult.len() != n + 1 {
            return bad(format!(
                "d_mult needs {} entries for resolution {}, has {}",
                n + 1,
                self.resolution,
                self.d_mult.len()
            ));
        }
        if self.ch == 0 || self.g_mult.contains(&0) || self.d_mult.contains(&0) {
            return bad("ch and every channel multiplier must be positive".into());
        }
        if self.num_classes == 0 || self.z_dim == 0 || self.shared_dim == 0 {
            return bad("num_classes, z_dim and shared_dim must be positive".into());
        }
        // Bounds far above any real model, so that every size derived from the config (a
        // layer's width, a tensor's element count, a parameter count) fits in usize: a file
        // with an absurd config is refused here rather than overflowing later.
        let widest = self
            .g_mult
            .iter()
            .chain(&self.d_mult)
            .map(|&m| self.ch.checked_mul(m))
            .try_fold(0usize, |a, w| w.map(|w| a.max(w)));
        if widest.is_none_or(|w| w > MAX_CHANNELS) {
            return bad(format!(
                "ch {} times a channel multiplier exceeds {MAX_CHANNELS} channels",
                self.ch
            ));
        }
        for (name, v, max) in [
            ("num_classes", self.num_classes, MAX_CLASSES),
            ("z_dim", self.z_dim, MAX_CHANNELS),
            ("shared_dim", self.shared_dim, MAX_CHANNELS),
        ] {
            if v > max {
                return bad(format!("{name} {v} exceeds {max}"));
            }
        }
        if self.hier && !self.z_dim.is_multiple_of(n + 1) {
            return bad(format!(
                "z_dim {} does not split into {} equal chunks",
                self.z_dim,
                n + 1
            ));
        }
        let g_res: Vec<usize> = (1..=n).map(|i| 4 << i).collect();
        for r in &self.g_attn {
            if !g_res.contains(r) {
                return bad(format!(
                    "g_attn {r} is not the output resolution of a G block ({g_res:?})"
                ));
            }
        }
        let d_res: Vec<usize> = (0..=n)
            .map(|i| (self.resolution >> (i + 1)).max(4))
            .collect();
        for r in &self.d_attn {
            if !d_res.contains(r) {
                return bad(format!(
                    "d_attn {r} is not the output resolution of a D block ({d_res:?})"
                ));
            }
        }
        let positive = |x: f32| x > 0.0 && x.is_finite();
        if !positive(self.bn_eps) || !positive(self.sn_eps) {
            return bad("bn_eps and sn_eps must be positive".into());
        }
        Ok(())
    }

    /// JSON for a model file's metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serialises")
    }

    /// Parse and validate JSON from a model file.
    pub fn from_json(s: &str) -> Result<Config> {
        let c: Config = serde_json::from_str(s)
            .map_err(|e| Error::Format(format!("model config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// A preset by name: `tiny`, `tiny_rgb`, `fashion`, `fashion_small` (`fashion` at half
    /// the width, without attention: the default model's network, about 4x cheaper to train),
    /// `rgb64` (a small 64x64 RGB network for benchmarks), `imagenet64`, `imagenet128`.
    pub fn preset(name: &str) -> Result<Config> {
        let base = Config {
            resolution: 16,
            channels: 1,
            ch: 4,
            g_mult: vec![4, 4, 2],
            d_mult: vec![1, 2, 4],
            num_classes: 3,
            z_dim: 12,
            shared_dim: 6,
            hier: true,
            g_attn: vec![8],
            d_attn: vec![8],
            sn: true,
            bn_eps: 1e-4,
            sn_eps: 1e-12,
            rotation_head: true,
            class_head: true,
        };
        let c = match name {
            "tiny" => base,
            "tiny_rgb" => Config {
                channels: 3,
                ..base
            },
            "fashion" => Config {
                resolution: 32,
                channels: 1,
                ch: 16,
                g_mult: vec![4, 4, 2, 1],
                d_mult: vec![1, 2, 4, 4],
                num_classes: 10,
                z_dim: 64,
                shared_dim: 32,
                g_attn: vec![16],
                d_attn: vec![16],
                ..base
            },
            "fashion_small" => Config {
                resolution: 32,
                channels: 1,
                ch: 8,
                g_mult: vec![4, 4, 2, 1],
                d_mult: vec![1, 2, 4, 4],
                num_classes: 10,
                z_dim: 64,
                shared_dim: 32,
                g_attn: vec![],
                d_attn: vec![],
                ..base
            },
            "rgb64" => Config {
                resolution: 64,
                channels: 3,
                ch: 8,
                g_mult: vec![8, 8, 4, 2, 1],
                d_mult: vec![1, 2, 4, 8, 8],
                num_classes: 10,
                z_dim: 60,
                shared_dim: 32,
                g_attn: vec![32],
                d_attn: vec![32],
                ..base
            },
            "imagenet64" => Config {
                resolution: 64,
                channels: 3,
                ch: 96,
                g_mult: vec![16, 16, 8, 4, 2],
                d_mult: vec![1, 2, 4, 8, 16],
                num_classes: 1000,
                z_dim: 120,
                shared_dim: 128,
                g_attn: vec![32],
                d_attn: vec![32],
                ..base
            },
            "imagenet128" => Config {
                resolution: 128,
                channels: 3,
                ch: 96,
                g_mult: vec![16, 16, 8, 4, 2, 1],
                d_mult: vec![1, 2, 4, 8, 16, 16],
                num_classes: 1000,
                z_dim: 120,
                shared_dim: 128,
                g_attn: vec![64],
                d_attn: vec![64],
                ..base
            },
            other => {
                return Err(Error::InvalidArgument(format!(
                "no preset {other:?} (tiny, tiny_rgb, fashion, fashion_small, rgb64, imagenet64, \
                     imagenet128)"
            )))
            }
        };
        c.validate()?;
        Ok(c)
    }
}
