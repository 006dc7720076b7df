//! Little-endian encoding helpers. Decoding never trusts a length: every read is bounds
//! checked and returns `None` when the buffer ends early, which callers turn into
//! `TableError::Corrupt` with the file and offset they know.

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length-prefixed byte string (u32 length). The caller bounds `bytes` below 4 GiB.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    assert!(u32::try_from(bytes.len()).is_ok(), "byte string over 4 GiB");
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// A forward-only cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string whose length must not exceed `max_len`.
    pub(crate) fn len_bytes(&mut self, max_len: usize) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max_len {
            return None;
        }
        self.bytes(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_the_end() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_bytes(&mut out, b"abc");
        let mut r = Reader::new(&out);
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.len_bytes(3), Some(&b"abc"[..]));
        assert_eq!(r.u8(), None);
        let mut r = Reader::new(&out[..6]);
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.u64(), None);
        let mut r = Reader::new(&out[4..]);
        assert_eq!(r.len_bytes(2), None, "length above the bound is refused");
    }
}
