//! embedding ops (placeholder until implemented).
