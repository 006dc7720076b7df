//! [`SegmentWriter`]: streams sorted entries into a new segment file.
//!
//! File layout: data blocks, index block, filter block, properties block, zero padding, and
//! the footer in the last [`FOOTER_BYTES`] of the 4 KiB-aligned file. The writer holds only
//! the current block, the index, the key hashes for the filter, and its write buffer.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_integrity::Algorithm;
use mantis_storage::{align_up, File, OpenMode, Storage, BLOCK_SIZE};

use crate::block::BlockBuilder;
use crate::codec::{zstd_level_range, Codec};
use crate::entry::{Entry, EntryKind, KEY_MAX_BYTES, VALUE_MAX_BYTES};
use crate::error::{Result, TableError};
use crate::filter;
use crate::footer::{Footer, MetaHandle, FOOTER_BYTES};
use crate::frame::frame;
use crate::index::{self, BlockHandle, IndexEntry};
use crate::output::AlignedOutput;
use crate::props::SegmentProperties;

pub const BLOCK_SIZE_TARGET_DEFAULT_BYTES: usize = 16 * 1024;
pub const BLOCK_SIZE_TARGET_MAX_BYTES: usize = 1024 * 1024;
pub const WRITE_BUFFER_DEFAULT_BYTES: usize = 256 * 1024;
pub const WRITE_BUFFER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The largest raw data block: a full block, or one entry of maximal key and value.
pub(crate) const DATA_BLOCK_RAW_MAX_BYTES: usize =
    BLOCK_SIZE_TARGET_MAX_BYTES + KEY_MAX_BYTES + VALUE_MAX_BYTES + 64;
/// The largest raw index, filter or properties block a reader accepts.
pub(crate) const META_BLOCK_RAW_MAX_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Raw bytes per data block before compression; a block holding one larger entry grows to
    /// fit it.
    pub block_size_bytes: usize,
    pub codec: Codec,
    /// Bytes buffered before a write; a multiple of 4 KiB.
    pub write_buffer_bytes: usize,
    /// Per-keyspace codecs: a key under one of these prefixes is stored in a block of that
    /// codec instead of `codec` (the longest matching prefix wins). Blocks never mix codecs,
    /// so a keyspace boundary also ends a block. At most [`KEYSPACE_CODECS_MAX`].
    pub keyspace_codecs: Vec<KeyspaceCodec>,
    /// What guards every block (recorded in the footer). CRC32 by default: it catches what
    /// disks and kernels do to data at a fraction of a cryptographic digest's cost; MD5 or
    /// SHA-256 where an operator's policy wants a stronger per-block check.
    pub checksum: Algorithm,
}

/// Keys starting with `prefix` are compressed with `codec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceCodec {
    pub prefix: Vec<u8>,
    pub codec: Codec,
}

/// Each key is matched against every rule: keep the table short.
pub const KEYSPACE_CODECS_MAX: usize = 64;

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_size_bytes: BLOCK_SIZE_TARGET_DEFAULT_BYTES,
            codec: Codec::default(),
            write_buffer_bytes: WRITE_BUFFER_DEFAULT_BYTES,
            keyspace_codecs: Vec::new(),
            checksum: Algorithm::Crc32,
        }
    }
}

impl WriterOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(TableError::InvalidOptions { reason });
        if self.block_size_bytes == 0 || self.block_size_bytes > BLOCK_SIZE_TARGET_MAX_BYTES {
            return bad(format!(
                "block_size_bytes {} not in 1..={BLOCK_SIZE_TARGET_MAX_BYTES}",
                self.block_size_bytes
            ));
        }
        if self.write_buffer_bytes < BLOCK_SIZE
            || self.write_buffer_bytes > WRITE_BUFFER_MAX_BYTES
            || !self.write_buffer_bytes.is_multiple_of(BLOCK_SIZE)
        {
            return bad(format!(
                "write_buffer_bytes {} must be a multiple of {BLOCK_SIZE} up to {WRITE_BUFFER_MAX_BYTES}",
                self.write_buffer_bytes
            ));
        }
        if self.keyspace_codecs.len() > KEYSPACE_CODECS_MAX {
            return bad(format!(
                "{} keyspace codecs, at most {KEYSPACE_CODECS_MAX}",
                self.keyspace_codecs.len()
            ));
        }
        let codecs =
            std::iter::once(self.codec).chain(self.keyspace_codecs.iter().map(|k| k.codec));
        for codec in codecs {
            if let Codec::Zstd { level } = codec {
                if !zstd_level_range().contains(&level) {
                    return bad(format!(
                        "zstd level {level} not in {:?}",
                        zstd_level_range()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The codec for a block holding `key`: the longest matching keyspace prefix, else
    /// `codec`.
    pub fn codec_for(&self, key: &[u8]) -> Codec {
        self.keyspace_codecs
            .iter()
            .filter(|k| key.starts_with(&k.prefix))
            .max_by_key(|k| k.prefix.len())
            .map_or(self.codec, |k| k.codec)
    }
}

/// What a finished (or opened) segment is: its size, layout and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub path: PathBuf,
    pub file_size_bytes: u64,
    /// Bytes of blocks (data and meta) before the padding and footer.
    pub data_len_bytes: u64,
    pub index_handle: BlockHandle,
    pub filter_handle: BlockHandle,
    pub properties_handle: BlockHandle,
    pub properties: SegmentProperties,
    /// The algorithm of every block checksum in the file.
    pub checksum: Algorithm,
}

/// Writes one segment file. Keys must be added in strictly increasing order. After any error
/// the writer is unusable: drop it (or [`SegmentWriter::abort`] to remove the partial file).
pub struct SegmentWriter {
    storage: Rc<dyn Storage>,
    path: PathBuf,
    file: Rc<dyn File>,
    options: WriterOptions,
    out: AlignedOutput,
    block: BlockBuilder,
    /// The codec of the block being built (see [`WriterOptions::codec_for`]).
    block_codec: Codec,
    index: Vec<IndexEntry>,
    key_hashes: Vec<u64>,
    props: SegmentProperties,
    last_key: Vec<u8>,
    failed: bool,
}

impl SegmentWriter {
    /// Creates `path`, which must not exist: a segment is never overwritten in place.
    pub async fn create(
        storage: &Rc<dyn Storage>,
        path: &Path,
        options: WriterOptions,
    ) -> Result<Self> {
        options.validate()?;
        let file = storage.open(path, OpenMode::CreateNew).await?;
        Ok(SegmentWriter {
            storage: storage.clone(),
            path: path.to_path_buf(),
            out: AlignedOutput::new(file.clone(), options.write_buffer_bytes),
            file,
            block: BlockBuilder::default(),
            block_codec: options.codec,
            index: Vec::new(),
            key_hashes: Vec::new(),
            props: SegmentProperties::new(options.codec, options.block_size_bytes as u32),
            options,
            last_key: Vec::new(),
            failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entry_count(&self) -> u64 {
        self.props.entry_count
    }

    /// Bytes written or buffered so far (the file will be somewhat larger: meta blocks).
    pub fn written_bytes(&self) -> u64 {
        self.out.position()
    }

    /// Appends an entry. Its key must be greater than the previous one: the caller (memtable
    /// flush, compaction merge) guarantees it, so a violation is a bug and panics.
    pub async fn add(&mut self, entry: &Entry) -> Result<()> {
        assert!(!self.failed, "segment writer used after an error");
        if entry.key.len() > KEY_MAX_BYTES {
            return Err(TableError::KeyTooLarge {
                len: entry.key.len(),
                max: KEY_MAX_BYTES,
            });
        }
        if let EntryKind::Put { value, .. } = &entry.kind {
            if value.len() > VALUE_MAX_BYTES {
                return Err(TableError::ValueTooLarge {
                    len: value.len(),
                    max: VALUE_MAX_BYTES,
                });
            }
        }
        assert!(
            self.props.entry_count == 0 || entry.key > self.last_key,
            "segment keys not strictly increasing in {}",
            self.path.display()
        );
        let codec = self.options.codec_for(&entry.key);
        let block_full = self.block.raw_len_with(entry) > self.options.block_size_bytes;
        if !self.block.is_empty() && (block_full || codec != self.block_codec) {
            let r = self.flush_block().await;
            self.check(r)?;
            // A flush is a natural point to let foreground work run on this shard.
            glommio::yield_if_needed().await;
        }
        self.block_codec = codec;
        self.block.add(entry);
        self.last_key.clear();
        self.last_key.extend_from_slice(&entry.key);
        self.key_hashes.push(filter::key_hash64(&entry.key));
        self.props.add(entry);
        Ok(())
    }

    /// Writes the index, filter, properties and footer, syncs the file and closes it. The
    /// caller makes the new file's directory entry durable (`Storage::sync_dir`) before it
    /// records the segment in the manifest.
    pub async fn finish(mut self) -> Result<SegmentMeta> {
        assert!(!self.failed, "segment writer used after an error");
        let r = self.write_tail().await;
        let meta = self.check(r)?;
        self.file.sync().await?;
        self.file.close().await?;
        Ok(meta)
    }

    /// Gives up on the segment and removes the partial file.
    pub async fn abort(self) -> Result<()> {
        let SegmentWriter {
            storage,
            path,
            file,
            out,
            ..
        } = self;
        drop(out);
        file.close().await?;
        storage.remove(&path).await?;
        Ok(())
    }

    fn check<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    async fn flush_block(&mut self) -> Result<()> {
        let raw = self.block.finish();
        let framed = frame(raw, self.block_codec, self.options.checksum);
        let offset = self.out.position();
        self.out.append(framed.payload(raw)).await?;
        self.out.append(framed.trailer()).await?;
        let stored_len = framed.stored_len(raw);
        let stats = &mut self.props.codec_stats;
        stats.raw_data_bytes += raw.len() as u64;
        stats.stored_data_bytes += stored_len as u64;
        stats.blocks_by_codec[usize::from(framed.codec_id)] += 1;
        self.index.push(IndexEntry {
            last_key: self.last_key.clone(),
            handle: BlockHandle {
                offset,
                len: stored_len as u32,
            },
            codec_id: framed.codec_id,
        });
        self.block.reset();
        Ok(())
    }

    /// Frames and appends a meta block.
    async fn append_meta(
        &mut self,
        what: &'static str,
        raw: &[u8],
        codec: Codec,
    ) -> Result<MetaHandle> {
        if raw.len() > META_BLOCK_RAW_MAX_BYTES {
            return Err(TableError::SegmentTooLarge {
                file: self.path.clone(),
                what,
                len: raw.len(),
                max: META_BLOCK_RAW_MAX_BYTES,
            });
        }
        let framed = frame(raw, codec, self.options.checksum);
        let offset = self.out.position();
        self.out.append(framed.payload(raw)).await?;
        self.out.append(framed.trailer()).await?;
        Ok(MetaHandle {
            handle: BlockHandle {
                offset,
                len: framed.stored_len(raw) as u32,
            },
            crc: framed.crc,
        })
    }

    async fn write_tail(&mut self) -> Result<SegmentMeta> {
        if !self.block.is_empty() {
            self.flush_block().await?;
        }
        self.props.block_count = self.index.len() as u64;
        if let Some(last) = self.index.last() {
            self.props.max_key = last.last_key.clone();
        }
        let index_raw = index::encode(&self.index);
        let index = self
            .append_meta("index", &index_raw, self.options.codec)
            .await?;
        drop(index_raw);
        // Fingerprints are random: compressing them cannot pay.
        let filter = filter::build(&self.path, std::mem::take(&mut self.key_hashes))?;
        let filter_raw = filter::encode(&filter);
        drop(filter);
        let filter = self.append_meta("filter", &filter_raw, Codec::None).await?;
        drop(filter_raw);
        let props_raw = self.props.encode();
        let props = self
            .append_meta("properties", &props_raw, Codec::None)
            .await?;
        let data_len = self.out.position();
        let file_size = align_up(data_len as usize + FOOTER_BYTES) as u64;
        let padding = file_size as usize - FOOTER_BYTES - data_len as usize;
        self.out.append(&vec![0u8; padding]).await?;
        let footer = Footer {
            data_len,
            index,
            filter,
            props,
            block_count: self.props.block_count,
            entry_count: self.props.entry_count,
            checksum: self.options.checksum,
        };
        self.out.append(&footer.encode()).await?;
        assert_eq!(self.out.position(), file_size);
        self.out.finish().await?;
        Ok(SegmentMeta {
            path: self.path.clone(),
            file_size_bytes: file_size,
            data_len_bytes: data_len,
            index_handle: index.handle,
            filter_handle: filter.handle,
            properties_handle: props.handle,
            properties: self.props.clone(),
            checksum: self.options.checksum,
        })
    }
}
