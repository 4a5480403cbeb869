//! A labels CSV of an image folder. The first byte picks the number of classes; the folder
//! holds a fixed set of names.
#![no_main]
use fewlabels::data::parse_labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&classes, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let names: Vec<String> = ["a.png", "b.jpg", "c d.png", "e,f.png", "ü.jpeg"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let _ = parse_labels(text, "fuzz.csv", &names, classes as usize);
});
