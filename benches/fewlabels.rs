//! `cargo bench --bench fewlabels [-- --quick] [-- --write-docs] [-- --iters N] [-- --gblock]`
//!
//! Measures G sampling, D forward, one s3gan-co train step and the GEMM/conv kernels on the
//! current adapter, runs the same with PyTorch (benches/torch_bench.py, same weights, same
//! batch) when a Python with PyTorch is found, and prints one table. `--write-docs` replaces
//! the generated section of docs/PERFORMANCE.md; `--gblock` measures only the G block of
//! issue 6's table. See docs/PERFORMANCE.md.

mod suite;

use fewlabels::{Error, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and then gets the quick mode (tiny sizes, no PyTorch) so the test run stays short.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let write_docs = args.iter().any(|a| a == "--write-docs");
    let mut opts = if quick {
        suite::Options::quick()
    } else {
        suite::Options::full()
    };
    if args.iter().any(|a| a == "--no-torch") {
        opts.python = None;
    }
    opts.only_gblock = args.iter().any(|a| a == "--gblock");
    if let Some(i) = args.iter().position(|a| a == "--iters") {
        opts.iters = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::InvalidArgument("--iters needs a positive number".into()))?;
    }
    let report = suite::run(&opts)?;
    let body = report.markdown();
    println!("{body}");
    if write_docs && !quick && !opts.only_gblock {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PERFORMANCE.md");
        let doc = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{path}: {e}")))?;
        let stamp = format!(
            "Written by `cargo bench --bench fewlabels -- --write-docs` ({} timed runs per item \
             after a warm-up; medians).\n\n",
            opts.iters
        );
        std::fs::write(path, suite::splice(&doc, &(stamp + &body)))
            .map_err(|e| Error::Io(format!("{path}: {e}")))?;
        println!("updated {path}");
    }
    Ok(())
}
