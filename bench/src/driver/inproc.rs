//! The engine in-process, through its `EngineHandle`: the floor under every network figure
//! (no protocol, no sockets), but called from the load generator's own threads, so each
//! request still crosses to the owning shard's executor and back.

use std::ops::Bound;
use std::time::Instant;

use mantis_engine::{BatchOp, EngineHandle, ScanRange};

use super::DriverError;
use crate::recorder::Outcome;
use crate::workload::Request;

pub struct EngineConn {
    h: EngineHandle,
}

impl EngineConn {
    pub fn new(h: EngineHandle) -> Self {
        EngineConn { h }
    }

    async fn one(&self, r: &Request) -> Outcome {
        let res = match r {
            Request::Get(k) => self.h.get(k).await.map(|v| v.is_some()),
            Request::Set(k, v) => self.h.put(k.clone(), v.clone(), None).await.map(|()| true),
            Request::Scan(start, count) => {
                let range = ScanRange {
                    start: Bound::Included(start.clone()),
                    end: Bound::Unbounded,
                };
                self.h
                    .scan(range, *count)
                    .await
                    .map(|items| !items.is_empty())
            }
            Request::ReadModifyWrite(k, v) => match self.h.get(k).await {
                Ok(_) => self.h.put(k.clone(), v.clone(), None).await.map(|()| true),
                Err(e) => Err(e),
            },
        };
        match res {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Miss,
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    pub async fn execute(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<(Outcome, Instant)>, DriverError> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let o = self.one(r).await;
            out.push((o, Instant::now()));
        }
        Ok(out)
    }

    pub async fn load(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DriverError> {
        let ops = records
            .iter()
            .map(|(k, v)| BatchOp::Put {
                key: k.clone(),
                value: v.clone(),
                expires_at_ms: None,
            })
            .collect();
        self.h
            .write_batch(ops)
            .await
            .map_err(|e| DriverError::Server {
                target: "engine".to_string(),
                reason: format!("load write_batch: {e}"),
            })
    }
}
