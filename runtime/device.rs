//! The device context: wgpu instance, adapter, device and queue, plus the pipeline cache and
//! the buffer pool that every op uses.
//!
//! Selection: `FEWLABELS_BACKEND` (`vulkan`, `metal`, `dx12`, `gl`) restricts the backend;
//! `FEWLABELS_ADAPTER` keeps only adapters whose name contains it (case-insensitive).
//! Without them the backends are tried in the order Vulkan, Metal, DX12, GL, and within a
//! backend a hardware GPU is preferred over a software one.

use crate::error::{Error, Result};
use crate::kernel::{ArenaPool, PipelineCache, Profile, TexturePool};
use crate::tensor::BufferPool;
use std::sync::{Arc, Mutex};

/// Errors reported asynchronously by wgpu, collected until the next check.
#[derive(Default)]
pub(crate) struct ErrorSink {
    pub(crate) messages: Mutex<Vec<String>>,
    pub(crate) lost: Mutex<Option<String>>,
}

impl ErrorSink {
    /// Take the pending error, if any, as an [`Error::Device`].
    pub(crate) fn take(&self) -> Result<()> {
        if let Some(m) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::Device(format!("device lost: {m}")));
        }
        let mut msgs = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if msgs.is_empty() {
            Ok(())
        } else {
            let all = msgs.join("; ");
            msgs.clear();
            Err(Error::Device(all))
        }
    }
}

/// What the runtime knows about the adapter it runs on.
#[derive(Debug, Clone)]
pub struct AdapterDescription {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl std::fmt::Display for AdapterDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// The device context. Cheap to share across threads (`&Context` is enough for every op).
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: Option<wgpu::Adapter>,
    pub description: AdapterDescription,
    pub limits: wgpu::Limits,
    pub(crate) pipelines: PipelineCache,
    pub(crate) pool: BufferPool,
    pub(crate) arenas: ArenaPool,
    pub(crate) textures: TexturePool,
    /// Derived tensors (repacked conv weights) kept across recorders.
    pub(crate) derived: crate::kernel::DerivedCache,
    /// The device has subgroups of at least 8 invocations (see [`Context::subgroups`]).
    subgroups: bool,
    /// Default of [`Recorder::set_cpu_kernels`](crate::kernel::Recorder::set_cpu_kernels).
    cpu_kernels: bool,
    /// Default of [`Recorder::set_winograd`](crate::kernel::Recorder::set_winograd).
    winograd: Option<bool>,
    pub(crate) profile: Profile,
    pub(crate) errors: Arc<ErrorSink>,
    /// Compile new kernels ahead on a second device (see `warm.rs`).
    pub(crate) warm_on: bool,
    /// That second device, opened on first need.
    pub(crate) warm_helper: std::sync::OnceLock<Option<Arc<Context>>>,
    /// Kernels compiling on that device in the background (see `Context::warm_behind`).
    pub(crate) warm_behind: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn parse_backend(s: &str) -> Result<wgpu::Backends> {
    match s.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::InvalidArgument(format!(
            "FEWLABELS_BACKEND={other:?} is not one of vulkan, metal, dx12, gl"
        ))),
    }
}

fn describe(info: &wgpu::AdapterInfo) -> AdapterDescription {
    AdapterDescription {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
    }
}

impl Context {
    /// Open the best adapter, honouring `FEWLABELS_BACKEND` and `FEWLABELS_ADAPTER`.
    pub fn new() -> Result<Context> {
        let backend = std::env::var("FEWLABELS_BACKEND").ok();
        let filter = std::env::var("FEWLABELS_ADAPTER").ok();
        Self::with_options(backend.as_deref(), filter.as_deref())
    }

    /// Open an adapter of the given backend (name as in `FEWLABELS_BACKEND`), whose name contains
    /// `adapter_filter` (case-insensitive). `None` means any.
    pub fn with_options(backend: Option<&str>, adapter_filter: Option<&str>) -> Result<Context> {
        let order: Vec<wgpu::Backends> = match backend {
            Some(b) if !b.trim().is_empty() => vec![parse_backend(b)?],
            _ => vec![
                wgpu::Backends::VULKAN,
                wgpu::Backends::METAL,
                wgpu::Backends::DX12,
                wgpu::Backends::GL,
            ],
        };
        let all = order.iter().fold(wgpu::Backends::empty(), |a, b| a | *b);
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = all;
        desc.flags = wgpu::InstanceFlags::default().with_env();
        let instance = wgpu::Instance::new(desc);
        let filter = adapter_filter.map(|f| f.to_ascii_lowercase());
        let mut seen = Vec::new();
        for b in order {
            let mut adapters = pollster::block_on(instance.enumerate_adapters(b));
            adapters.retain(|a| {
                let info = a.get_info();
                seen.push(format!("{} ({:?})", info.name, info.backend));
                match &filter {
                    Some(f) => info.name.to_ascii_lowercase().contains(f.as_str()),
                    None => true,
                }
            });
            // Hardware first, software (lavapipe, WARP) last.
            adapters.sort_by_key(|a| match a.get_info().device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            });
            if let Some(adapter) = adapters.into_iter().next() {
                return Self::from_adapter(adapter);
            }
        }
        let mut msg = String::from("no usable GPU adapter was found");
        if !seen.is_empty() {
            msg.push_str(&format!(
                " (present but filtered out by FEWLABELS_ADAPTER/FEWLABELS_BACKEND: {})",
                seen.join(", ")
            ));
        }
        msg.push_str(
            ". On Linux without a GPU install the software Vulkan driver: \
             `sudo apt-get install mesa-vulkan-drivers libvulkan1`",
        );
        Err(Error::NoAdapter(msg))
    }

    /// Open a device on a chosen adapter with the adapter's own limits.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Context> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroups of at least 8 invocations let the CPU conv kernels share weights.
        let features = if adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 8
        {
            wgpu::Features::SUBGROUP
        } else {
            wgpu::Features::empty()
        };
        let dd = wgpu::DeviceDescriptor {
            label: Some("fewlabels"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&dd))
            .map_err(|e| Error::NoAdapter(format!("could not open {}: {e}", info.name)))?;
        let description = describe(&info);
        log::info!("fewlabels: using adapter {description}");
        let mut ctx = Self::assemble(device, queue, Some(adapter), description);
        ctx.subgroups = features.contains(wgpu::Features::SUBGROUP)
            && std::env::var("FEWLABELS_SUBGROUPS").as_deref() != Ok("0");
        Ok(ctx)
    }

    /// Use a device and queue that the host application already owns (a game engine, say).
    /// The device must have been created with limits large enough for the models used; the
    /// runtime reads them from `device.limits()`.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: Option<wgpu::Adapter>,
    ) -> Context {
        let description = match &adapter {
            Some(a) => describe(&a.get_info()),
            None => AdapterDescription {
                name: "host-provided device".into(),
                backend: "unknown".into(),
                device_type: "unknown".into(),
                driver: String::new(),
            },
        };
        log::info!("fewlabels: using host device {description}");
        Self::assemble(device, queue, adapter, description)
    }

    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: Option<wgpu::Adapter>,
        description: AdapterDescription,
    ) -> Context {
        let errors = Arc::new(ErrorSink::default());
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let msg = e.to_string();
            log::error!("fewlabels: wgpu error: {msg}");
            sink.messages
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(msg);
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *sink.lost.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{reason:?}: {msg}"));
        });
        let limits = device.limits();
        let cpu_kernels = match std::env::var("FEWLABELS_KERNELS").as_deref().map(str::trim) {
            Ok("cpu") => true,
            Ok("gpu") => false,
            _ => description.device_type == "Cpu",
        };
        let winograd = match std::env::var("FEWLABELS_WINOGRAD")
            .as_deref()
            .map(str::trim)
        {
            Ok("1") => Some(true),
            Ok("0") => Some(false),
            _ => None,
        };
        let profile = Profile::default();
        if std::env::var("FEWLABELS_PROFILE").is_ok_and(|v| v.trim() == "1") {
            profile.on.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let warm_on = crate::warm::enabled(&description, adapter.is_some());
        Context {
            device,
            queue,
            adapter,
            description,
            limits,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            arenas: ArenaPool::default(),
            textures: TexturePool::default(),
            derived: Default::default(),
            subgroups: false,
            cpu_kernels,
            winograd,
            profile,
            errors,
            warm_on,
            warm_helper: Default::default(),
            warm_behind: Default::default(),
        }
    }

    /// Whether recorders start with the kernels tuned for CPU adapters (see
    /// [`Recorder::set_cpu_kernels`](crate::kernel::Recorder::set_cpu_kernels)): true on a CPU
    /// adapter such as lavapipe; `FEWLABELS_KERNELS=cpu` or `gpu` overrides it.
    pub fn cpu_kernels(&self) -> bool {
        self.cpu_kernels
    }

    /// What recorders start with for [`Recorder::set_winograd`](crate::kernel::Recorder::set_winograd):
    /// `None` (by shape) unless `FEWLABELS_WINOGRAD` is `1` (always) or `0` (never).
    pub fn winograd(&self) -> Option<bool> {
        self.winograd
    }

    /// Whether kernels may use subgroup operations: the device was opened by
    /// [`Context::from_adapter`] (or `new`) on an adapter whose subgroups have at least 8
    /// invocations, and `FEWLABELS_SUBGROUPS` is not `0`. False for devices the host hands in.
    pub fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Largest number of bytes one storage binding may cover on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Wait until all submitted work has finished, and report any device error.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("poll failed: {e}")))?;
        self.errors.take()
    }

    /// Report (and clear) any error the device raised since the last check.
    pub fn check(&self) -> Result<()> {
        self.errors.take()
    }
}
