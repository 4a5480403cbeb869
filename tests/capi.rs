//! The C ABI: the committed header equals a fresh cbindgen run and compiles as C99 and C++;
//! the C example, a program written from the header alone, the bad-call and the threads C tests
//! build against libfewlabels.so and pass (the first three also under valgrind memcheck); the
//! calls agree with the Rust API, also from several threads at once; the install script's
//! pkg-config file and CMake package build the example.

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
    build_c_with(src, name, &[])
}

/// As [`build_c`], with extra compiler flags (e.g. sanitizers).
fn build_c_with(src: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let so = shared_lib();
    let out = work_dir().join(name);
    let dir = so.parent().unwrap();
    let res = Command::new("cc")
        .arg("-std=c99")
        .args(C_FLAGS)
        .args(extra)
        .arg("-I")
        .arg(root().join("include"))
        .arg(src)
        .arg("-L")
        .arg(dir)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .args(["-l:libfewlabels.so", "-lm", "-pthread", "-o"])
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

/// Compile and link a C++ file (C++11, with the C++ wrapper's folder on the include path)
/// against libfewlabels.so; returns the executable.
fn build_cpp(src: &Path, name: &str) -> PathBuf {
    let so = shared_lib();
    let dir = so.parent().unwrap();
    let exe = work_dir().join(name);
    let res = Command::new("c++")
        .arg("-std=c++11")
        .args(C_FLAGS)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("bindings/cpp"))
        .arg(src)
        .arg("-L")
        .arg(dir)
        .args(["-l:libfewlabels.so", "-pthread", "-o"])
        .arg(&exe)
        .output()
        .expect("running c++");
    assert!(
        res.status.success(),
        "c++ {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    exe
}

fn run(exe: &Path, args: &[&Path]) -> std::process::Output {
    run_env(exe, args, &[])
}

fn run_env(exe: &Path, args: &[&Path], env: &[(&str, &str)]) -> std::process::Output {
    c_command(exe.as_os_str())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running a C test program")
}

/// A command for a C test program (or a tool that runs one), in the work folder, with this
/// run's libfewlabels.so first on the library path.
fn c_command(program: &std::ffi::OsStr) -> Command {
    // cargo puts target/<profile> on LD_LIBRARY_PATH, which outranks the rpath and may hold an
    // older libfewlabels.so than the one this run built: point it at the right one.
    let so = shared_lib();
    let mut cmd = Command::new(program);
    cmd.env("LD_LIBRARY_PATH", so.parent().unwrap())
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .current_dir(work_dir());
    cmd
}

/// Whether valgrind runs here; the memcheck tests skip (with a message) without it.
fn have_valgrind() -> bool {
    let ok = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: valgrind is not installed (scripts/setup.sh installs it)");
    }
    ok
}

/// Run a C test program under valgrind memcheck. Memory errors and definite leaks (apart from
/// the driver allocations tests/c/valgrind.supp names) make valgrind exit with 99. Returns the
/// program's output and memcheck's summary (its ERROR SUMMARY and leak lines).
fn run_memcheck(exe: &Path, args: &[&Path], name: &str) -> (std::process::Output, String) {
    let log = work_dir().join(format!("{name}.memcheck.log"));
    let res = c_command("valgrind".as_ref())
        .arg("--tool=memcheck")
        .arg("--error-exitcode=99")
        .arg("--leak-check=full")
        .arg("--show-leak-kinds=definite")
        .arg("--errors-for-leak-kinds=definite")
        .arg("--num-callers=40")
        .arg(format!(
            "--suppressions={}",
            root().join("tests/c/valgrind.supp").display()
        ))
        .arg(format!("--log-file={}", log.display()))
        .arg(exe)
        .args(args)
        .output()
        .expect("running valgrind");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "ERROR SUMMARY",
                "definitely lost",
                "indirectly lost",
                "possibly lost",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    (res, summary.join("\n"))
}

struct Files {
    tiny: PathBuf,
    truncated: PathBuf,
    empty: PathBuf,
    missing: PathBuf,
    no_d: PathBuf,
    no_class_head: PathBuf,
    oversized: PathBuf,
    huge_header: PathBuf,
    bad_config: PathBuf,
    wrong_config: PathBuf,
}

/// A copy of the tiny model file whose config JSON has `key` set to `value` (tensors unchanged).
fn with_config(tiny: &Path, out: &Path, key: &str, value: serde_json::Value) {
    use fewlabels::model::file::TensorFile;
    let mut file = TensorFile::load(tiny).unwrap();
    let cfg = file
        .metadata
        .get_mut("config")
        .expect("a config in the model file");
    let mut json: serde_json::Value = serde_json::from_str(cfg).unwrap();
    json[key] = value;
    *cfg = json.to_string();
    file.save(out).unwrap();
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
        let oversized = d.join("oversized.safetensors");
        let mut long = bytes.clone();
        long.extend(std::iter::repeat_n(0xA5u8, 4096));
        std::fs::write(&oversized, long).unwrap();
        let huge_header = d.join("huge_header.safetensors");
        let mut huge = (1u64 << 60).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{\"__metadata__\":{}}");
        std::fs::write(&huge_header, huge).unwrap();
        let bad_config = d.join("bad_config.safetensors");
        with_config(&tiny, &bad_config, "resolution", 17.into());
        let wrong_config = d.join("wrong_config.safetensors");
        with_config(&tiny, &wrong_config, "num_classes", 5.into());
        Files {
            tiny,
            truncated,
            empty,
            missing,
            no_d,
            no_class_head,
            oversized,
            huge_header,
            bad_config,
            wrong_config,
        }
    })
}

impl Files {
    /// The arguments of tests/c/bad_calls.c.
    fn bad_call_args(&self) -> Vec<&Path> {
        vec![
            &self.tiny,
            &self.truncated,
            &self.empty,
            &self.missing,
            &self.no_d,
            &self.no_class_head,
            &self.oversized,
            &self.huge_header,
            &self.bad_config,
            &self.wrong_config,
        ]
    }
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
             fl_train_config cfg;\n\
             fl_step_stats st;\n\
             fl_trainer *t = 0;\n\
             fl_variant v = FL_VARIANT_S3GAN_CO;\n\
             (void)info; (void)m; (void)cfg; (void)st; (void)t; (void)v;\n\
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
fn c_example_samples_a_grid_from_a_file_and_from_the_default_model() {
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

    // The embedded default model: 10 classes, a 4 x 3 grid of 32 x 32 images.
    let grid = work_dir().join("default_grid.pgm");
    let _ = std::fs::remove_file(&grid);
    let res = run(&exe, &[Path::new("-"), &grid]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "sample failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("10 classes, z_dim 64, 1 x 32 x 32"),
        "{stdout}"
    );
    let bytes = std::fs::read(&grid).unwrap();
    let header = b"P5\n131 98\n255\n";
    assert_eq!(&bytes[..header.len()], header);
    assert_eq!(bytes.len(), header.len() + 131 * 98);
}

#[test]
fn c_bad_calls_fail_cleanly_and_valid_calls_still_work() {
    let f = files();
    let exe = build_c(&root().join("tests/c/bad_calls.c"), "bad_calls");
    let res = run(&exe, &f.bad_call_args());
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "bad_calls failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// The bad calls again under AddressSanitizer and UBSan (the C side instrumented; ASan's
/// allocator also checks every heap block the library and the driver allocate for overflows
/// into its red zones, double frees and frees of foreign pointers). LeakSanitizer runs with
/// tests/c/lsan.supp, which names the Vulkan driver's and LLVM's own allocations; a leak of
/// libfewlabels itself fails the test.
#[test]
fn c_bad_calls_run_clean_under_address_sanitizer() {
    let f = files();
    let exe = build_c_with(
        &root().join("tests/c/bad_calls.c"),
        "bad_calls_asan",
        &[
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-g",
        ],
    );
    let supp = root().join("tests/c/lsan.supp");
    let lsan = format!("suppressions={}:print_suppressions=0", supp.display());
    let res = run_env(
        &exe,
        &f.bad_call_args(),
        &[
            ("ASAN_OPTIONS", "halt_on_error=1:detect_leaks=1:exitcode=98"),
            ("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"),
            ("LSAN_OPTIONS", &lsan),
        ],
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success() && stdout.contains(" 0 failed"),
        "bad_calls under ASan: exit {:?} (98: a sanitizer report)\n{stdout}\n{stderr}",
        res.status.code()
    );
    assert!(!stderr.contains("ERROR: AddressSanitizer"), "{stderr}");
    assert!(!stderr.contains("runtime error:"), "{stderr}");
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

/// `fl_model_prepare` changes no sample: a prepared handle (for one image and for a batch)
/// samples what an unprepared one of the same file does, one image and a batch. Bad calls
/// answer their codes.
#[test]
fn preparing_a_model_changes_no_sample() {
    let plain = load(&files().tiny);
    let prepared = load(&files().tiny);
    for n in [1, 3] {
        let st = unsafe { fl_model_prepare(prepared.0, n) };
        assert_eq!(st, 0, "{}", last_error());
    }
    let z = make_z(&plain, 9, 3);
    let zd = info(&plain).z_dim as usize;
    assert_eq!(sample(&prepared, 2, &z[..zd]), sample(&plain, 2, &z[..zd]));
    let classes = [0, 1, 2];
    let len = image_floats(&plain) * 3;
    let (mut a, mut b) = (vec![f32::NAN; len], vec![f32::NAN; len]);
    for (h, out) in [(&plain, &mut a), (&prepared, &mut b)] {
        let st = unsafe { fl_sample_batch(h.0, 3, classes.as_ptr(), z.as_ptr(), out.as_mut_ptr()) };
        assert_eq!(st, 0, "{}", last_error());
    }
    assert_eq!(a, b);

    let st = unsafe { fl_model_prepare(std::ptr::null_mut(), 1) };
    assert_eq!(st, fl_status_code::FL_ERR_NULL_POINTER as i32);
    assert!(last_error().contains("model"), "{}", last_error());
    for n in [0, FL_MAX_N + 1] {
        let st = unsafe { fl_model_prepare(prepared.0, n) };
        assert_eq!(st, fl_status_code::FL_ERR_OUT_OF_RANGE as i32, "n = {n}");
    }
}

fn image_floats(h: &Handle) -> usize {
    let i = info(h);
    (i.channels * i.height * i.width) as usize
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
    let prefix = install_into("prefix");
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
    let exe = build_cpp(&root().join("tests/c/cpp_wrapper.cpp"), "cpp_wrapper");
    let res = run(&exe, &[&f.tiny]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("C++ wrapper: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Training.

/// A trainer handle, freed on drop.
struct TrainerHandle(*mut fl_trainer);

// SAFETY: a trainer may be used from any thread, one at a time (the library enforces it).
unsafe impl Send for TrainerHandle {}
unsafe impl Sync for TrainerHandle {}

impl Drop for TrainerHandle {
    fn drop(&mut self) {
        unsafe { fl_trainer_free(self.0) }
    }
}

fn default_train_config() -> fl_train_config {
    let mut cfg = std::mem::MaybeUninit::<fl_train_config>::uninit();
    assert_eq!(unsafe { fl_train_config_default(cfg.as_mut_ptr()) }, 0);
    unsafe { cfg.assume_init() }
}

fn create_trainer(path: &Path, cfg: &fl_train_config) -> TrainerHandle {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut t = std::ptr::null_mut();
    let st = unsafe { fl_trainer_create(c.as_ptr(), cfg, &mut t) };
    assert_eq!(st, 0, "{}", last_error());
    assert!(!t.is_null());
    TrainerHandle(t)
}

/// `n` tiny-preset images (1 x 16 x 16, CHW in [0, 1]): class c has a bright band.
fn train_images(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n * 256);
    for b in 0..n {
        for p in 0..256 {
            let band = (p / 16) / 6 == b % 3;
            let noise = ((b * 131 + p * 29) % 17) as f32 / 170.0;
            v.push(if band { 0.85 + noise } else { noise });
        }
    }
    v.into_iter().map(|x| x.clamp(0.0, 1.0)).collect()
}

fn step(t: &TrainerHandle, images: &[f32], labels: &[i32]) -> (i32, fl_step_stats) {
    let mut s = fl_step_stats::default();
    let st = unsafe {
        fl_trainer_step(
            t.0,
            labels.len() as u32,
            images.as_ptr(),
            labels.as_ptr(),
            &mut s,
        )
    };
    (st, s)
}

fn trainer_model(t: &TrainerHandle) -> Handle {
    let mut m = std::ptr::null_mut();
    let st = unsafe { fl_trainer_model(t.0, &mut m) };
    assert_eq!(st, 0, "{}", last_error());
    Handle(m)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn default_train_config_is_the_rust_default() {
    use fewlabels::train::{TrainConfig, Variant};
    let c = default_train_config();
    let r = TrainConfig::new(Variant::S3ganCo);
    assert_eq!(c.variant, fl_variant_code::FL_VARIANT_S3GAN_CO as i32);
    assert_eq!(c.d_steps as usize, r.d_steps);
    assert_eq!(
        (c.lr_g, c.lr_d, c.beta1, c.beta2, c.eps),
        (r.lr_g, r.lr_d, r.beta1, r.beta2, r.eps)
    );
    assert_eq!(
        (
            c.rot_fraction,
            c.g_rot_weight,
            c.d_rot_weight,
            c.class_weight
        ),
        (
            r.rot_fraction,
            r.g_rot_weight,
            r.d_rot_weight,
            r.class_weight
        )
    );
    assert_eq!(
        (c.ema_decay, c.ema_start, c.seed),
        (r.ema_decay, r.ema_start, r.seed)
    );
}

#[test]
fn a_trainer_step_is_the_rust_trainers_d_and_g_steps() {
    use fewlabels::tensor::Tensor;
    use fewlabels::train::{TrainConfig, Trainer, Variant};
    let f = files();
    let ctx = shared_context().unwrap();
    let mut cfg = default_train_config();
    cfg.ema_start = 1;
    cfg.seed = 9;
    let t = create_trainer(&f.tiny, &cfg);
    let mut ti = fl_model_info::default();
    assert_eq!(unsafe { fl_trainer_get_info(t.0, &mut ti) }, 0);
    assert_eq!((ti.num_classes, ti.channels, ti.height), (3, 1, 16));
    let images = train_images(4);
    let labels = [0, -1, 2, -1];
    let (st, s) = step(&t, &images, &labels);
    assert_eq!(st, 0, "{}", last_error());

    // The same in Rust.
    let mut rc = TrainConfig::new(Variant::S3ganCo);
    rc.ema_start = 1;
    rc.seed = 9;
    let mut r = Trainer::new(ctx, Model::load(ctx, &f.tiny).unwrap(), rc).unwrap();
    let mut x = vec![0f32; images.len()];
    x.iter_mut()
        .zip(&images)
        .for_each(|(o, i)| *o = i * 2.0 - 1.0); // one channel: CHW == HWC
    let xt = Tensor::from_f32(ctx, &[4, 16, 16, 1], &x).unwrap();
    let mut d = Vec::new();
    for _ in 0..2 {
        let (z, yf) = r.fake_batch(ctx, 4).unwrap();
        d.push(r.d_step(ctx, &xt, &labels, &z, &yf).unwrap());
    }
    let (z, yf) = r.fake_batch(ctx, 4).unwrap();
    let g = r.g_step(ctx, &z, &yf).unwrap();
    let mean = |f: fn(&fewlabels::train::DStepReport) -> f32| (f(&d[0]) + f(&d[1])) / 2.0;
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
    assert!(close(s.d_loss, mean(|r| r.total)), "{s:?}");
    assert!(close(s.d_hinge, mean(|r| r.hinge)), "{s:?}");
    assert!(close(s.d_rotation, mean(|r| r.rotation)), "{s:?}");
    assert!(close(s.d_class, mean(|r| r.class)), "{s:?}");
    assert!(close(s.g_loss, g.total) && close(s.g_adversarial, g.adversarial));
    assert!(close(s.g_rotation, g.rotation));
    assert!(
        s.d_rotation > 0.0 && s.d_class > 0.0 && s.g_rotation > 0.0,
        "{s:?}"
    );
    assert_eq!((s.d_steps_done, s.g_steps_done, s.labelled), (2, 1, 2));
    assert!(
        [0.0, 0.5, 1.0].contains(&s.class_accuracy),
        "{}",
        s.class_accuracy
    );

    // The saved model is the Rust trainer's model.
    let saved = work_dir().join("trained.safetensors");
    let c = CString::new(saved.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { fl_trainer_save(t.0, c.as_ptr()) }, 0);
    let back = Model::load(ctx, &saved).unwrap();
    let pairs = [
        (&back.g, &r.model.g),
        (back.d.as_ref().unwrap(), r.model.d.as_ref().unwrap()),
        (
            back.g_ema.as_ref().unwrap(),
            r.model.g_ema.as_ref().unwrap(),
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(a.map.len(), b.map.len());
        for (name, ta) in &a.map {
            let diff = max_abs_diff(&ta.to_f32(ctx).unwrap(), &b.map[name].to_f32(ctx).unwrap());
            assert!(diff <= 1e-5, "{name} differs by {diff}");
        }
    }
    // The trainer's model samples what the saved file samples.
    let m = trainer_model(&t);
    let from_file = load(&saved);
    let z = make_z(&m, 3, 1);
    assert_eq!(sample(&m, 1, &z), sample(&from_file, 1, &z));
}

/// `fl_trainer_prepare` changes nothing a step computes: two trainers of the same file, one
/// prepared for the batch size (and for another one), step to the same stats and samples.
/// Bad calls answer their codes and name the problem.
#[test]
fn preparing_a_trainer_changes_no_result() {
    let mut cfg = default_train_config();
    cfg.ema_start = 1;
    cfg.d_steps = 1;
    let images = train_images(3);
    let labels = [0, -1, 2];
    let plain = create_trainer(&files().tiny, &cfg);
    let prepared = create_trainer(&files().tiny, &cfg);
    for n in [3, 5] {
        let st = unsafe { fl_trainer_prepare(prepared.0, n) };
        assert_eq!(st, 0, "{}", last_error());
    }
    let (st, a) = step(&plain, &images, &labels);
    assert_eq!(st, 0, "{}", last_error());
    let (st, b) = step(&prepared, &images, &labels);
    assert_eq!(st, 0, "{}", last_error());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    let (ma, mb) = (trainer_model(&plain), trainer_model(&prepared));
    let z = make_z(&ma, 6, 2);
    assert_eq!(sample(&ma, 1, &z), sample(&mb, 1, &z));

    let st = unsafe { fl_trainer_prepare(std::ptr::null_mut(), 3) };
    assert_eq!(st, fl_status_code::FL_ERR_NULL_POINTER as i32);
    assert!(last_error().contains("trainer"), "{}", last_error());
    for (n, says) in [(0, "n is 0"), (100_000, "more than this device trains")] {
        let st = unsafe { fl_trainer_prepare(prepared.0, n) };
        assert_eq!(st, fl_status_code::FL_ERR_OUT_OF_RANGE as i32, "n = {n}");
        assert!(last_error().contains(says), "{}", last_error());
    }
}

#[test]
fn a_trainer_model_is_an_independent_copy() {
    let mut cfg = default_train_config();
    cfg.ema_start = 1;
    cfg.d_steps = 1;
    let t = create_trainer(&files().tiny, &cfg);
    let images = train_images(2);
    assert_eq!(step(&t, &images, &[1, -1]).0, 0, "{}", last_error());
    let m = trainer_model(&t);
    let z = make_z(&m, 4, 1);
    let before = sample(&m, 0, &z);
    assert_eq!(step(&t, &images, &[1, -1]).0, 0, "{}", last_error());
    assert_eq!(
        sample(&m, 0, &z),
        before,
        "training changed an earlier copy"
    );
    let after = sample(&trainer_model(&t), 0, &z);
    assert_ne!(after, before, "a G step with ema_start 1 left G_ema alone");
    drop(t);
    assert_eq!(sample(&m, 0, &z), before, "the copy died with the trainer");
}

#[test]
fn a_fresh_trainer_from_a_preset_trains() {
    let mut cfg = default_train_config();
    cfg.d_steps = 1;
    let preset = CString::new("tiny").unwrap();
    let mut raw = std::ptr::null_mut();
    let st = unsafe { fl_trainer_create_new(preset.as_ptr(), 11, &cfg, &mut raw) };
    assert_eq!(st, 0, "{}", last_error());
    let t = TrainerHandle(raw);
    // Unlabelled only: no class accuracy to report.
    let (st, s) = step(&t, &train_images(3), &[-1, -1, -1]);
    assert_eq!(st, 0, "{}", last_error());
    assert!(s.class_accuracy.is_nan() && s.labelled == 0 && s.d_class == 0.0);
    assert!(s.d_loss.is_finite() && s.g_loss.is_finite(), "{s:?}");
    // NULL config: the defaults.
    let mut raw = std::ptr::null_mut();
    let st = unsafe { fl_trainer_create_new(preset.as_ptr(), 11, std::ptr::null(), &mut raw) };
    assert_eq!(st, 0, "{}", last_error());
    drop(TrainerHandle(raw));
}

#[test]
fn a_diverging_trainer_reports_a_non_finite_loss() {
    let mut cfg = default_train_config();
    cfg.lr_d = 1e38;
    cfg.lr_g = 1e38;
    let t = create_trainer(&files().tiny, &cfg);
    let images = train_images(4);
    let mut seen = None;
    for _ in 0..4 {
        let (st, s) = step(&t, &images, &[0, 1, -1, -1]);
        if st != 0 {
            seen = Some((st, s, last_error()));
            break;
        }
    }
    let (st, s, msg) = seen.expect("learning rates of 1e38 never gave a non-finite loss");
    assert_eq!(st, fl_status_code::FL_ERR_NON_FINITE as i32, "{msg}");
    assert!(
        msg.contains("non-finite loss or gradient") && msg.contains("rejected"),
        "{msg}"
    );
    // The trainer is still usable: another call answers a status, not a crash.
    let (st2, _) = step(&t, &images, &[0, 1, -1, -1]);
    assert!(
        st2 == 0 || st2 == fl_status_code::FL_ERR_NON_FINITE as i32,
        "{st2}"
    );
    let _ = s;
}

#[test]
fn a_trainer_in_use_by_another_thread_answers_busy() {
    let mut cfg = default_train_config();
    cfg.d_steps = 1;
    let t = create_trainer(&files().tiny, &cfg);
    let images = train_images(4);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = std::thread::scope(|s| {
        let trainer = s.spawn(|| {
            let mut steps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && steps < 5000 {
                let (st, _) = step(&t, &images, &[0, -1, 2, -1]);
                assert!(
                    st == 0 || st == fl_status_code::FL_ERR_BUSY as i32,
                    "{}",
                    last_error()
                );
                steps += 1;
            }
        });
        let mut busy = None;
        let mut info = fl_model_info::default();
        while busy.is_none() && !trainer.is_finished() {
            let st = unsafe { fl_trainer_get_info(t.0, &mut info) };
            if st == fl_status_code::FL_ERR_BUSY as i32 {
                busy = Some(last_error());
            } else {
                assert_eq!(st, 0, "{}", last_error());
                std::thread::yield_now();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        trainer.join().unwrap();
        busy
    });
    let msg = busy.expect("never saw the trainer busy");
    assert!(msg.contains("one thread at a time"), "{msg}");
    // Free again: calls work.
    assert_eq!(step(&t, &images, &[0, -1, 2, -1]).0, 0, "{}", last_error());
}

#[test]
fn cpp_finetune_example_trains_saves_and_samples() {
    let f = files();
    let exe = build_cpp(&root().join("examples/cpp/finetune.cpp"), "finetune");
    let out = work_dir().join("finetuned.safetensors");
    let _ = std::fs::remove_file(&out);
    let res = run(&exe, &[&f.tiny, &out]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("finetune: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("step 3:") && stdout.contains("steps D 6 G 3"),
        "{stdout}"
    );
    assert!(out.exists());
    let res = run(
        &exe,
        &[
            Path::new("--preset"),
            Path::new("tiny"),
            &work_dir().join("finetuned_fresh.safetensors"),
            Path::new("1"),
        ],
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("finetune: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    // An unknown preset: a clear failure.
    let res = run(&exe, &[Path::new("--preset"), Path::new("nope"), &out]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FL_ERR_INVALID_ARGUMENT"), "{stderr}");
}

#[test]
fn trainer_save_writes_a_checkpoint_that_resumes_exactly() {
    let mut cfg = default_train_config();
    cfg.d_steps = 1;
    let images = train_images(4);
    let labels = [0, -1, 2, -1];
    // Two trainers from one model file: one saves after a step and is resumed from the file,
    // the other runs on; their next steps must agree bit for bit.
    let a = create_trainer(&files().tiny, &cfg);
    let b = create_trainer(&files().tiny, &cfg);
    assert_eq!(step(&a, &images, &labels).0, 0, "{}", last_error());
    assert_eq!(step(&b, &images, &labels).0, 0, "{}", last_error());
    let path = work_dir().join("resume-checkpoint.safetensors");
    let c = CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { fl_trainer_save(a.0, c.as_ptr()) },
        0,
        "{}",
        last_error()
    );
    drop(a);
    let resumed = create_trainer(&path, &cfg);
    let (st, s1) = step(&resumed, &images, &labels);
    assert_eq!(st, 0, "{}", last_error());
    let (st, s2) = step(&b, &images, &labels);
    assert_eq!(st, 0, "{}", last_error());
    assert_eq!((s1.d_steps_done, s1.g_steps_done), (2, 2));
    assert_eq!(s1.d_loss.to_bits(), s2.d_loss.to_bits());
    assert_eq!(s1.g_loss.to_bits(), s2.g_loss.to_bits());
    // The checkpoint is also a model file for sampling.
    let m = load(&path);
    let z = make_z(&m, 1, 1);
    assert_eq!(sample(&m, 0, &z).len(), 256);
}

// ---------------------------------------------------------------------------------------------
// Programs written from the header, threads, valgrind, packaging, a host-owned device.

#[test]
fn a_c_program_written_from_the_header_loads_samples_classifies_finetunes_and_saves() {
    let exe = build_c(&root().join("tests/c/from_header.c"), "from_header");
    let out = work_dir().join("from_header_tuned.safetensors");
    let _ = std::fs::remove_file(&out);
    let res = run(&exe, &[Path::new("-"), &out]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("from_header: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("model: the embedded default model"),
        "{stdout}"
    );
    assert!(
        stdout.contains("step 3:") && stdout.contains("steps D 3 G 3"),
        "{stdout}"
    );
    // What it saved is a checkpoint that Rust reads as a model with G, D and G_ema.
    let ctx = shared_context().unwrap();
    let m = Model::load(ctx, &out).unwrap();
    assert!(m.d.is_some() && m.g_ema.is_some());
}

#[test]
fn c_threads_share_a_model_train_side_by_side_and_keep_the_trainer_rule() {
    let f = files();
    let exe = build_c(&root().join("tests/c/threads.c"), "threads");
    let res = run(&exe, &[&f.tiny]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    eprintln!("{stdout}");
    assert!(
        res.status.success() && stdout.contains(" 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
#[ignore = "slow: about 10 minutes each under memcheck on lavapipe (docs/RELIABILITY.md); run with: cargo test --test capi -- --ignored memcheck"]
fn c_bad_calls_run_clean_under_memcheck() {
    if !have_valgrind() {
        return;
    }
    let f = files();
    let exe = build_c(&root().join("tests/c/bad_calls.c"), "bad_calls_memcheck");
    let (res, summary) = run_memcheck(&exe, &f.bad_call_args(), "bad_calls");
    let stdout = String::from_utf8_lossy(&res.stdout);
    eprintln!("bad_calls under memcheck:\n{summary}");
    assert!(
        res.status.success() && stdout.contains(" 0 failed"),
        "exit {:?} (99: memcheck found errors or leaks; see target/*/capi-test/\
         bad_calls.memcheck.log)\n{summary}\n{stdout}",
        res.status.code()
    );
    assert!(summary.contains("ERROR SUMMARY: 0 errors"), "{summary}");
}

#[test]
#[ignore = "slow: about 10 minutes each under memcheck on lavapipe (docs/RELIABILITY.md); run with: cargo test --test capi -- --ignored memcheck"]
fn c_example_and_a_training_program_run_clean_under_memcheck() {
    if !have_valgrind() {
        return;
    }
    let f = files();
    let sample = build_c(&root().join("examples/c/sample.c"), "sample_memcheck");
    let grid = work_dir().join("grid_memcheck.pgm");
    let (res, summary) = run_memcheck(&sample, &[&f.tiny, &grid], "sample");
    eprintln!("examples/c/sample.c under memcheck:\n{summary}");
    assert!(
        res.status.success(),
        "exit {:?} (99: memcheck found errors or leaks; see target/*/capi-test/\
         sample.memcheck.log)\n{summary}\n{}",
        res.status.code(),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(summary.contains("ERROR SUMMARY: 0 errors"), "{summary}");

    let train = build_c(
        &root().join("tests/c/from_header.c"),
        "from_header_memcheck",
    );
    let out = work_dir().join("from_header_memcheck.safetensors");
    let one = Path::new("1");
    let (res, summary) = run_memcheck(&train, &[&f.tiny, &out, one], "from_header");
    let stdout = String::from_utf8_lossy(&res.stdout);
    eprintln!("tests/c/from_header.c (1 training step) under memcheck:\n{summary}");
    assert!(
        res.status.success() && stdout.contains("from_header: ok"),
        "exit {:?} (99: memcheck found errors or leaks; see target/*/capi-test/\
         from_header.memcheck.log)\n{summary}\n{stdout}",
        res.status.code()
    );
    assert!(summary.contains("ERROR SUMMARY: 0 errors"), "{summary}");
}

/// Install into a fresh prefix with scripts/install.sh (the libraries this run built).
fn install_into(name: &str) -> PathBuf {
    let so = shared_lib();
    let prefix = work_dir().join(name);
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
    prefix
}

#[test]
fn install_script_cmake_package_builds_the_example() {
    let prefix = install_into("prefix_cmake");
    let pkg = prefix.join("lib/cmake/fewlabels");
    for f in ["fewlabelsConfig.cmake", "fewlabelsConfigVersion.cmake"] {
        assert!(pkg.join(f).exists(), "install.sh did not install {f}");
    }
    if Command::new("cmake").arg("--version").output().is_err() {
        eprintln!("SKIPPED: cmake is not installed (scripts/setup.sh installs it)");
        return;
    }
    // The version file: 0.x releases are compatible within one minor version.
    let script = work_dir().join("version_check.cmake");
    let version = env!("CARGO_PKG_VERSION");
    let minor: Vec<&str> = version.split('.').take(2).collect();
    let cases = [
        (minor.join("."), true),
        (version.to_string(), true),
        ("0.0.1".to_string(), version.starts_with("0.0.")),
        ("99.0".to_string(), false),
    ];
    for (want, compatible) in cases {
        let (major, rest) = want.split_once('.').unwrap();
        std::fs::write(
            &script,
            format!(
                "set(PACKAGE_FIND_VERSION {want})\nset(PACKAGE_FIND_VERSION_MAJOR {major})\n\
                 set(PACKAGE_FIND_VERSION_MINOR {})\ninclude(\"{}\")\n\
                 message(\"compatible=${{PACKAGE_VERSION_COMPATIBLE}}\")\n",
                rest.split('.').next().unwrap(),
                pkg.join("fewlabelsConfigVersion.cmake").display()
            ),
        )
        .unwrap();
        let res = Command::new("cmake")
            .arg("-P")
            .arg(&script)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&res.stderr);
        let got = text.contains("compatible=TRUE");
        assert_eq!(got, compatible, "asking for {want} of {version}: {text}");
    }

    // Configure and build examples/c with find_package(fewlabels), then run the program.
    let build = work_dir().join("cmake_build");
    let _ = std::fs::remove_dir_all(&build);
    let res = Command::new("cmake")
        .arg("-S")
        .arg(root().join("examples/c"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg("-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic")
        .output()
        .expect("running cmake");
    assert!(
        res.status.success(),
        "cmake configure failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    let res = Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "cmake build failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // The imported target carries the library's path (rpath), so no LD_LIBRARY_PATH.
    let res = Command::new(build.join("sample"))
        .arg(&files().tiny)
        .arg(work_dir().join("grid_cmake.pgm"))
        .env_remove("LD_LIBRARY_PATH")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        res.status.success() && String::from_utf8_lossy(&res.stdout).contains("3 classes"),
        "{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// The child half of `a_rust_host_hands_its_device_to_the_c_abi`, run in a process of its own
/// (the C ABI has one device per process, and the other tests open it).
#[test]
#[ignore = "run by a_rust_host_hands_its_device_to_the_c_abi in a process of its own"]
fn host_device_child() {
    let Some(model) = std::env::var_os("FEWLABELS_HOST_DEVICE_CHILD") else {
        return;
    };
    // The host opens a device of its own (here on the adapter the library would pick).
    let own = fewlabels::Context::new().unwrap();
    let adapter = own.adapter.clone().unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host application"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let host = fewlabels::Context::from_device(device, queue, None);
    let ctx = set_shared_context(host).expect("the first hand-over is taken");
    assert_eq!(ctx.description.name, "host-provided device");
    // The C calls run on it.
    let mut name = std::ptr::null();
    assert_eq!(unsafe { fl_device_name(&mut name) }, 0, "{}", last_error());
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    assert!(name.starts_with("host-provided device"), "{name}");
    let h = load(Path::new(&model));
    let z = make_z(&h, 1, 1);
    let img = sample(&h, 0, &z);
    assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
    // A second hand-over is refused; the C ABI keeps the host's device.
    let err = set_shared_context(own).err().expect("a second hand-over");
    assert!(err.to_string().contains("already has its device"), "{err}");
    assert!(std::ptr::eq(shared_context().unwrap(), ctx));
    println!("host device child: ok");
}

#[test]
fn a_rust_host_hands_its_device_to_the_c_abi() {
    let f = files();
    let res = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "host_device_child", "--ignored", "--nocapture"])
        .env("FEWLABELS_HOST_DEVICE_CHILD", &f.tiny)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("host device child: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// `fl_model_fit_class_head`: the fitted head is what the Rust fit gives (same inputs, same
/// head), `fl_classify` then gets the labelled images right as often as the call reports,
/// sampling is unchanged, and bad calls are statuses that change nothing.
#[test]
fn fit_class_head_is_the_rust_fit_and_bad_calls_change_nothing() {
    let f = files();
    let h = load(&f.tiny);
    let n = 24;
    let images = train_images(n);
    // Classes by band, a third of the images unlabelled.
    let labels: Vec<i32> = (0..n)
        .map(|b| if b % 3 == 2 { -1 } else { (b % 3) as i32 })
        .collect();
    let z = make_z(&h, 5, 1);
    let before = sample(&h, 1, &z);
    let fit = |h: &Handle, imgs: &[f32], labs: &[i32], acc: *mut f32| unsafe {
        fl_model_fit_class_head(
            h.0,
            labs.len() as u32,
            imgs.as_ptr(),
            labs.as_ptr(),
            60,
            7,
            acc,
        )
    };
    let classify = |h: &Handle| {
        let mut out = vec![-5i32; n];
        let st = unsafe {
            fl_classify(
                h.0,
                n as u32,
                images.as_ptr(),
                out.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, 0, "{}", last_error());
        out
    };
    let head_before = classify(&h);

    // Bad calls: a status, a message, and the model as it was.
    let mut bad_labels = labels.clone();
    bad_labels[4] = 3;
    assert_eq!(
        fit(&h, &images, &bad_labels, std::ptr::null_mut()),
        fl_status_code::FL_ERR_INVALID_ARGUMENT as i32
    );
    assert!(last_error().contains("labels[4] = 3"), "{}", last_error());
    assert_eq!(
        fit(&h, &images, &vec![-1; n], std::ptr::null_mut()),
        fl_status_code::FL_ERR_INVALID_ARGUMENT as i32
    );
    assert!(
        last_error().contains("no image is labelled"),
        "{}",
        last_error()
    );
    let mut nan = images.clone();
    nan[9] = f32::NAN;
    assert_eq!(
        fit(&h, &nan, &labels, std::ptr::null_mut()),
        fl_status_code::FL_ERR_NON_FINITE as i32
    );
    let mut big = images.clone();
    big[9] = 1.5;
    assert_eq!(
        fit(&h, &big, &labels, std::ptr::null_mut()),
        fl_status_code::FL_ERR_OUT_OF_RANGE as i32
    );
    let st = unsafe {
        fl_model_fit_class_head(
            h.0,
            0,
            images.as_ptr(),
            labels.as_ptr(),
            60,
            7,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, fl_status_code::FL_ERR_OUT_OF_RANGE as i32);
    let st = unsafe {
        fl_model_fit_class_head(
            h.0,
            3,
            std::ptr::null(),
            labels.as_ptr(),
            60,
            7,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, fl_status_code::FL_ERR_NULL_POINTER as i32);
    let st = unsafe {
        fl_model_fit_class_head(
            std::ptr::null_mut(),
            3,
            images.as_ptr(),
            labels.as_ptr(),
            60,
            7,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, fl_status_code::FL_ERR_NULL_POINTER as i32);
    for path in [&f.no_d, &f.no_class_head] {
        let other = load(path);
        assert_eq!(
            fit(&other, &images, &labels, std::ptr::null_mut()),
            fl_status_code::FL_ERR_INVALID_ARGUMENT as i32
        );
    }
    assert_eq!(classify(&h), head_before, "a refused fit changed the head");

    // The fit.
    let mut acc = -1f32;
    assert_eq!(fit(&h, &images, &labels, &mut acc), 0, "{}", last_error());
    let pred = classify(&h);
    let lab: Vec<usize> = (0..n).filter(|&i| labels[i] >= 0).collect();
    let right = lab.iter().filter(|&&i| pred[i] == labels[i]).count();
    assert!(
        (acc - right as f32 / lab.len() as f32).abs() < 1e-6,
        "{acc} vs {right}"
    );
    assert_eq!(sample(&h, 1, &z), before, "the fit changed G");

    // The Rust fit on the same inputs gives the same head.
    let ctx = shared_context().unwrap();
    let mut m = Model::load(ctx, &f.tiny).unwrap();
    let x: Vec<f32> = {
        let mut v = vec![0f32; images.len()];
        // CHW with one channel is HWC; [0, 1] -> [-1, 1].
        for (o, i) in v.iter_mut().zip(&images) {
            *o = i * 2.0 - 1.0;
        }
        v
    };
    let data = fewlabels::data::Dataset::new(x.clone(), 16, 1, labels.clone(), 3).unwrap();
    let hc = fewlabels::train::head::HeadConfig {
        steps: 60,
        seed: 7,
        ..fewlabels::train::head::HeadConfig::new()
    };
    let rep =
        fewlabels::train::head::fit_class_head(ctx, &mut m, &data, &labels, &hc, &mut |_, _| {})
            .unwrap();
    assert_eq!(rep.train_accuracy as f32, acc);
    let (rust_pred, _) = m.classify(ctx, &x, n).unwrap();
    assert_eq!(rust_pred, pred);
}
