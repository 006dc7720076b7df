//! `DATA_DIR/MANTIS`: pins the shard count of a data directory. Keys are placed by hash modulo
//! the shard count, so opening a directory with another count would make keys unreachable:
//! refused with a clear error instead.
//!
//! Text format (version 1): `mantisdb-layout 1\nshards <n>\n`.

use std::path::Path;

use mantis_storage::format::{LAYOUT_FILE_NAME, LAYOUT_VERSION};

use crate::error::{EngineError, Result};

fn layout_err(dir: &Path, reason: String) -> EngineError {
    EngineError::Layout {
        dir: dir.display().to_string(),
        reason,
    }
}

/// Reads the layout file, or writes one for a new directory. Returns the shard count.
/// Plain blocking file I/O: this runs once, before any executor starts.
pub fn open_or_create(dir: &Path, shards: usize) -> Result<usize> {
    let path = dir.join(LAYOUT_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = parse(&text).ok_or_else(|| {
                layout_err(dir, format!("unreadable layout file {}", path.display()))
            })?;
            if found != shards {
                return Err(layout_err(
                    dir,
                    format!("it was created with {found} shards, asked to open with {shards}; start with --shards {found}"),
                ));
            }
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| layout_err(dir, format!("create: {e}")))?;
            let tmp = dir.join(format!("{LAYOUT_FILE_NAME}.tmp"));
            let text = format!("mantisdb-layout {LAYOUT_VERSION}\nshards {shards}\n");
            write_synced(&tmp, text.as_bytes())
                .map_err(|e| layout_err(dir, format!("write {}: {e}", tmp.display())))?;
            // Rename after the content is durable, then sync the directory so the name is too.
            std::fs::rename(&tmp, &path).map_err(|e| layout_err(dir, format!("rename: {e}")))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| layout_err(dir, format!("sync dir: {e}")))?;
            Ok(shards)
        }
        Err(e) => Err(layout_err(dir, format!("read {}: {e}", path.display()))),
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Reads the shard count of an existing data directory, if it has a layout file.
pub fn read_shards(dir: &Path) -> Option<usize> {
    parse(&std::fs::read_to_string(dir.join(LAYOUT_FILE_NAME)).ok()?)
}

fn parse(text: &str) -> Option<usize> {
    let mut lines = text.lines();
    let head = lines.next()?;
    if head != format!("mantisdb-layout {LAYOUT_VERSION}") {
        return None;
    }
    lines
        .next()?
        .strip_prefix("shards ")?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pins_the_shard_count() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(open_or_create(d.path(), 3).unwrap(), 3);
        assert_eq!(open_or_create(d.path(), 3).unwrap(), 3);
        let e = open_or_create(d.path(), 2).unwrap_err();
        assert!(e.to_string().contains("created with 3 shards"), "{e}");
        assert_eq!(read_shards(d.path()), Some(3));
    }
}
