//! Plain (non-transactional) single-key writes: run on the key's owning shard, unlocked while
//! no transaction is active there, under an X lock on the key otherwise; either way the key's
//! watchers see the modification. See `shard_state` for the reasoning.

use std::future::Future;

use mantis_engine::EngineHandle;
use mantis_lock::{LockMode, TxnId};
use mantis_sql::txlock::shard_locks;

use super::lockset::{key_resource, new_txn};
use super::shard_state::{self, UnlockedWrite};
use super::TxnError;

/// How a plain write is admitted on its shard; dropping it ends the admission.
enum Admission {
    Unlocked(#[allow(dead_code)] UnlockedWrite),
    Locked(TxnId),
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Admission::Locked(txn) = self {
            shard_locks().end_txn(*txn);
        }
    }
}

/// Runs `write` (which returns its result and whether it modified `key`) on `key`'s shard,
/// admitted as described above.
pub async fn guarded<R, F, Fut>(
    engine: &EngineHandle,
    key: Vec<u8>,
    write: F,
) -> Result<R, TxnError>
where
    R: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = (R, bool)> + 'static,
{
    let shard = engine.shard_for(&key);
    engine
        .run_on(shard, move || async move {
            let admission = admit(&key).await?;
            let (result, modified) = write().await;
            if modified {
                shard_state::touch(&key);
            }
            drop(admission);
            Ok(result)
        })
        .await?
}

async fn admit(key: &[u8]) -> Result<Admission, TxnError> {
    if let Some(unlocked) = UnlockedWrite::try_begin() {
        return Ok(Admission::Unlocked(unlocked));
    }
    let (txn, start_seq) = new_txn();
    let locks = shard_locks();
    // From here on the admission releases whatever was taken, also on error.
    let admission = Admission::Locked(txn);
    locks.begin(txn, start_seq)?;
    locks
        .lock_hierarchical(txn, key_resource(key), LockMode::X)
        .await?;
    Ok(admission)
}
