//! Buffered, 4 KiB-aligned sequential output for O_DIRECT. The buffer never exceeds its
//! declared size: a block larger than the buffer is copied through it in pieces.

use std::rc::Rc;

use mantis_storage::{File, BLOCK_SIZE};

use crate::error::Result;

pub(crate) struct AlignedOutput {
    file: Rc<dyn File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`; always a multiple of `BLOCK_SIZE`.
    flushed_bytes: u64,
    buffer_bytes_max: usize,
}

impl AlignedOutput {
    pub(crate) fn new(file: Rc<dyn File>, buffer_bytes_max: usize) -> Self {
        assert!(buffer_bytes_max >= BLOCK_SIZE && buffer_bytes_max.is_multiple_of(BLOCK_SIZE));
        AlignedOutput {
            file,
            buf: Vec::with_capacity(buffer_bytes_max),
            flushed_bytes: 0,
            buffer_bytes_max,
        }
    }

    /// Bytes appended so far (the file offset of the next byte).
    pub(crate) fn position(&self) -> u64 {
        self.flushed_bytes + self.buf.len() as u64
    }

    pub(crate) async fn append(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let take = (self.buffer_bytes_max - self.buf.len()).min(data.len());
            let (now, rest) = data.split_at(take);
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == self.buffer_bytes_max {
                self.write_buffer().await?;
            }
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    /// Writes what is buffered; the caller padded the data to a multiple of `BLOCK_SIZE`.
    pub(crate) async fn finish(&mut self) -> Result<()> {
        assert!(
            self.buf.len().is_multiple_of(BLOCK_SIZE),
            "unpadded segment tail"
        );
        if !self.buf.is_empty() {
            self.write_buffer().await?;
        }
        Ok(())
    }

    async fn write_buffer(&mut self) -> Result<()> {
        self.file.write_at(self.flushed_bytes, &self.buf).await?;
        self.flushed_bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}
