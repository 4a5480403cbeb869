//! Fréchet distance between two Gaussians (FID on the evaluator's features), in f64.
//!
//! For N(mu1, C1) and N(mu2, C2):
//!
//! ```text
//! FID = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)
//! ```
//!
//! `(C1^1/2 C2 C1^1/2)^1/2` has the same trace as the `sqrtm(C1 C2)` of the usual
//! implementations (the two products are similar matrices when C1 is invertible, and share
//! their nonzero eigenvalues in any case), but it is symmetric positive semi-definite, so
//! both square roots come from a symmetric eigendecomposition: `A = V diag(l) V^T` gives
//! `A^1/2 = V diag(sqrt(max(l, 0))) V^T`, and the trace of the outer root is the sum of the
//! square roots of the eigenvalues. The eigendecomposition is cyclic Jacobi (rotations that
//! zero one off-diagonal pair at a time, sweeping until the off-diagonal part is negligible),
//! which is accurate to a few ulps of the largest eigenvalue for the 128x128 matrices here.

use crate::error::{Error, Result};

/// Mean and covariance of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    /// Feature length d.
    pub dim: usize,
    /// Number of vectors the statistics came from.
    pub count: usize,
    /// `[d]`.
    pub mean: Vec<f64>,
    /// `[d, d]`, row-major: the unbiased sample covariance (divided by count - 1, as
    /// `numpy.cov`).
    pub cov: Vec<f64>,
}

impl GaussianStats {
    /// Statistics of `features` `[count, dim]` (row-major); needs at least two rows and
    /// finite values.
    pub fn from_features(features: &[f32], dim: usize) -> Result<GaussianStats> {
        if dim == 0 || !features.len().is_multiple_of(dim) || features.len() / dim < 2 {
            return Err(Error::InvalidArgument(format!(
                "feature statistics: {} values do not form at least two rows of {dim}",
                features.len()
            )));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "feature statistics: value {} of row {} is not finite",
                features[i],
                i / dim
            )));
        }
        let count = features.len() / dim;
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        for m in &mut mean {
            *m /= count as f64;
        }
        // Upper triangle of sum (x - mean)(x - mean)^T, then mirrored.
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let out = &mut cov[i * dim..(i + 1) * dim];
                for j in i..dim {
                    out[j] += ci * centred[j];
                }
            }
        }
        let denom = (count - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(GaussianStats {
            dim,
            count,
            mean,
            cov,
        })
    }
}

/// Eigenvalues and eigenvectors of the symmetric `n x n` matrix `a` (row-major) by cyclic
/// Jacobi: returns `(l, v)` with `a = v diag(l) v^T`, `v` row-major with the eigenvectors as
/// columns, eigenvalues in no particular order. Only the upper triangle's symmetric part is
/// trusted: `a` is symmetrised first.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(Error::InvalidArgument(format!(
            "symmetric_eigen: {} values for a {n}x{n} matrix",
            a.len()
        )));
    }
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "symmetric_eigen: entry ({}, {}) = {} is not finite",
            i / n,
            i % n,
            a[i]
        )));
    }
    let mut m = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
        }
    }
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    const MAX_SWEEPS: usize = 100;
    for _ in 0..MAX_SWEEPS {
        let mut rotations = 0;
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                // A pair far below the rounding error of its diagonal entries is zero.
                if apq.abs() <= 1e-2 * f64::EPSILON * (app.abs() + aqq.abs()) {
                    m[p * n + q] = 0.0;
                    m[q * n + p] = 0.0;
                    continue;
                }
                rotations += 1;
                // The rotation angle phi with cot(2 phi) = theta zeroes (p, q); t = tan(phi)
                // is the smaller root of t^2 + 2 theta t - 1 = 0 (for huge theta, 1 / 2 theta).
                let theta = (aqq - app) / (2.0 * apq);
                let t = if theta.abs() < 1e150 {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                } else {
                    0.5 / theta
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // m = J^T m J and v = v J, with J the identity except J[p][p] = J[q][q] = c,
                // J[p][q] = s, J[q][p] = -s.
                for k in 0..n {
                    let (x, y) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * x - s * y;
                    m[k * n + q] = s * x + c * y;
                }
                for k in 0..n {
                    let (x, y) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * x - s * y;
                    m[q * n + k] = s * x + c * y;
                }
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                for k in 0..n {
                    let (x, y) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * x - s * y;
                    v[k * n + q] = s * x + c * y;
                }
            }
        }
        if rotations == 0 {
            let l = (0..n).map(|i| m[i * n + i]).collect();
            return Ok((l, v));
        }
    }
    Err(Error::InvalidArgument(format!(
        "symmetric_eigen: no convergence after {MAX_SWEEPS} Jacobi sweeps on a {n}x{n} matrix"
    )))
}

/// The symmetric square root of a symmetric positive semi-definite `n x n` matrix:
/// `V diag(sqrt(max(l, 0))) V^T` (negative eigenvalues, from rounding, count as 0).
pub fn sqrtm_psd(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let (l, v) = symmetric_eigen(a, n)?;
    let r: Vec<f64> = l.iter().map(|&x| x.max(0.0).sqrt()).collect();
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n).map(|k| v[i * n + k] * r[k] * v[j * n + k]).sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    Ok(out)
}

/// `a b` for `n x n` row-major matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let x = a[i * n + k];
            if x == 0.0 {
                continue;
            }
            let row = &b[k * n..(k + 1) * n];
            for (o, &y) in out[i * n..(i + 1) * n].iter_mut().zip(row) {
                *o += x * y;
            }
        }
    }
    out
}

/// The Fréchet distance between N(mu1, cov1) and N(mu2, cov2) (module docs); means `[d]`,
/// covariances `[d, d]` row-major, symmetric positive semi-definite.
pub fn fid(mu1: &[f64], cov1: &[f64], mu2: &[f64], cov2: &[f64]) -> Result<f64> {
    let d = mu1.len();
    if d == 0 || mu2.len() != d || cov1.len() != d * d || cov2.len() != d * d {
        return Err(Error::InvalidArgument(format!(
            "fid: means of {} and {} values and covariances of {} and {} values do not \
             describe two Gaussians of one dimension d > 0",
            mu1.len(),
            mu2.len(),
            cov1.len(),
            cov2.len()
        )));
    }
    for (name, x) in [("mu1", mu1), ("cov1", cov1), ("mu2", mu2), ("cov2", cov2)] {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "fid: {name}[{i}] = {} is not finite",
                x[i]
            )));
        }
    }
    let mean_term: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let s1 = sqrtm_psd(cov1, d)?;
    let inner = matmul(&matmul(&s1, cov2, d), &s1, d);
    let (l, _) = symmetric_eigen(&inner, d)?;
    let tr_sqrt: f64 = l.iter().map(|&x| x.max(0.0).sqrt()).sum();
    Ok(mean_term + trace(cov1) + trace(cov2) - 2.0 * tr_sqrt)
}

/// [`fid`] of two sets of statistics.
pub fn fid_stats(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    if a.dim != b.dim {
        return Err(Error::InvalidArgument(format!(
            "fid: statistics of {}-long and {}-long features",
            a.dim, b.dim
        )));
    }
    fid(&a.mean, &a.cov, &b.mean, &b.cov)
}
