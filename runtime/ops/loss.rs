//! loss ops (placeholder until implemented).
