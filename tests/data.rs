//! Data loading: IDX files and Fashion-MNIST, image folders with a CSV of labels, the seeded
//! stratified choice of labelled images, and the seeded, resumable epoch order. No device.

use fewlabels::data::idx::{self, parse_idx, read_idx};
use fewlabels::data::{
    fashion_mnist, image_folder, keep_labels, stratify, Dataset, FolderOptions, LabelSpec, Order,
    OrderState, Split, FASHION_MNIST_DIR,
};
use fewlabels::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fewlabels-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn idx_parses_plain_and_gzip() {
    let data: Vec<u8> = (0..24).collect();
    let plain = idx_bytes(&[2, 3, 4], &data);
    let a = parse_idx(&plain, "a").unwrap();
    assert_eq!(a.dims, vec![2, 3, 4]);
    assert_eq!(a.data, data);
    let b = parse_idx(&gzip(&plain), "b").unwrap();
    assert_eq!(a, b);
    let dir = temp_dir("idx");
    let p = dir.join("x-ubyte.gz");
    std::fs::write(&p, gzip(&plain)).unwrap();
    assert_eq!(read_idx(&p).unwrap(), a);
}

#[test]
fn idx_refuses_bad_files_naming_them() {
    let good = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "too short"),
        (b"GARBAGE FILE".to_vec(), "not an IDX file"),
        (
            vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
            "value type 0x0d",
        ),
        (vec![0, 0, 8, 0], "no dimensions"),
        (vec![0, 0, 8, 3, 0, 0, 0, 2], "truncated header"),
        (good[..good.len() - 1].to_vec(), "(truncated)"),
        ([&good[..], &[7]].concat(), "need 6 values, the file has 7"),
        (gzip(&good)[..20].to_vec(), "bad gzip data"),
        (
            idx_bytes(&[0xffff_ffff, 0xffff_ffff, 0xffff_ffff], &[]),
            "too large",
        ),
    ];
    for (bytes, want) in cases {
        let e = message(parse_idx(&bytes, "some-file.idx").unwrap_err());
        assert!(
            e.contains("some-file.idx") && e.contains(want),
            "{want:?} not in {e:?}"
        );
    }
    let e = message(read_idx(Path::new("/nonexistent/f-ubyte.gz")).unwrap_err());
    assert!(e.contains("/nonexistent/f-ubyte.gz"), "{e}");
}

/// Writes a small Fashion-MNIST look-alike: n 28x28 images and labels.
fn write_fake_fashion(dir: &Path, prefix: &str, n: usize, gz: bool) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = idx_bytes(&[n as u32, 28, 28], &pixels);
    let lab = idx_bytes(&[n as u32], &labels);
    let (img, lab, ext) = if gz {
        (gzip(&img), gzip(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lab).unwrap();
    (pixels, labels)
}

#[test]
fn fashion_layout_pads_and_scales() {
    let dir = temp_dir("fake-fashion");
    let (pixels, labels) = write_fake_fashion(&dir, "train", 5, true);
    write_fake_fashion(&dir, "t10k", 3, false);
    let ds = fashion_mnist(&dir, Split::Train).unwrap();
    assert_eq!(
        (ds.len(), ds.resolution, ds.channels, ds.classes),
        (5, 32, 1, 10)
    );
    assert_eq!(
        ds.labels,
        labels.iter().map(|&l| l as i32).collect::<Vec<_>>()
    );
    for i in 0..5 {
        let im = ds.image(i);
        for y in 0..32 {
            for x in 0..32 {
                let v = im[y * 32 + x];
                if (2..30).contains(&y) && (2..30).contains(&x) {
                    let p = pixels[i * 784 + (y - 2) * 28 + (x - 2)];
                    assert_eq!(v, p as f32 / 127.5 - 1.0);
                } else {
                    assert_eq!(v, -1.0, "padding at ({y}, {x})");
                }
            }
        }
    }
    assert_eq!(fashion_mnist(&dir, Split::Test).unwrap().len(), 3);
}

#[test]
fn fashion_layout_errors_name_the_file() {
    let dir = temp_dir("bad-fashion");
    write_fake_fashion(&dir, "train", 4, true);
    // Labels for 3 images with 4 images.
    let lab = dir.join("train-labels-idx1-ubyte.gz");
    std::fs::write(&lab, gzip(&idx_bytes(&[3], &[0, 1, 2]))).unwrap();
    let e = message(fashion_mnist(&dir, Split::Train).unwrap_err());
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("expected [4]"),
        "{e}"
    );
    // A label of 10.
    std::fs::write(&lab, gzip(&idx_bytes(&[4], &[0, 1, 10, 2]))).unwrap();
    let e = message(fashion_mnist(&dir, Split::Train).unwrap_err());
    assert!(e.contains("label 10 of image 2"), "{e}");
    // Images of the wrong rank.
    let img = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&img, gzip(&idx_bytes(&[4, 784], &vec![0; 4 * 784]))).unwrap();
    let e = message(fashion_mnist(&dir, Split::Train).unwrap_err());
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Truncated gzip.
    let full = gzip(&idx_bytes(&[4, 28, 28], &vec![9; 4 * 784]));
    std::fs::write(&img, &full[..full.len() / 2]).unwrap();
    let e = message(fashion_mnist(&dir, Split::Train).unwrap_err());
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Missing files.
    let e = message(fashion_mnist(&dir, Split::Test).unwrap_err());
    assert!(e.contains("t10k-images-idx3-ubyte.gz"), "{e}");
    // Images that do not fit.
    let big = idx_bytes(&[1, 33, 33], &[0; 33 * 33]);
    let e = message(
        idx::idx_dataset(
            &parse_idx(&big, "big").unwrap(),
            "big",
            &parse_idx(&idx_bytes(&[1], &[0]), "l").unwrap(),
            "l",
            10,
            32,
        )
        .unwrap_err(),
    );
    assert!(e.contains("big") && e.contains("33x33"), "{e}");
}

#[test]
fn real_fashion_mnist() {
    let dir = Path::new(FASHION_MNIST_DIR);
    if !dir.exists() {
        println!("skipped: {FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)");
        return;
    }
    for (split, n) in [(Split::Train, 60000), (Split::Test, 10000)] {
        let ds = fashion_mnist(dir, split).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!((ds.resolution, ds.channels, ds.classes), (32, 1, 10));
        assert_eq!(ds.images.len(), n * 32 * 32);
        assert!(ds.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Fashion-MNIST is balanced: n / 10 images of each class.
        assert_eq!(ds.class_counts(), vec![n / 10; 10]);
        let mut max = -1.0f32;
        for i in 0..n {
            let im = ds.image(i);
            for y in 0..32 {
                for x in 0..32 {
                    if !((2..30).contains(&y) && (2..30).contains(&x)) {
                        assert_eq!(im[y * 32 + x], -1.0);
                    }
                }
            }
            max = max.max(im.iter().copied().fold(-1.0, f32::max));
        }
        assert_eq!(max, 1.0, "some pixel is 255");
    }
}

fn write_png_grey(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn write_png_rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_with_csv() {
    let dir = temp_dir("folder");
    // Written out of name order; read back sorted by name.
    for (i, name) in ["c.png", "a.png", "b.PNG", "d.png"].iter().enumerate() {
        write_png_rgb(&dir.join(name), 4, 4, |x, y| {
            [(i * 50) as u8, (x * 60) as u8, (y * 60) as u8]
        });
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let csv = dir.join("labels.csv");
    std::fs::write(&csv, "filename,label\na.png,2\n\n# a comment\nd.png, 0\n").unwrap();
    let mut opts = FolderOptions::new(4, 3, 3);
    opts.labels = Some(csv.clone());
    let ds = image_folder(&dir, &opts).unwrap();
    assert_eq!(
        (ds.len(), ds.resolution, ds.channels, ds.classes),
        (4, 4, 3, 3)
    );
    // a, b, c, d = written as 1, 2, 0, 3.
    assert_eq!(ds.labels, vec![2, -1, -1, 0]);
    let px = |img: usize, x: usize, y: usize, c: usize| ds.image(img)[(y * 4 + x) * 3 + c];
    assert_eq!(px(0, 0, 0, 0), 50.0 / 127.5 - 1.0);
    assert_eq!(px(2, 0, 0, 0), -1.0);
    assert_eq!(px(3, 3, 1, 1), 180.0 / 127.5 - 1.0);
    assert_eq!(px(3, 3, 1, 2), 60.0 / 127.5 - 1.0);
    // Without a header, and without a CSV.
    std::fs::write(&csv, "\u{feff}b.PNG,1\r\nc.png,1\r\n").unwrap();
    assert_eq!(
        image_folder(&dir, &opts).unwrap().labels,
        vec![-1, 1, 1, -1]
    );
    opts.labels = None;
    assert_eq!(image_folder(&dir, &opts).unwrap().labels, vec![-1; 4]);

    // A grey folder.
    let grey = temp_dir("folder-grey");
    write_png_grey(&grey.join("x.png"), 2, 2, |x, y| (x * 254 + y) as u8);
    let ds = image_folder(&grey, &FolderOptions::new(2, 1, 1)).unwrap();
    assert_eq!(
        ds.images,
        vec![-1.0, 254.0 / 127.5 - 1.0, 1.0 / 127.5 - 1.0, 1.0]
    );
    // 16-bit grey.
    std::fs::remove_file(grey.join("x.png")).unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(2, 1, |x, _| {
        image::Luma([x as u16 * 65535])
    })
    .save(grey.join("y.png"))
    .unwrap();
    let ds = image_folder(&grey, &FolderOptions::new(2, 1, 1));
    let e = message(ds.unwrap_err());
    assert!(e.contains("2x1 grey (16-bit), expected 2x2 grey"), "{e}");
    std::fs::remove_file(grey.join("y.png")).unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(2, 2, |x, y| {
        image::Luma([(x * 65533 + y * 2) as u16])
    })
    .save(grey.join("y.png"))
    .unwrap();
    let ds = image_folder(&grey, &FolderOptions::new(2, 1, 1)).unwrap();
    assert_eq!(
        ds.images,
        vec![-1.0, 65533.0 / 32767.5 - 1.0, 2.0 / 32767.5 - 1.0, 1.0]
    );
}

#[test]
fn image_folder_csv_errors_name_the_line() {
    let dir = temp_dir("folder-csv");
    for name in ["a.png", "b.png"] {
        write_png_grey(&dir.join(name), 2, 2, |_, _| 0);
    }
    let csv = dir.join("l.csv");
    let mut opts = FolderOptions::new(2, 1, 4);
    opts.labels = Some(csv.clone());
    let cases = [
        (
            "a.png,1\nzzz.png,1\n",
            "line 2",
            "\"zzz.png\" is not an image",
        ),
        (
            "a.png,1\nb.png,2\na.png,3\n",
            "line 3",
            "already labelled on line 1",
        ),
        (
            "filename,label\na.png,one\n",
            "line 2",
            "\"one\" of \"a.png\" is not an integer",
        ),
        ("a.png,4\n", "line 1", "label 4 of \"a.png\" is not in 0..4"),
        ("a.png,1\nb.png,-1\n", "line 2", "label -1"),
        ("a.png,1\nb.png\n", "line 2", "not `filename,label`"),
    ];
    for (text, line, want) in cases {
        std::fs::write(&csv, text).unwrap();
        let e = message(image_folder(&dir, &opts).unwrap_err());
        assert!(
            e.contains("l.csv") && e.contains(line) && e.contains(want),
            "{text:?}: {e}"
        );
    }
    opts.labels = Some(dir.join("missing.csv"));
    let e = message(image_folder(&dir, &opts).unwrap_err());
    assert!(e.contains("missing.csv"), "{e}");
}

#[test]
fn image_folder_refuses_wrong_sizes_and_channels() {
    let dir = temp_dir("folder-wrong");
    write_png_grey(&dir.join("a.png"), 8, 8, |x, _| x as u8 * 30);
    write_png_rgb(&dir.join("b.png"), 8, 8, |x, y| [x as u8, y as u8, 100]);
    image::RgbaImage::from_pixel(8, 8, image::Rgba([10, 20, 30, 255]))
        .save(dir.join("c.png"))
        .unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50]))
        .save(dir.join("d.jpg"))
        .unwrap();

    let e = message(image_folder(&dir, &FolderOptions::new(16, 1, 1)).unwrap_err());
    assert!(
        e.contains("a.png") && e.contains("8x8 grey (8-bit), expected 16x16 grey"),
        "{e}"
    );
    let e = message(image_folder(&dir, &FolderOptions::new(8, 3, 1)).unwrap_err());
    assert!(
        e.contains("a.png") && e.contains("8x8 grey") && e.contains("expected 8x8 RGB"),
        "{e}"
    );
    let e = message(image_folder(&dir, &FolderOptions::new(8, 1, 1)).unwrap_err());
    assert!(
        e.contains("b.png") && e.contains("8x8 RGB") && e.contains("expected 8x8 grey"),
        "{e}"
    );
    std::fs::remove_file(dir.join("a.png")).unwrap();
    let e = message(image_folder(&dir, &FolderOptions::new(8, 3, 1)).unwrap_err());
    assert!(e.contains("c.png") && e.contains("RGBA"), "{e}");

    // With conversion everything loads, in both directions.
    write_png_grey(&dir.join("a.png"), 8, 8, |x, _| x as u8 * 30);
    let mut opts = FolderOptions::new(8, 3, 1);
    opts.convert = true;
    let rgb = image_folder(&dir, &opts).unwrap();
    assert_eq!(rgb.len(), 4);
    let a = rgb.image(0);
    assert_eq!(&a[3 * 3..3 * 3 + 3], &[90.0 / 127.5 - 1.0; 3]); // grey repeated
    assert_eq!(
        &rgb.image(2)[..3],
        &[10.0 / 127.5 - 1.0, 20.0 / 127.5 - 1.0, 30.0 / 127.5 - 1.0]
    );
    let d = rgb.image(3); // JPEG: close to the colour written
    assert!((d[0] - (200.0 / 127.5 - 1.0)).abs() < 0.05, "{}", d[0]);
    opts.channels = 1;
    let grey = image_folder(&dir, &opts).unwrap();
    assert_eq!((grey.channels, grey.images.len()), (1, 4 * 64));
    assert!(grey.images.iter().all(|v| (-1.0..=1.0).contains(v)));

    // A file that is not an image, and an empty folder.
    std::fs::write(dir.join("e.png"), b"not a png").unwrap();
    let e = message(image_folder(&dir, &opts).unwrap_err());
    assert!(e.contains("e.png"), "{e}");
    let empty = temp_dir("folder-empty");
    let e = message(image_folder(&empty, &opts).unwrap_err());
    assert!(e.contains("no .png"), "{e}");
}

#[test]
fn label_spec_parses_and_refuses() {
    assert_eq!(LabelSpec::parse("all").unwrap(), LabelSpec::All);
    assert_eq!(LabelSpec::parse("NONE").unwrap(), LabelSpec::None);
    assert_eq!(LabelSpec::parse("600").unwrap(), LabelSpec::Count(600));
    assert_eq!(LabelSpec::parse(" 10% ").unwrap(), LabelSpec::Percent(10.0));
    assert_eq!(LabelSpec::parse("2.5%").unwrap(), LabelSpec::Percent(2.5));
    assert_eq!("0".parse::<LabelSpec>().unwrap(), LabelSpec::Count(0));
    for s in ["all", "none", "600", "10%", "2.5%"] {
        assert_eq!(LabelSpec::parse(s).unwrap().to_string(), s);
    }
    for (s, why) in [
        ("-5", "negative"),
        ("-1%", "negative"),
        ("101%", "more than 100%"),
        ("abc", "not a count"),
        ("", "not a count"),
        ("1.5", "not a count"),
        ("inf%", "not a number"),
        ("%", "not a number"),
        ("99999999999999999999999", "too large"),
    ] {
        let e = message(LabelSpec::parse(s).unwrap_err());
        assert!(e.contains(why) && !e.contains('\n'), "{s:?}: {e}");
    }
}

/// 103 images over 4 classes with 40, 30, 30 and 3 of them, all labelled.
fn skewed() -> Dataset {
    let labels: Vec<i32> = (0..103)
        .map(|i| match i % 10 {
            _ if i >= 100 => 3,
            0..=3 => 0,
            4..=6 => 1,
            _ => 2,
        })
        .collect();
    let images = (0..103).map(|i| i as f32 / 103.0).collect();
    Dataset::new(images, 1, 1, labels, 4).unwrap()
}

#[test]
fn keep_labels_is_stratified_and_reproducible() {
    let full = skewed();
    assert_eq!(full.class_counts(), vec![40, 30, 30, 3]);
    for (spec, want) in [
        ("all", vec![40, 30, 30, 3]),
        ("none", vec![0, 0, 0, 0]),
        ("12", vec![3, 3, 3, 3]),
        ("20", vec![6, 6, 5, 3]),    // class 3 has only 3
        ("43", vec![14, 13, 13, 3]), // class 3 runs out; the rest spread evenly
        ("10%", vec![3, 3, 2, 2]),   // 10.3 -> 10 labels
        ("103", vec![40, 30, 30, 3]),
    ] {
        let mut ds = full.clone();
        keep_labels(&mut ds, LabelSpec::parse(spec).unwrap(), 5).unwrap();
        // Which classes get the one extra is seeded: compare sorted counts.
        let mut got = ds.class_counts();
        got.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(got, want, "{spec}");
        // Only labelled images keep a label, and keep their own.
        for (a, b) in ds.labels.iter().zip(&full.labels) {
            assert!(*a == -1 || a == b);
        }
        assert_eq!(ds.images, full.images);
    }
    // The same seed chooses the same images; another seed others.
    let choose = |seed| {
        let mut ds = full.clone();
        keep_labels(&mut ds, LabelSpec::Count(10), seed).unwrap();
        ds.labels
    };
    assert_eq!(choose(1), choose(1));
    assert_ne!(choose(1), choose(2));
    // Per-class counts differ by at most one for any total, and add up.
    for total in 0..=103 {
        let t = stratify(&[40, 30, 30, 3], total, 9);
        assert_eq!(t.iter().sum::<usize>(), total);
        let capped: Vec<usize> = t
            .iter()
            .zip([40, 30, 30, 3])
            .filter(|(&x, a)| x < *a)
            .map(|(&x, _)| x)
            .collect();
        if let (Some(lo), Some(hi)) = (capped.iter().min(), t.iter().max()) {
            assert!(hi - lo <= 1, "{total}: {t:?}");
        }
    }
    // Reducing an already reduced set, and impossible requests.
    let mut ds = full.clone();
    keep_labels(&mut ds, LabelSpec::Count(10), 3).unwrap();
    let before = ds.labels.clone();
    let e = message(keep_labels(&mut ds, LabelSpec::Count(11), 3).unwrap_err());
    assert!(
        e.contains("11 labels") && e.contains("only 10 labelled"),
        "{e}"
    );
    assert_eq!(ds.labels, before, "unchanged after an error");
    let e = message(keep_labels(&mut ds, LabelSpec::Percent(50.0), 3).unwrap_err());
    assert!(e.contains("50% of 103 images (52 labels)"), "{e}");
    keep_labels(&mut ds, LabelSpec::Count(4), 3).unwrap();
    assert_eq!(ds.class_counts(), vec![1, 1, 1, 1]);
}

#[test]
fn batch_gathers_images_and_labels() {
    let ds = Dataset::new(
        (0..3 * 2 * 2 * 3).map(|i| i as f32 / 36.0).collect(),
        2,
        3,
        vec![0, -1, 1],
        2,
    )
    .unwrap();
    let (x, y) = ds.batch(&[2, 0, 2]);
    assert_eq!(y, vec![1, 0, 1]);
    assert_eq!(x.len(), 3 * 12);
    assert_eq!(&x[..12], ds.image(2));
    assert_eq!(&x[12..24], ds.image(0));
    assert_eq!(ds.labelled(), 2);
    // Dataset::new checks its parts.
    assert!(Dataset::new(vec![0.0; 5], 2, 1, vec![0], 1).is_err());
    assert!(Dataset::new(vec![1.5; 4], 2, 1, vec![0], 1).is_err());
    assert!(Dataset::new(vec![0.0; 4], 2, 1, vec![1], 1).is_err());
    assert!(Dataset::new(vec![0.0; 8], 2, 2, vec![0], 1).is_err());
}

#[test]
fn order_is_seeded_complete_and_resumable() {
    let n = 10;
    let mut a = Order::new(7, n).unwrap();
    let mut b = Order::new(7, n).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let x = a.next_batch(4);
        assert_eq!(x, b.next_batch(4));
        seen.extend(x);
    }
    // Each epoch is a permutation, and batches run across epochs.
    for (e, chunk) in seen.chunks(n).enumerate() {
        let mut s = chunk.to_vec();
        s.sort_unstable();
        assert_eq!(s, (0..n).collect::<Vec<_>>());
        assert_eq!(chunk, Order::permutation(7, n, e as u64));
    }
    assert_ne!(seen[..n], seen[n..]);
    assert_eq!(
        a.state(),
        OrderState {
            seed: 7,
            len: n,
            epoch: 2,
            pos: 0
        }
    );
    let json = serde_json::to_string(&a.state()).unwrap();
    assert_eq!(
        serde_json::from_str::<OrderState>(&json).unwrap(),
        a.state()
    );
    assert_ne!(Order::new(8, n).unwrap().next_batch(n), seen[..n]);

    // Resuming from a stored state gives what the uninterrupted order gives.
    let mut c = Order::new(7, n).unwrap();
    c.next_batch(3);
    c.next_batch(9);
    let stored = c.state();
    assert_eq!(
        stored,
        OrderState {
            seed: 7,
            len: n,
            epoch: 1,
            pos: 2
        }
    );
    let mut d = Order::resume(stored).unwrap();
    assert_eq!(d.next_batch(13), c.next_batch(13));
    assert_eq!(d.next_batch(1), [Order::permutation(7, n, 2)[5]]);

    // A large order is a permutation too, and depends only on (seed, epoch).
    let p = Order::permutation(1, 60000, 3);
    let mut s = p.clone();
    s.sort_unstable();
    assert!(s.iter().enumerate().all(|(i, &v)| i == v));
    assert_eq!(p, Order::permutation(1, 60000, 3));

    assert!(Order::new(1, 0).is_err());
    assert!(Order::resume(OrderState {
        seed: 1,
        len: 4,
        epoch: 0,
        pos: 4
    })
    .is_err());
}
