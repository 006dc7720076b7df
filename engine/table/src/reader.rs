//! [`Segment`]: an open, verified segment file: point lookups, range cursors, and a full
//! verification pass for the scrubber.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_integrity::Algorithm;
use mantis_storage::{align_up, File, OpenMode, Storage, BLOCK_SIZE};
use xorf::BinaryFuse16;

use crate::block::Block;
use crate::cache::{BlockCache, BlockKey};
use crate::entry::Entry;
use crate::error::{Result, TableError};
use crate::filter;
use crate::footer::{Footer, MetaHandle, FOOTER_BYTES};
use crate::frame::unframe;
use crate::index::{self, IndexEntry};
use crate::iter::SegmentIter;
use crate::props::SegmentProperties;
use crate::writer::{SegmentMeta, DATA_BLOCK_RAW_MAX_BYTES, META_BLOCK_RAW_MAX_BYTES};

/// What [`Segment::verify`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blocks_checked: u64,
    pub entries_checked: u64,
    pub bytes_checked: u64,
}

/// The parsed tail of a segment: everything but the data blocks.
struct Layout {
    meta: SegmentMeta,
    index: Vec<IndexEntry>,
    filter: BinaryFuse16,
}

/// An open segment. Shared by `Rc`; iterators hold a reference to it.
pub struct Segment {
    id: u64,
    path: PathBuf,
    file: Rc<dyn File>,
    cache: Rc<BlockCache>,
    index: Vec<IndexEntry>,
    filter: BinaryFuse16,
    meta: SegmentMeta,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("blocks", &self.index.len())
            .finish()
    }
}

impl Segment {
    /// Opens `path` and verifies its footer, index, filter and properties. `id` names the
    /// segment's blocks in `cache`; it must be unique among the shard's live segments.
    pub async fn open(
        storage: &Rc<dyn Storage>,
        path: &Path,
        id: u64,
        cache: Rc<BlockCache>,
    ) -> Result<Rc<Segment>> {
        let file = storage.open(path, OpenMode::Read).await?;
        let layout = match read_layout(file.as_ref(), path).await {
            Ok(layout) => layout,
            Err(e) => {
                let _ = file.close().await;
                return Err(e);
            }
        };
        Ok(Rc::new(Segment {
            id,
            path: path.to_path_buf(),
            file,
            cache,
            index: layout.index,
            filter: layout.filter,
            meta: layout.meta,
        }))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    pub fn properties(&self) -> &SegmentProperties {
        &self.meta.properties
    }

    /// The data blocks, in key order.
    pub fn blocks(&self) -> &[IndexEntry] {
        &self.index
    }

    pub fn cache(&self) -> &Rc<BlockCache> {
        &self.cache
    }

    /// False when the filter proves `key` is absent (no I/O).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        filter::may_contain(&self.filter, key)
    }

    /// The entry for `key` (a put, possibly expired, or a tombstone), or `None`. Reads at
    /// most one block, through the cache.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Entry>> {
        Ok(self.get_located(key).await?.map(|(e, _)| e))
    }

    /// Like [`Segment::get`], with the index of the block the entry was found in (access
    /// tracking for cold-data detection counts it).
    pub async fn get_located(&self, key: &[u8]) -> Result<Option<(Entry, usize)>> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let i = index::find_block(&self.index, key);
        if i == self.index.len() {
            return Ok(None);
        }
        let block = self.read_block(i, true).await?;
        Ok(block.find(key).map(|j| (block.entry(j), i)))
    }

    /// A cursor over the entries within `range`, in key order, reading blocks lazily through
    /// the cache.
    pub fn iter(self: &Rc<Self>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> SegmentIter {
        SegmentIter::new(self.clone(), range, true)
    }

    /// Like [`Segment::iter`], but blocks read from disk are not added to the cache (for
    /// compaction and backups, which would otherwise flush the hot set).
    pub fn iter_uncached(self: &Rc<Self>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> SegmentIter {
        SegmentIter::new(self.clone(), range, false)
    }

    /// Rereads the whole file from disk, bypassing the cache, and checks every checksum, every
    /// length and the key order across blocks. Stops at the first problem.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let layout = read_layout(self.file.as_ref(), &self.path).await?;
        if layout.index != self.index {
            return Err(TableError::corrupt(
                &self.path,
                self.meta.index_handle.offset,
                "index changed on disk since the segment was opened",
            ));
        }
        let mut report = VerifyReport::default();
        let mut prev_last: Option<&[u8]> = None;
        for i in 0..self.index.len() {
            let block = self.load_block(i).await?;
            let offset = self.index[i].handle.offset;
            if prev_last.is_some_and(|p| p >= block.key(0)) {
                return Err(TableError::corrupt(
                    &self.path,
                    offset,
                    "first key not above the previous block's last key",
                ));
            }
            prev_last = Some(self.index[i].last_key.as_slice());
            report.blocks_checked += 1;
            report.entries_checked += block.len() as u64;
            report.bytes_checked += u64::from(self.index[i].handle.len);
            glommio::yield_if_needed().await;
        }
        if report.entries_checked != self.meta.properties.entry_count {
            return Err(TableError::corrupt(
                &self.path,
                self.meta.properties_handle.offset,
                format!(
                    "properties count {} entries, blocks hold {}",
                    self.meta.properties.entry_count, report.entries_checked
                ),
            ));
        }
        report.bytes_checked += self.meta.file_size_bytes - self.meta.index_handle.offset;
        Ok(report)
    }

    /// The scrubber's unit of work: rereads block `i` from disk, bypassing the cache, and
    /// checks its checksum, codec and keys. Returns the stored bytes read.
    pub async fn verify_block(&self, i: usize) -> Result<u64> {
        assert!(i < self.index.len(), "block {i} of {}", self.index.len());
        self.load_block(i).await?;
        Ok(u64::from(self.index[i].handle.len))
    }

    /// Rereads footer, index, filter and properties from disk and checks them against what
    /// was loaded at open. Returns the bytes read.
    pub async fn verify_meta(&self) -> Result<u64> {
        let layout = read_layout(self.file.as_ref(), &self.path).await?;
        if layout.index != self.index {
            return Err(TableError::corrupt(
                &self.path,
                self.meta.index_handle.offset,
                "index changed on disk since the segment was opened",
            ));
        }
        Ok(self.meta.file_size_bytes - self.meta.index_handle.offset)
    }

    /// Block `i`, from the cache or from disk (verified), cached when `fill_cache`.
    pub(crate) async fn read_block(&self, i: usize, fill_cache: bool) -> Result<Rc<Block>> {
        let key = BlockKey {
            segment_id: self.id,
            offset: self.index[i].handle.offset,
        };
        if let Some(block) = self.cache.get(key) {
            return Ok(block);
        }
        let block = Rc::new(self.load_block(i).await?);
        if fill_cache {
            self.cache.insert(key, block.clone());
        }
        Ok(block)
    }

    /// Reads, verifies and decodes block `i` from disk.
    async fn load_block(&self, i: usize) -> Result<Block> {
        let entry = &self.index[i];
        let offset = entry.handle.offset;
        let stored = self.file.read_at(offset, entry.handle.len as usize).await?;
        let unframed = unframe(
            &self.path,
            offset,
            stored,
            DATA_BLOCK_RAW_MAX_BYTES,
            self.meta.checksum,
        )?;
        if unframed.codec_id != entry.codec_id {
            return Err(TableError::corrupt(
                &self.path,
                offset,
                format!(
                    "block codec {} differs from the index's {}",
                    unframed.codec_id, entry.codec_id
                ),
            ));
        }
        let block = Block::decode(unframed.raw)
            .map_err(|reason| TableError::corrupt(&self.path, offset, reason))?;
        if block.last_key() != entry.last_key.as_slice() {
            return Err(TableError::corrupt(
                &self.path,
                offset,
                "block's last key differs from the index",
            ));
        }
        Ok(block)
    }
}

/// Reads and checks the footer, then the meta blocks it points to.
async fn read_layout(file: &dyn File, path: &Path) -> Result<Layout> {
    let size = file.size().await?;
    if size < BLOCK_SIZE as u64 || !size.is_multiple_of(BLOCK_SIZE as u64) {
        return Err(TableError::corrupt(
            path,
            size,
            format!("file size {size} is not a positive multiple of {BLOCK_SIZE}"),
        ));
    }
    let footer_at = size - FOOTER_BYTES as u64;
    let raw = file.read_at(footer_at, FOOTER_BYTES).await?;
    let footer = Footer::decode(path, footer_at, &raw)?;
    check_footer_layout(path, footer_at, size, &footer)?;
    let tail_at = footer.index.handle.offset;
    let tail = file
        .read_at(tail_at, (footer.data_len - tail_at) as usize)
        .await?;
    let slice = |m: &MetaHandle| {
        let start = (m.handle.offset - tail_at) as usize;
        tail[start..start + m.handle.len as usize].to_vec()
    };
    let alg = footer.checksum;
    let index_raw = read_meta(path, &footer.index, slice(&footer.index), alg)?;
    let filter_raw = read_meta(path, &footer.filter, slice(&footer.filter), alg)?;
    let props_raw = read_meta(path, &footer.props, slice(&footer.props), alg)?;
    drop(tail);
    let properties = SegmentProperties::decode(path, footer.props.handle.offset, &props_raw)?;
    let index = index::decode(path, tail_at, &index_raw, tail_at)?;
    let filter = filter::decode(path, footer.filter.handle.offset, &filter_raw)?;
    let counts = [
        footer.block_count,
        properties.block_count,
        index.len() as u64,
    ];
    if counts.iter().any(|&c| c != footer.block_count)
        || footer.entry_count != properties.entry_count
    {
        return Err(TableError::corrupt(
            path,
            footer_at,
            format!(
                "footer, properties and index disagree: blocks {counts:?}, entries {} vs {}",
                footer.entry_count, properties.entry_count
            ),
        ));
    }
    Ok(Layout {
        meta: SegmentMeta {
            path: path.to_path_buf(),
            file_size_bytes: size,
            data_len_bytes: footer.data_len,
            index_handle: footer.index.handle,
            filter_handle: footer.filter.handle,
            properties_handle: footer.props.handle,
            properties,
            checksum: footer.checksum,
        },
        index,
        filter,
    })
}

/// The meta blocks lie back to back (index, filter, properties) and end at `data_len`, which
/// is followed by less than a page of padding and the footer.
fn check_footer_layout(path: &Path, footer_at: u64, size: u64, f: &Footer) -> Result<()> {
    let contiguous = f.index.handle.end() == f.filter.handle.offset
        && f.filter.handle.end() == f.props.handle.offset
        && f.props.handle.end() == f.data_len;
    let padded_ok =
        f.data_len <= footer_at && align_up(f.data_len as usize + FOOTER_BYTES) as u64 == size;
    let bounded = (f.data_len - f.index.handle.offset.min(f.data_len)) as usize
        <= 3 * META_BLOCK_RAW_MAX_BYTES;
    if contiguous && padded_ok && bounded {
        return Ok(());
    }
    Err(TableError::corrupt(
        path,
        footer_at,
        format!(
            "footer layout impossible: data_len {}, index {:?}, filter {:?}, props {:?}, file size {size}",
            f.data_len, f.index.handle, f.filter.handle, f.props.handle
        ),
    ))
}

/// Verifies a meta block's own checksum and the check value the footer keeps of it.
fn read_meta(path: &Path, m: &MetaHandle, stored: Vec<u8>, alg: Algorithm) -> Result<Vec<u8>> {
    let unframed = unframe(path, m.handle.offset, stored, META_BLOCK_RAW_MAX_BYTES, alg)?;
    if unframed.crc != m.crc {
        return Err(TableError::ChecksumMismatch {
            file: path.to_path_buf(),
            offset: m.handle.offset,
            expected: m.crc,
            found: unframed.crc,
        });
    }
    Ok(unframed.raw)
}
