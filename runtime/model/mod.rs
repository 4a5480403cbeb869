//! The networks: configuration, parameter spec, layers, generator and discriminator, whole
//! models and their files.

mod classify;
pub mod config;
pub mod discriminator;
pub mod file;
pub mod generator;
pub mod layers;
#[allow(clippy::module_inception)]
pub mod model;
pub mod spec;

pub use config::Config;
pub use discriminator::Discriminator;
pub use generator::Generator;
pub use layers::{Grads, Mode, Weights};
pub use model::{Model, Which, DEFAULT_MODEL};
