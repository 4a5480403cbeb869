//! resample ops (placeholder until implemented).
