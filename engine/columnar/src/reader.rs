//! A bounds-checked cursor over untrusted bytes: every read fails with the offset instead of
//! panicking, so a corrupt chunk that passed its checksum still cannot crash a shard.

use crate::error::{corrupt, Result};

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| corrupt(self.pos, format!("needs {len} more bytes")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(self.u64()? as i64)
    }

    /// A count that must not exceed `max` (guards allocations sized by stored counts).
    pub(crate) fn count(&mut self, max: usize, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n > max {
            return Err(corrupt(at, format!("{what} {n} exceeds {max}")));
        }
        Ok(n)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(corrupt(
                self.pos,
                format!("{} trailing bytes", self.remaining()),
            ));
        }
        Ok(())
    }
}
