//! A model or checkpoint file's bytes through every host-side check a load makes: the
//! safetensors container, length and CRC, the model config, each tensor against the config
//! (`Model::check_file`), and a checkpoint's training config, Adam state and counters.
#![no_main]
use fewlabels::model::file::TensorFile;
use fewlabels::model::Model;
use fewlabels::train::check_checkpoint_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = TensorFile::from_bytes(data) {
        let _ = Model::check_file(&file);
        let _ = check_checkpoint_file(&file);
    }
});
