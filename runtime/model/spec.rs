//! The parameter and state tensors a configuration implies, by name and shape. The names are
//! those of tests/reference/biggan.py, so a PyTorch state dict and a model file agree.
//!
//! Kinds: `Weight`/`Bias`/`Gain` are trained; `U` is spectral-norm state; `Stat` is a standing
//! batch-norm statistic (mean or variance).

use super::config::Config;
use std::collections::BTreeMap;

/// What a named tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Weight,
    Bias,
    /// Attention's learnt scale.
    Gain,
    /// Spectral-norm vector u.
    U,
    /// Standing batch-norm mean or variance.
    Stat,
}

impl Kind {
    /// Whether the optimiser updates it.
    pub fn trained(self) -> bool {
        matches!(self, Kind::Weight | Kind::Bias | Kind::Gain)
    }
}

/// One named tensor of a network.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub shape: Vec<usize>,
    pub kind: Kind,
}

/// Ordered map of name -> entry.
pub type Spec = BTreeMap<String, Entry>;

struct Builder<'a> {
    cfg: &'a Config,
    spec: Spec,
}

impl Builder<'_> {
    fn put(&mut self, name: String, shape: Vec<usize>, kind: Kind) {
        self.spec.insert(name, Entry { shape, kind });
    }

    /// A weight (with optional bias) and its spectral-norm u when SN is on.
    fn layer(&mut self, name: &str, shape: Vec<usize>, bias: bool, sn: bool) {
        let out = shape[0];
        self.put(format!("{name}.weight"), shape, Kind::Weight);
        if bias {
            self.put(format!("{name}.bias"), vec![out], Kind::Bias);
        }
        if sn && self.cfg.sn {
            self.put(format!("{name}.u"), vec![out], Kind::U);
        }
    }

    fn conv(&mut self, name: &str, cout: usize, cin: usize, k: usize, bias: bool) {
        self.layer(name, vec![cout, cin, k, k], bias, true);
    }

    fn cbn(&mut self, name: &str, c: usize) {
        let cond = self.cfg.cond_dim();
        self.layer(&format!("{name}.gain"), vec![c, cond], false, true);
        self.layer(&format!("{name}.bias"), vec![c, cond], false, true);
        self.put(format!("{name}.mean"), vec![c], Kind::Stat);
        self.put(format!("{name}.var"), vec![c], Kind::Stat);
    }

    fn attention(&mut self, name: &str, c: usize) {
        let (c8, c2) = attention_widths(c);
        self.conv(&format!("{name}.theta"), c8, c, 1, false);
        self.conv(&format!("{name}.phi"), c8, c, 1, false);
        self.conv(&format!("{name}.g"), c2, c, 1, false);
        self.conv(&format!("{name}.o"), c, c2, 1, false);
        self.put(format!("{name}.gamma"), vec![1], Kind::Gain);
    }
}

/// Widths of attention's key/query and value projections for `c` channels: C/8 and C/2,
/// at least 1 (tiny test models have fewer than 8 channels).
pub fn attention_widths(c: usize) -> (usize, usize) {
    ((c / 8).max(1), (c / 2).max(1))
}

/// Whether D block `i` has a 1x1 shortcut convolution.
pub fn d_has_shortcut(cfg: &Config, i: usize) -> bool {
    let cin = if i == 0 {
        cfg.channels
    } else {
        cfg.d_channels()[i - 1]
    };
    let down = i + 1 < cfg.d_blocks();
    i == 0 || down || cin != cfg.d_channels()[i]
}

/// Output resolution of D block `i`.
pub fn d_block_resolution(cfg: &Config, i: usize) -> usize {
    (cfg.resolution >> (i + 1)).max(4)
}

/// The generator's tensors, names prefixed `prefix` (`G` or `G_ema`).
pub fn generator(cfg: &Config, prefix: &str) -> Spec {
    let mut b = Builder {
        cfg,
        spec: Spec::new(),
    };
    let ch = cfg.g_channels();
    let zc = cfg.z_chunk();
    b.layer(
        &format!("{prefix}.linear"),
        vec![16 * ch[0], zc],
        true,
        true,
    );
    b.put(
        format!("{prefix}.shared.weight"),
        vec![cfg.num_classes, cfg.shared_dim],
        Kind::Weight,
    );
    for i in 0..cfg.g_blocks() {
        let (cin, cout) = (ch[i], ch[i + 1]);
        let p = format!("{prefix}.blocks.{i}");
        b.cbn(&format!("{p}.bn1"), cin);
        b.conv(&format!("{p}.conv1"), cout, cin, 3, true);
        b.cbn(&format!("{p}.bn2"), cout);
        b.conv(&format!("{p}.conv2"), cout, cout, 3, true);
        b.conv(&format!("{p}.conv_sc"), cout, cin, 1, true);
        if cfg.g_attn.contains(&(4 << (i + 1))) {
            b.attention(&format!("{p}.attn"), cout);
        }
    }
    let last = *ch.last().expect("validated config has channels");
    b.put(format!("{prefix}.out_bn.weight"), vec![last], Kind::Weight);
    b.put(format!("{prefix}.out_bn.bias"), vec![last], Kind::Bias);
    b.put(format!("{prefix}.out_bn.mean"), vec![last], Kind::Stat);
    b.put(format!("{prefix}.out_bn.var"), vec![last], Kind::Stat);
    b.conv(&format!("{prefix}.out_conv"), cfg.channels, last, 3, true);
    b.spec
}

/// The discriminator's tensors (prefix `D`).
pub fn discriminator(cfg: &Config) -> Spec {
    let mut b = Builder {
        cfg,
        spec: Spec::new(),
    };
    let ch = cfg.d_channels();
    for i in 0..cfg.d_blocks() {
        let cin = if i == 0 { cfg.channels } else { ch[i - 1] };
        let cout = ch[i];
        let p = format!("D.blocks.{i}");
        b.conv(&format!("{p}.conv1"), cout, cin, 3, true);
        b.conv(&format!("{p}.conv2"), cout, cout, 3, true);
        if d_has_shortcut(cfg, i) {
            b.conv(&format!("{p}.conv_sc"), cout, cin, 1, true);
        }
        if cfg.d_attn.contains(&d_block_resolution(cfg, i)) {
            b.attention(&format!("{p}.attn"), cout);
        }
    }
    let c = *ch.last().expect("validated config has channels");
    b.layer("D.linear", vec![1, c], true, true);
    b.layer("D.embed", vec![cfg.num_classes, c], false, true);
    if cfg.rotation_head {
        b.layer("D.rotation", vec![4, c], true, true);
    }
    if cfg.class_head {
        b.layer("D.classifier", vec![cfg.num_classes, c], true, true);
    }
    b.spec
}

/// Number of trained values in a spec.
pub fn parameter_count(spec: &Spec) -> usize {
    spec.values()
        .filter(|e| e.kind.trained())
        .map(|e| e.shape.iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_expected_sizes() {
        for name in ["tiny", "tiny_rgb", "fashion", "imagenet64", "imagenet128"] {
            let cfg = Config::preset(name).unwrap();
            let g = parameter_count(&generator(&cfg, "G"));
            let d = parameter_count(&discriminator(&cfg));
            eprintln!("{name}: G {g} D {d}");
            assert!(g > 0 && d > 0);
        }
        let cfg = Config::preset("imagenet128").unwrap();
        let g = parameter_count(&generator(&cfg, "G")) as f64 / 1e6;
        let d = parameter_count(&discriminator(&cfg)) as f64 / 1e6;
        // BigGAN at 128x128: G about 70M, D about 88M parameters.
        assert!((g - 70.0).abs() < 5.0, "G has {g}M");
        assert!((d - 88.0).abs() < 5.0, "D has {d}M");
    }
}
