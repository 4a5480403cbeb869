//! gemm ops (placeholder until implemented).
