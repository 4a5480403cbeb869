//! The networks: configuration, generator and discriminator.

pub mod config;
pub mod file;

pub use config::Config;
