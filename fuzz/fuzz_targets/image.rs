//! A PNG or JPEG file of an image folder, decoded as the folder loader does. The first byte
//! picks the expected resolution, channels and the convert option.
#![no_main]
use fewlabels::data::{decode_image, FolderOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let resolution = [1, 2, 4, 8, 16, 32, 64, 128][(pick & 7) as usize];
    let channels = if pick & 8 == 0 { 1 } else { 3 };
    let mut opts = FolderOptions::new(resolution, channels, 10);
    opts.convert = pick & 16 != 0;
    let mut out = Vec::new();
    if decode_image(bytes, "fuzz", &opts, &mut out).is_ok() {
        assert_eq!(out.len(), resolution * resolution * channels);
        assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
});
