//! The networks: configuration, generator and discriminator.

pub mod config;
pub mod file;
pub mod spec;

pub use config::Config;
