//! IDX bytes, raw or gzip-compressed (the Fashion-MNIST loader's parser).
#![no_main]
use fewlabels::data::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_idx(data, "fuzz");
});
