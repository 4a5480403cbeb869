//! Model and checkpoint files: safetensors with string metadata, written atomically
//! (temporary file, fsync, rename, fsync of the folder) and checked on load: a CRC-32 of the
//! data section and its length are stored in the metadata, so a truncated or altered file is
//! refused rather than read as valid.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Metadata key of the data section's CRC-32 (hex).
pub const CRC_KEY: &str = "fewlabels.crc32";
/// Metadata key of the data section's length in bytes.
pub const LEN_KEY: &str = "fewlabels.data_bytes";
/// Metadata key of the file format version.
pub const FORMAT_KEY: &str = "fewlabels.format";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// An f32 tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(HostTensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

/// The contents of a tensor file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, HostTensor>,
}

fn crc_of(tensors: &BTreeMap<String, HostTensor>) -> (u32, u64) {
    // Tensors are laid out in name order (safetensors sorts by dtype then name; all are f32).
    let mut h = crc32fast::Hasher::new();
    let mut len = 0u64;
    for t in tensors.values() {
        let b: &[u8] = bytemuck::cast_slice(&t.data);
        h.update(b);
        len += b.len() as u64;
    }
    (h.finalize(), len)
}

impl TensorFile {
    /// Serialise to bytes (safetensors), adding the checksum and format keys.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (crc, len) = crc_of(&self.tensors);
        let mut meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        meta.insert(CRC_KEY.into(), format!("{crc:08x}"));
        meta.insert(LEN_KEY.into(), len.to_string());
        meta.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
        let views: Vec<(String, safetensors::tensor::TensorView)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    t.shape.clone(),
                    bytemuck::cast_slice(&t.data),
                )
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Shape(format!("tensor {name}: {e}")))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::Format(format!("cannot serialise: {e}")))?;
        sort_header(bytes)
    }

    /// Parse bytes, refusing anything that is not a complete, unaltered file of this format.
    pub fn from_bytes(bytes: &[u8]) -> Result<TensorFile> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e}")))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Format(format!(
                    "tensor {name} has dtype {:?}; only F32 is supported",
                    view.dtype()
                )));
            }
            let data: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            tensors.insert(
                name.clone(),
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        if let Some(v) = metadata.get(FORMAT_KEY) {
            if v != FORMAT_VERSION {
                return Err(Error::Format(format!(
                    "file format version {v}; this build reads {FORMAT_VERSION}"
                )));
            }
        }
        let (crc, len) = crc_of(&tensors);
        if let Some(want) = metadata.get(LEN_KEY) {
            if want != &len.to_string() {
                return Err(Error::Format(format!(
                    "data section is {len} bytes, the file says {want}: truncated or altered"
                )));
            }
        }
        if let Some(want) = metadata.get(CRC_KEY) {
            if want != &format!("{crc:08x}") {
                return Err(Error::Format(format!(
                    "checksum mismatch (crc32 {crc:08x}, the file says {want}): the file is corrupt"
                )));
            }
        }
        let mut file = TensorFile { metadata, tensors };
        for k in [CRC_KEY, LEN_KEY, FORMAT_KEY] {
            file.metadata.remove(k);
        }
        Ok(file)
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Write atomically: a crash at any moment leaves either the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes)
    }
}

/// Rewrite a safetensors header with its JSON keys in sorted order, so that the same contents
/// always give the same bytes (the metadata goes through a `HashMap`, whose order varies from
/// run to run). The keys and values are unchanged, so the header keeps its length.
fn sort_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                serde_json::Value::Object(out)
            }
            other => other.clone(),
        }
    }
    let bad = |what: &str| Error::Format(format!("serialised header: {what}"));
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad("too short"))?) as usize;
    let text = std::str::from_utf8(&bytes[8..8 + n]).map_err(|_| bad("not UTF-8"))?;
    let json = text.trim_end_matches(' ');
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let s = serde_json::to_string(&sorted(&v)).map_err(|e| bad(&e.to_string()))?;
    if s.len() != json.len() {
        return Err(bad("sorting changed its length"));
    }
    bytes[8..8 + s.len()].copy_from_slice(s.as_bytes());
    Ok(bytes)
}

/// Write `bytes` to `path` through a temporary file in the same folder, fsync, rename, and
/// fsync the folder (so that the rename itself survives a power cut).
///
/// The temporary file is `.<name>.tmp-<pid>-<n>`, `n` counting this process's writes: two
/// threads saving to one path at once each write their own file (the last rename wins, and
/// the file at `path` is always one whole write). Such a name is never the path of a model
/// or checkpoint, and a killed write's leftover is refused by [`TensorFile::from_bytes`]
/// unless it was complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |what: &str, e: std::io::Error| Error::Io(format!("{what} {}: {e}", path.display()));
    let result = (|| {
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| io("cannot create temporary file for", e))?;
        f.write_all(bytes).map_err(|e| io("cannot write", e))?;
        f.sync_all().map_err(|e| io("cannot sync", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", e))?;
        sync_dir(&dir).map_err(|e| io("cannot sync the folder of", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync a folder (Unix). Where a folder cannot be opened or synced as a file (Windows; some
/// file systems answer EINVAL), the rename is as durable as the system makes it.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir)?;
        match d.sync_all() {
            Err(e) if e.raw_os_error() == Some(22) => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TensorFile {
        let mut f = TensorFile::default();
        f.metadata.insert("config".into(), "{\"x\":1}".into());
        f.tensors.insert(
            "a.weight".into(),
            HostTensor::new(&[2, 3], vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE, 0.0, -0.0]).unwrap(),
        );
        f.tensors
            .insert("b".into(), HostTensor::new(&[1], vec![42.0]).unwrap());
        f
    }

    #[test]
    fn roundtrip_is_bit_exact() {
        let f = sample();
        let dir = std::env::temp_dir().join(format!("fl-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.safetensors");
        f.save(&p).unwrap();
        let g = TensorFile::load(&p).unwrap();
        assert_eq!(f.metadata, g.metadata);
        for (k, t) in &f.tensors {
            let u = &g.tensors[k];
            assert_eq!(t.shape, u.shape);
            let a: Vec<u32> = t.data.iter().map(|x| x.to_bits()).collect();
            let b: Vec<u32> = u.data.iter().map(|x| x.to_bits()).collect();
            assert_eq!(a, b, "{k}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_and_altered_files_are_refused() {
        let bytes = sample().to_bytes().unwrap();
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                TensorFile::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        let e = TensorFile::from_bytes(&bad).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(TensorFile::from_bytes(b"hello world, not a model").is_err());
    }
}
