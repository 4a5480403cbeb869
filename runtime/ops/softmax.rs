//! softmax ops (placeholder until implemented).
