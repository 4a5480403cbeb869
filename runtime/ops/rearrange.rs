//! rearrange ops (placeholder until implemented).
