//! batchnorm ops (placeholder until implemented).
