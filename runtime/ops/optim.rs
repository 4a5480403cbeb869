//! optim ops (placeholder until implemented).
