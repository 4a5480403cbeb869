//! The C ABI: the committed header equals a fresh cbindgen run and compiles as C99 and C++;
//! the C example and the bad-call C test build against libfewlabels.so and pass; the calls
//! agree with the Rust API, also from several threads at once.

use fewlabels::capi::*;
use fewlabels::model::model::chw_to_rgba8;
use fewlabels::model::{Config, Model, Which};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>: the test binary lives in its deps/ folder, libfewlabels.so beside it.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn work_dir() -> PathBuf {
    let d = lib_dir().join("capi-test");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The libfewlabels.so this test run built. `cargo test` leaves it in target/<profile>/deps
/// (only `cargo build` copies it up to target/<profile>), so take the newer of the two.
fn shared_lib() -> PathBuf {
    let candidates = [
        lib_dir().join("deps/libfewlabels.so"),
        lib_dir().join("libfewlabels.so"),
    ];
    let newest = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone());
    newest.unwrap_or_else(|| {
        panic!(
            "libfewlabels.so is missing from {}: cargo builds it with the library (crate-type \
             cdylib); run `cargo build`",
            lib_dir().display()
        )
    })
}

const C_FLAGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic"];

/// Compile and link a C file against libfewlabels.so; returns the executable.
fn build_c(src: &Path, name: &str) -> PathBuf {
    let so = shared_lib();
    let out = work_dir().join(name);
    let dir = so.parent().unwrap();
    let res = Command::new("cc")
        .arg("-std=c99")
        .args(C_FLAGS)
        .arg("-I")
        .arg(root().join("include"))
        .arg(src)
        .arg("-L")
        .arg(dir)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .args(["-l:libfewlabels.so", "-lm", "-o"])
        .arg(&out)
        .output()
        .expect("running cc");
    assert!(
        res.status.success(),
        "cc {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

fn run(exe: &Path, args: &[&Path]) -> std::process::Output {
    run_env(exe, args, &[])
}

fn run_env(exe: &Path, args: &[&Path], env: &[(&str, &str)]) -> std::process::Output {
    // cargo puts target/<profile> on LD_LIBRARY_PATH, which outranks the rpath and may hold an
    // older libfewlabels.so than the one this run built: point it at the right one.
    let so = shared_lib();
    Command::new(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", so.parent().unwrap())
        .envs(env.iter().copied())
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .current_dir(work_dir())
        .output()
        .expect("running a C test program")
}

struct Files {
    tiny: PathBuf,
    truncated: PathBuf,
    empty: PathBuf,
    missing: PathBuf,
    no_d: PathBuf,
    no_class_head: PathBuf,
}

/// Model files made once per test process.
fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let ctx = shared_context().expect("a device (lavapipe will do)");
        let d = work_dir();
        let cfg = Config::preset("tiny").unwrap();
        let tiny = d.join("tiny.safetensors");
        Model::init(ctx, &cfg, 1).unwrap().save(ctx, &tiny).unwrap();
        let bytes = std::fs::read(&tiny).unwrap();
        let truncated = d.join("truncated.safetensors");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let empty = d.join("empty.safetensors");
        std::fs::write(&empty, b"").unwrap();
        let missing = d.join("no-such-model.safetensors");
        let _ = std::fs::remove_file(&missing);
        let no_d = d.join("no_d.safetensors");
        let mut m = Model::init(ctx, &cfg, 2).unwrap();
        m.d = None;
        m.save(ctx, &no_d).unwrap();
        let no_class_head = d.join("no_class_head.safetensors");
        let cfg2 = Config {
            class_head: false,
            ..cfg
        };
        Model::init(ctx, &cfg2, 3)
            .unwrap()
            .save(ctx, &no_class_head)
            .unwrap();
        Files {
            tiny,
            truncated,
            empty,
            missing,
            no_d,
            no_class_head,
        }
    })
}

fn generate_header() -> String {
    let cfg = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(cfg)
        .with_src(root().join("runtime/capi.rs"))
        .generate()
        .expect("cbindgen failed on runtime/capi.rs");
    let mut buf = Vec::new();
    bindings.write(&mut buf);
    String::from_utf8(buf).unwrap()
}

#[test]
fn header_is_current() {
    let path = root().join("include/fewlabels.h");
    let fresh = generate_header();
    if std::env::var_os("FEWLABELS_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/fewlabels.h differs from what cbindgen generates from runtime/capi.rs.\n\
         Regenerate it with: FEWLABELS_BLESS=1 cargo test --test capi header_is_current"
    );
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let src = work_dir().join("header_only.c");
    std::fs::write(
        &src,
        "#include \"fewlabels.h\"\n\
         int main(void) {\n\
             fl_status s = FL_OK;\n\
             fl_model_info info;\n\
             fl_model *m = 0;\n\
             (void)info; (void)m;\n\
             return s == FL_ERR_PANIC || fl_version()[0] == 0;\n\
         }\n",
    )
    .unwrap();
    for (compiler, std) in [
        ("cc", "-std=c99"),
        ("c++", "-std=c++11"),
        ("c++", "-std=c++17"),
    ] {
        let mut cmd = Command::new(compiler);
        cmd.arg(std).args(C_FLAGS).arg("-fsyntax-only");
        if compiler == "c++" {
            cmd.args(["-x", "c++"]);
        }
        let res = cmd
            .arg("-I")
            .arg(root().join("include"))
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
        assert!(
            res.status.success(),
            "{compiler} {std} rejects the header:\n{}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
}

#[test]
fn c_example_samples_a_grid_and_reports_the_missing_default_model() {
    let f = files();
    let exe = build_c(&root().join("examples/c/sample.c"), "sample");
    let grid = work_dir().join("grid.pgm");
    let _ = std::fs::remove_file(&grid);
    let res = run(&exe, &[&f.tiny, &grid]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "sample failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("3 classes, z_dim 12, 1 x 16 x 16"),
        "{stdout}"
    );
    // 3 classes: a 2 x 2 grid of 16 x 16 images with 1-pixel gaps.
    let bytes = std::fs::read(&grid).unwrap();
    let header = b"P5\n33 33\n255\n";
    assert_eq!(&bytes[..header.len()], header);
    assert_eq!(bytes.len(), header.len() + 33 * 33);
    let pixels = &bytes[header.len()..];
    assert!(
        pixels.iter().any(|&p| p != pixels[0]),
        "the grid is a single colour"
    );

    let res = run(&exe, &[]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FL_ERR_NO_DEFAULT_MODEL") && stderr.contains("default model"),
        "{stderr}"
    );
}

#[test]
fn c_bad_calls_fail_cleanly_and_valid_calls_still_work() {
    let f = files();
    let exe = build_c(&root().join("tests/c/bad_calls.c"), "bad_calls");
    let res = run(
        &exe,
        &[
            &f.tiny,
            &f.truncated,
            &f.empty,
            &f.missing,
            &f.no_d,
            &f.no_class_head,
        ],
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "bad_calls failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// A loaded model handle, freed on drop.
struct Handle(*mut fl_model);

// SAFETY: the C ABI documents that a model may be sampled from several threads at once.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { fl_model_free(self.0) }
    }
}

fn load(path: &Path) -> Handle {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = std::ptr::null_mut();
    let st = unsafe { fl_model_load(c.as_ptr(), &mut m) };
    assert_eq!(st, 0, "{}", last_error());
    assert!(!m.is_null());
    Handle(m)
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(fl_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn info(h: &Handle) -> fl_model_info {
    let mut i = fl_model_info::default();
    assert_eq!(unsafe { fl_model_get_info(h.0, &mut i) }, 0);
    i
}

fn make_z(h: &Handle, seed: u64, n: u32) -> Vec<f32> {
    let zd = info(h).z_dim as usize;
    let mut z = vec![0f32; n as usize * zd];
    assert_eq!(unsafe { fl_make_z(h.0, seed, 0.8, n, z.as_mut_ptr()) }, 0);
    z
}

fn sample(h: &Handle, class: i32, z: &[f32]) -> Vec<f32> {
    let i = info(h);
    let mut out = vec![f32::NAN; (i.channels * i.height * i.width) as usize];
    let st = unsafe { fl_sample(h.0, class, z.as_ptr(), out.as_mut_ptr()) };
    assert_eq!(st, 0, "{}", last_error());
    out
}

#[test]
fn calls_agree_with_the_rust_api() {
    let f = files();
    let ctx = shared_context().unwrap();
    let model = Model::load(ctx, &f.tiny).unwrap();
    let h = load(&f.tiny);
    let i = info(&h);
    let (gp, dp) = model.parameter_counts();
    assert_eq!(
        (i.num_classes, i.z_dim, i.channels, i.height, i.width),
        (3, 12, 1, 16, 16)
    );
    assert_eq!(
        (i.has_discriminator, i.has_class_head, i.has_ema),
        (1, 1, 1)
    );
    assert_eq!(
        (i.generator_params, i.discriminator_params),
        (gp as u64, dp as u64)
    );
    assert!(i.max_batch >= 1);

    let z = make_z(&h, 5, 3);
    assert_eq!(z, {
        let mut want = model.make_z(5, 0.8, 3).unwrap();
        want.truncate(z.len());
        want
    });
    let classes = [0, 2, 1];
    let want = model.sample(ctx, Which::Ema, &classes, &z).unwrap();
    let per = 256;
    let mut batch = vec![f32::NAN; 3 * per];
    let st = unsafe { fl_sample_batch(h.0, 3, classes.as_ptr(), z.as_ptr(), batch.as_mut_ptr()) };
    assert_eq!(st, 0, "{}", last_error());
    assert_eq!(batch, want);
    for (k, &c) in classes.iter().enumerate() {
        let one = sample(&h, c, &z[k * 12..(k + 1) * 12]);
        let diff = one
            .iter()
            .zip(&want[k * per..(k + 1) * per])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "image {k} alone differs from the batch by {diff}"
        );
        let mut rgba = vec![0u8; per * 4];
        let st = unsafe { fl_sample_rgba8(h.0, c, z[k * 12..].as_ptr(), rgba.as_mut_ptr()) };
        assert_eq!(st, 0, "{}", last_error());
        assert_eq!(rgba, chw_to_rgba8(&one, 1, 16));
    }

    // Classification: labels are the argmax of the probabilities, which sum to 1.
    let mut labels = [-1i32; 3];
    let mut probs = [f32::NAN; 9];
    let st = unsafe {
        fl_classify(
            h.0,
            3,
            batch.as_ptr(),
            labels.as_mut_ptr(),
            probs.as_mut_ptr(),
        )
    };
    assert_eq!(st, 0, "{}", last_error());
    for b in 0..3 {
        let row = &probs[b * 3..b * 3 + 3];
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        let best = (0..3)
            .max_by(|&x, &y| row[x].partial_cmp(&row[y]).unwrap())
            .unwrap();
        assert_eq!(labels[b], best as i32);
    }
    let mut labels2 = [-1i32; 3];
    let st = unsafe {
        fl_classify(
            h.0,
            3,
            batch.as_ptr(),
            labels2.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, 0);
    assert_eq!(labels, labels2);

    // Save, load back (from a file and from memory): the same images.
    let saved = work_dir().join("saved.safetensors");
    let c = CString::new(saved.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { fl_model_save(h.0, c.as_ptr()) }, 0);
    let again = load(&saved);
    assert_eq!(sample(&again, 1, &z[..12]), sample(&h, 1, &z[..12]));
    let bytes = std::fs::read(&saved).unwrap();
    let mut m = std::ptr::null_mut();
    let st = unsafe { fl_model_load_memory(bytes.as_ptr(), bytes.len(), &mut m) };
    assert_eq!(st, 0, "{}", last_error());
    let mem = Handle(m);
    assert_eq!(sample(&mem, 2, &z[..12]), sample(&h, 2, &z[..12]));
}

#[test]
fn one_model_samples_from_several_threads_at_once() {
    let h = load(&files().tiny);
    let jobs: Vec<(i32, Vec<f32>)> = (0..8)
        .map(|j| (j % 3, make_z(&h, 100 + j as u64, 1)))
        .collect();
    let want: Vec<Vec<f32>> = jobs.iter().map(|(c, z)| sample(&h, *c, z)).collect();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (h, jobs, want) = (&h, &jobs, &want);
                s.spawn(move || {
                    for round in 0..3 {
                        for j in (t..jobs.len()).step_by(2) {
                            let got = sample(h, jobs[j].0, &jobs[j].1);
                            assert_eq!(got, want[j], "thread {t}, round {round}, job {j}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn failures_set_a_thread_local_message() {
    let h = load(&files().tiny);
    let z = make_z(&h, 1, 1);
    let mut out = vec![0f32; 256];
    let st = unsafe { fl_sample(h.0, 3, z.as_ptr(), out.as_mut_ptr()) };
    assert_eq!(st, fl_status_code::FL_ERR_OUT_OF_RANGE as i32);
    let msg = last_error();
    assert!(msg.contains("class id 3"), "{msg}");
    // Another thread has its own (empty) message.
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    assert_eq!(last_error(), msg);
    let name = unsafe { CStr::from_ptr(fl_status_name(st)) };
    assert_eq!(name.to_str().unwrap(), "FL_ERR_OUT_OF_RANGE");
    let v = unsafe { CStr::from_ptr(fl_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn python_bindings_sample() {
    let f = files();
    let so = shared_lib();
    let res = Command::new("python3")
        .arg(root().join("bindings/python/test_fewlabels.py"))
        .arg(&f.tiny)
        .arg(&f.no_d)
        .env("FEWLABELS_LIB", &so)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running python3 (needed for the Python bindings test)");
    assert!(
        res.status.success(),
        "bindings/python/test_fewlabels.py failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn without_a_device_calls_report_no_device_and_file_errors_still_come_first() {
    let f = files();
    let exe = build_c(&root().join("examples/c/sample.c"), "sample_no_device");
    // No Linux machine has a DX12 adapter: this is a machine without a usable device.
    let env = [("FEWLABELS_BACKEND", "dx12")];
    let res = run_env(&exe, &[&f.tiny], &env);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FL_ERR_NO_DEVICE") && stderr.contains("no usable GPU adapter"),
        "{stderr}"
    );
    let res = run_env(&exe, &[&f.missing], &env);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FL_ERR_IO"), "{stderr}");
}

#[test]
fn install_script_and_pkg_config_build_the_example() {
    let f = files();
    let so = shared_lib();
    let prefix = work_dir().join("prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let res = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg(&prefix)
        .env("FEWLABELS_LIB_DIR", so.parent().unwrap())
        .env("FEWLABELS_INSTALL_STATIC", "0")
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "install.sh failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let pc = prefix.join("lib/pkgconfig");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "fewlabels"])
        .env("PKG_CONFIG_PATH", &pc)
        .output()
        .expect("running pkg-config");
    assert!(flags.status.success(), "pkg-config does not find fewlabels");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = work_dir().join("sample_pkg_config");
    let res = Command::new("cc")
        .arg("-std=c99")
        .args(C_FLAGS)
        .arg(root().join("examples/c/sample.c"))
        .args(flags.split_whitespace())
        .args(["-lm", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "cc with pkg-config flags {flags:?} failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let res = Command::new(&exe)
        .arg(&f.tiny)
        .arg(work_dir().join("grid_pkg_config.pgm"))
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn cpp_wrapper_samples_and_throws() {
    let f = files();
    let so = shared_lib();
    let dir = so.parent().unwrap();
    let exe = work_dir().join("cpp_wrapper");
    let res = Command::new("c++")
        .arg("-std=c++11")
        .args(C_FLAGS)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("bindings/cpp"))
        .arg(root().join("tests/c/cpp_wrapper.cpp"))
        .arg("-L")
        .arg(dir)
        .args(["-l:libfewlabels.so", "-pthread", "-o"])
        .arg(&exe)
        .output()
        .expect("running c++");
    assert!(
        res.status.success(),
        "c++ failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let res = run(&exe, &[&f.tiny]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("C++ wrapper: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}
