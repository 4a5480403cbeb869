//! A counter-based random number generator (Philox 4x32-10): every value is a pure function
//! of (seed, stream, index), so z, labels and rotations are reproducible bit for bit, on any
//! machine, and any part of a sequence can be drawn without the rest.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox 4x32 with 10 rounds: 128-bit counter, 64-bit key -> four u32.
pub fn philox(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// Streams keep independent uses of one seed apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stream {
    Z = 1,
    Labels = 2,
    Rotations = 3,
    Data = 4,
    Init = 5,
}

/// Four u32 for (seed, stream, index, attempt).
pub fn bits(seed: u64, stream: Stream, index: u64, attempt: u32) -> [u32; 4] {
    philox(
        [index as u32, (index >> 32) as u32, attempt, stream as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// Uniform in the open interval (0, 1) from 24 random bits.
pub fn unit(x: u32) -> f64 {
    ((x >> 8) as f64 + 0.5) / (1u64 << 24) as f64
}

/// A standard normal value for (seed, stream, index, attempt), by Box-Muller in f64.
pub fn normal(seed: u64, stream: Stream, index: u64, attempt: u32) -> f64 {
    let b = bits(seed, stream, index, attempt);
    let u1 = ((b[0] as u64) << 21 | (b[1] as u64) >> 11) as f64 / (1u64 << 53) as f64;
    let u1 = u1.max(f64::MIN_POSITIVE);
    let u2 = unit(b[2]);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `n` values of a standard normal truncated to [-2, 2] (by rejection), times `truncation`.
/// Value i depends only on (seed, i): the first k of n values equal the n = k draw.
pub fn truncated_normal(seed: u64, n: usize, truncation: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| truncated_normal_at(seed, i, truncation))
        .collect()
}

/// Value `i` of [`truncated_normal`] alone (so a caller can fill its own buffer).
pub fn truncated_normal_at(seed: u64, i: u64, truncation: f32) -> f32 {
    let mut attempt = 0;
    loop {
        let z = normal(seed, Stream::Z, i, attempt);
        if z.abs() <= 2.0 {
            return (z * truncation as f64) as f32;
        }
        attempt += 1;
    }
}

/// A uniform integer in [0, n) for (seed, stream, index), without modulo bias worth noting
/// (64 random bits reduced by multiplication).
pub fn below(seed: u64, stream: Stream, index: u64, n: u32) -> u32 {
    let b = bits(seed, stream, index, 0);
    let x = (b[0] as u64) << 32 | b[1] as u64;
    ((x as u128 * n as u128) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_random123_known_answer() {
        // Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
        assert_eq!(
            philox([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn truncated_normal_is_bounded_scaled_and_prefix_stable() {
        let a = truncated_normal(7, 4000, 1.0);
        assert!(a.iter().all(|z| z.abs() <= 2.0));
        let mean = a.iter().map(|&z| z as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&z| (z as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        // A standard normal truncated to [-2, 2] has variance about 0.774.
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 0.774).abs() < 0.05, "{var}");
        let b = truncated_normal(7, 10, 0.5);
        for i in 0..10 {
            assert_eq!(b[i], (a[i] as f64 * 0.5) as f32);
        }
        assert_ne!(truncated_normal(8, 10, 1.0), truncated_normal(7, 10, 1.0));
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut counts = [0u32; 10];
        for i in 0..10000 {
            counts[below(3, Stream::Labels, i, 10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }
}
