//! spectral_norm ops (placeholder until implemented).
