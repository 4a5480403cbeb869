//! conv ops (placeholder until implemented).
