//! PCA baseline: the best linear K-dimensional code for the training windows.
//!
//! Fitted on (normalized) training windows: mean window, covariance, symmetric eigendecomposition
//! (nalgebra); the top-K eigenvectors are the code basis. `z = Vᵀ(x − μ)`, `x̂ = μ + V z`.

use anyhow::{ensure, Result};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use funnel_artifacts::Windows;

#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: DVector<f64>,
    /// `[dim, k]`, orthonormal columns sorted by decreasing variance.
    pub components: DMatrix<f64>,
    /// Variance along each component.
    pub explained_variance: Vec<f64>,
}

impl Pca {
    pub fn fit(windows: &Windows, k: usize) -> Result<Pca> {
        let d = windows.dim;
        let n = windows.len();
        ensure!(n >= 1, "PCA needs at least one training window");
        ensure!(k >= 1 && k <= d, "PCA: K = {k} must be in 1..={d}");
        let x = DMatrix::<f64>::from_fn(n, d, |i, j| windows.get(i)[j] as f64);
        let mean = DVector::<f64>::from_fn(d, |j, _| x.column(j).mean());
        let mut centered = x;
        for j in 0..d {
            let m = mean[j];
            centered.column_mut(j).add_scalar_mut(-m);
        }
        let cov = (centered.transpose() * &centered) / (n.max(2) - 1) as f64;
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let components = DMatrix::<f64>::from_fn(d, k, |i, j| eig.eigenvectors[(i, order[j])]);
        let explained_variance = order[..k].iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        Ok(Pca { mean, components, explained_variance })
    }

    pub fn k(&self) -> usize {
        self.components.ncols()
    }

    pub fn project(&self, window: &[f32]) -> Vec<f64> {
        let x = DVector::<f64>::from_iterator(window.len(), window.iter().map(|&v| v as f64)) - &self.mean;
        (self.components.transpose() * x).iter().copied().collect()
    }

    pub fn reconstruct_code(&self, z: &[f64]) -> Vec<f32> {
        let z = DVector::<f64>::from_column_slice(z);
        (&self.components * z + &self.mean).iter().map(|&v| v as f32).collect()
    }

    /// Projects and reconstructs every window.
    pub fn reconstruct(&self, windows: &Windows) -> Windows {
        let mut out = Vec::with_capacity(windows.data.len());
        for w in windows.iter() {
            out.extend(self.reconstruct_code(&self.project(w)));
        }
        Windows::new(windows.dim, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_rank_k_signal_exactly() {
        // Windows = offset + 3 fixed patterns with random coefficients → rank 3 around the mean.
        let d = 16;
        let patterns: Vec<Vec<f32>> =
            (0..3).map(|p| (0..d).map(|t| ((t * (p + 1)) as f32 * 0.4).sin() + p as f32 * 0.1).collect()).collect();
        let mut data = Vec::new();
        let mut s = 12345u32;
        let mut rnd = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        for _ in 0..60 {
            let c: Vec<f32> = (0..3).map(|_| rnd()).collect();
            for t in 0..d {
                data.push(2.0 + c.iter().zip(&patterns).map(|(c, p)| c * p[t]).sum::<f32>());
            }
        }
        let w = Windows::new(d, data);
        let train = w.slice(0..40);
        let held = w.slice(40..60);
        let pca = Pca::fit(&train, 3).unwrap();
        let r = pca.reconstruct(&held);
        let max = held.data.iter().zip(&r.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "max error {max}");
        // Fewer components cannot represent it.
        let r2 = Pca::fit(&train, 2).unwrap().reconstruct(&held);
        let max2 = held.data.iter().zip(&r2.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max2 > 1e-2);
        assert!(pca.explained_variance.windows(2).all(|v| v[0] >= v[1]));
    }

    #[test]
    fn bad_k() {
        let w = Windows::new(4, vec![0.0; 8]);
        assert!(Pca::fit(&w, 0).is_err());
        assert!(Pca::fit(&w, 5).is_err());
    }
}
