//! `lost-<lsn:020>[-<n>].bin`: the bytes a repair cut from the log, kept for forensics and
//! hand recovery. A sequence of sections, each a 4 KiB header block followed by the data,
//! zero-padded to a whole block (layout in `docs/formats.md, "Write-ahead log"`).

use std::path::{Path, PathBuf};

use mantis_storage::{align_up, OpenMode, Storage, StorageError, BLOCK_SIZE};

use crate::error::WalError;
use crate::segment::{SegmentReader, LOST_PREFIX, READ_WINDOW_BYTES};

pub const LOST_MAGIC: [u8; 8] = *b"MWALLOST";
pub const LOST_FORMAT_VERSION: u16 = 1;
/// Copies made by repeated repairs of the same spot get suffixes; beyond this, give up.
const LOST_FILE_COPIES_MAX: u32 = 1000;

/// A piece of a segment to keep: `[from, to)` of `path`.
pub struct LostRegion {
    pub path: PathBuf,
    pub from: u64,
    pub to: u64,
}

fn section_header(name: &str, source_offset: u64, data_len: u64, data_crc: u32) -> Vec<u8> {
    let name = name.as_bytes();
    let name_len = name.len().min(BLOCK_SIZE - 64);
    let mut b = vec![0u8; BLOCK_SIZE];
    b[0..8].copy_from_slice(&LOST_MAGIC);
    b[8..10].copy_from_slice(&LOST_FORMAT_VERSION.to_le_bytes());
    b[10..12].copy_from_slice(&(name_len as u16).to_le_bytes());
    b[12..20].copy_from_slice(&source_offset.to_le_bytes());
    b[20..28].copy_from_slice(&data_len.to_le_bytes());
    b[28..32].copy_from_slice(&data_crc.to_le_bytes());
    b[36..36 + name_len].copy_from_slice(&name[..name_len]);
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..32]);
    h.update(&b[36..36 + name_len]);
    let crc = h.finalize();
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

async fn create_unique(
    storage: &dyn Storage,
    dir: &Path,
    first_lost_lsn: u64,
) -> Result<(PathBuf, std::rc::Rc<dyn mantis_storage::File>), StorageError> {
    let mut last_err = None;
    for n in 0..LOST_FILE_COPIES_MAX {
        let name = if n == 0 {
            format!("{LOST_PREFIX}{first_lost_lsn:020}.bin")
        } else {
            format!("{LOST_PREFIX}{first_lost_lsn:020}-{n}.bin")
        };
        let path = dir.join(name);
        if storage.exists(&path).await? {
            continue;
        }
        match storage.open(&path, OpenMode::CreateNew).await {
            Ok(f) => return Ok((path, f)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(StorageError::Io {
        op: "create lost file",
        path: dir.to_path_buf(),
        offset: 0,
        source: std::io::Error::other("too many lost-file copies"),
    }))
}

/// Copies `regions` into a new lost file, synced (file and directory) before returning, so
/// that the log may be cut afterwards without losing the only copy.
pub async fn write_lost_file(
    storage: &dyn Storage,
    dir: &Path,
    shard: usize,
    first_lost_lsn: u64,
    regions: &[LostRegion],
) -> Result<PathBuf, WalError> {
    let io = |op| move |e| WalError::storage(shard, op, e);
    let (path, out) = create_unique(storage, dir, first_lost_lsn)
        .await
        .map_err(io("create lost file"))?;
    let mut at = 0u64;
    for region in regions {
        let mut reader = SegmentReader::open(storage, &region.path)
            .await
            .map_err(io("read cut segment"))?;
        let header_at = at;
        at += BLOCK_SIZE as u64;
        let mut crc = crc32fast::Hasher::new();
        let mut copied = 0u64;
        let mut src = region.from;
        while src < region.to {
            let want = ((region.to - src) as usize).min(READ_WINDOW_BYTES);
            let data = reader
                .bytes(src, want)
                .await
                .map_err(io("read cut segment"))?;
            if data.is_empty() {
                break;
            }
            crc.update(data);
            let mut block = data.to_vec();
            block.resize(align_up(block.len()), 0);
            out.write_at(at, &block)
                .await
                .map_err(io("write lost file"))?;
            at += block.len() as u64;
            copied += data.len() as u64;
            src += data.len() as u64;
            glommio::yield_if_needed().await;
        }
        reader.close().await;
        let name = region
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let header = section_header(&name, region.from, copied, crc.finalize());
        out.write_at(header_at, &header)
            .await
            .map_err(io("write lost file"))?;
    }
    out.sync().await.map_err(io("sync lost file"))?;
    out.close().await.map_err(io("close lost file"))?;
    storage
        .sync_dir(dir)
        .await
        .map_err(io("sync WAL directory"))?;
    Ok(path)
}
