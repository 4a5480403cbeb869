//! The `fewlabels` command line. For now: `info` (the adapter) and `sample`, which opens the
//! device and says that sampling arrives with the model.

use std::process::ExitCode;

const USAGE: &str = "usage: fewlabels <command>

commands:
  info      print the GPU adapter libfewlabels runs on and its limits
  sample    sample images from the embedded default model (arrives with the model)
";

fn info() -> Result<(), fewlabels::Error> {
    let ctx = fewlabels::Context::new()?;
    println!("libfewlabels {}", env!("CARGO_PKG_VERSION"));
    println!("adapter: {}", ctx.description);
    println!(
        "limits: max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage",
        ctx.limits.max_storage_buffer_binding_size >> 20,
        ctx.limits.max_buffer_size >> 20,
        ctx.limits.max_storage_buffers_per_shader_stage
    );
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa prints a warning without it; set before any thread starts.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("info") => info(),
        Some("sample") => info().map(|_| {
            println!(
                "sampling lands with the generator and the embedded default model \
                 (issues 3 and 7); the device above is ready for it"
            )
        }),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("fewlabels: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fewlabels: {e}");
            ExitCode::FAILURE
        }
    }
}
