//! JSON of a model config and of a training config (a file's metadata), and, for an accepted
//! model config, the tensor specs and parameter counts derived from it.
#![no_main]
use fewlabels::model::{spec, Config};
use fewlabels::train::TrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_json(text) {
        let g = spec::generator(&cfg, "G");
        let d = spec::discriminator(&cfg);
        let _ = (spec::parameter_count(&g), spec::parameter_count(&d));
    }
    let _ = TrainConfig::from_json(text);
});
