//! The networks: configuration, parameter spec, layers, generator and discriminator, files.

pub mod config;
pub mod file;
pub mod spec;

pub use config::Config;
