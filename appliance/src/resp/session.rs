//! Per-connection RESP state: protocol version, authentication, client name, SCAN cursors.

use std::collections::VecDeque;

use super::reply::Protocol;

/// A connection's state between commands.
pub struct Session {
    pub protocol: Protocol,
    pub authenticated: bool,
    pub name: Option<Vec<u8>>,
    pub client_id: u64,
    /// Set by QUIT: answer, flush, close.
    pub closing: bool,
    pub cursors: CursorTable,
    /// MULTI opened and not yet EXEC'd / DISCARDed.
    pub multi: Option<super::multi::MultiState>,
    /// Keys WATCHed since the last EXEC / DISCARD / UNWATCH.
    pub watches: Vec<crate::kvtxn::lockset::WatchCheck>,
}

impl Session {
    pub fn new(client_id: u64, password_required: bool) -> Session {
        Session {
            protocol: Protocol::Resp2,
            authenticated: !password_required,
            name: None,
            client_id,
            closing: false,
            cursors: CursorTable::default(),
            multi: None,
            watches: Vec::new(),
        }
    }
}

/// SCAN cursors. Redis clients treat the cursor as a number, but our keys are ordered bytes,
/// so a cursor is a number naming "continue after this key", remembered per connection.
/// Bounded: the oldest cursors are forgotten (a client resuming one gets an error, not a
/// silently restarted scan).
#[derive(Default)]
pub struct CursorTable {
    next_id: u64,
    entries: VecDeque<(u64, Vec<u8>)>,
}

impl CursorTable {
    /// Open scans one connection may interleave.
    pub const CURSORS_MAX: usize = 64;

    /// Remembers `last_key` and returns the cursor that resumes after it (never 0).
    pub fn open(&mut self, last_key: Vec<u8>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if self.entries.len() == Self::CURSORS_MAX {
            self.entries.pop_front();
        }
        self.entries.push_back((id, last_key));
        assert!(self.entries.len() <= Self::CURSORS_MAX);
        id
    }

    /// The key a cursor resumes after. Cursors stay valid until evicted, so a client may
    /// retry a page.
    pub fn resume(&self, id: u64) -> Option<Vec<u8>> {
        self.entries
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, key)| key.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_resume_once_and_are_bounded() {
        let mut t = CursorTable::default();
        let c = t.open(b"k1".to_vec());
        assert_ne!(c, 0);
        assert_eq!(t.resume(c).unwrap(), b"k1");
        assert_eq!(t.resume(c).unwrap(), b"k1", "a page can be retried");
        assert!(t.resume(c + 100).is_none());
        let first = t.open(b"a".to_vec());
        for _ in 0..CursorTable::CURSORS_MAX {
            t.open(b"b".to_vec());
        }
        assert!(t.resume(first).is_none(), "oldest cursor evicted");
    }
}
