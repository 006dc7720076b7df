//! Issue 11: the COPY FROM STDIN sub-protocol of the simple query. `COPY ... FROM STDIN`
//! answers CopyInResponse; the client then sends CopyData frames (each bounded by the
//! connection's message limit, checked before it is buffered) and CopyDone, or CopyFail.
//! The backend parses and checks the data as it arrives and writes nothing before CopyDone;
//! an error is kept and sent, with ReadyForQuery, once the client has finished sending (psql
//! sends all of its data before it reads an answer). Flush and Sync are ignored during the
//! copy, as PostgreSQL does; any other message ends it with a protocol error.

use std::time::Instant;

use super::super::backend::SqlBackend;
use super::super::codec::{encode, Frontend};
use super::super::error::{sqlstate, PgError};
use super::{Flow, Session};

/// SQLSTATE 57014: the client cancelled the COPY (CopyFail).
const QUERY_CANCELED: &str = "57014";

/// A COPY FROM STDIN in progress on the connection.
pub(super) struct CopyState {
    sql: String,
    started: Instant,
    /// The first error; later data is read and dropped until CopyDone or CopyFail.
    error: Option<PgError>,
}

/// Whether a simple-query string is a COPY (which starts the sub-protocol).
pub(super) fn is_copy(sql: &str) -> bool {
    sql.trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
}

impl<B: SqlBackend> Session<B> {
    /// `COPY ...` as a simple query: CopyInResponse, or the error and ReadyForQuery.
    pub(super) async fn copy_start(&mut self, sql: &str) {
        let started = Instant::now();
        match self.backend.copy_in_start(sql).await {
            Ok(columns) => {
                encode::copy_in_response(&mut self.out, columns);
                self.copy = Some(CopyState {
                    sql: sql.to_string(),
                    started,
                    error: None,
                });
            }
            Err(e) => {
                let state = CopyState {
                    sql: sql.to_string(),
                    started,
                    error: None,
                };
                self.copy_end(state, Err(e));
            }
        }
    }

    /// A message received while the COPY runs.
    pub(super) async fn copy_message(&mut self, message: Frontend) -> Flow {
        let Some(mut state) = self.copy.take() else {
            return Flow::Continue;
        };
        match message {
            Frontend::CopyData(data) => {
                if state.error.is_none() {
                    if let Err(e) = self.backend.copy_in_data(&data).await {
                        self.backend.copy_in_abort();
                        state.error = Some(e);
                    }
                }
                self.copy = Some(state);
            }
            Frontend::CopyDone => {
                let r = match state.error.take() {
                    Some(e) => Err(e),
                    None => self.backend.copy_in_done().await,
                };
                self.copy_end(state, r.map(|n| format!("COPY {n}")));
            }
            Frontend::CopyFail(reason) => {
                self.backend.copy_in_abort();
                let e = state.error.take().unwrap_or_else(|| {
                    PgError::error(QUERY_CANCELED, format!("COPY from stdin failed: {reason}"))
                });
                self.copy_end(state, Err(e));
            }
            Frontend::Flush | Frontend::Sync => self.copy = Some(state),
            Frontend::Terminate => {
                self.backend.copy_in_abort();
                return Flow::Close;
            }
            other => {
                self.backend.copy_in_abort();
                let e = PgError::error(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "unexpected message {} during COPY from stdin",
                        tag_of(&other)
                    ),
                );
                self.copy_end(state, Err(e));
            }
        }
        Flow::Continue
    }

    /// The COPY's answer (CommandComplete `COPY n` or the error), audited like a query.
    fn copy_end(&mut self, state: CopyState, result: Result<String, PgError>) {
        let elapsed = state.started.elapsed();
        crate::monitoring::audit_sql(
            &self.user,
            &state.sql,
            result.as_ref().err().map(|e| e.sqlstate.to_string()),
        );
        self.observer.statement("query", elapsed, result.is_err());
        crate::monitoring::note_slow("pg", "query", &self.user, &state.sql, elapsed);
        match result {
            Ok(tag) => encode::command_complete(&mut self.out, &tag),
            Err(e) => {
                self.observer.error(&e);
                encode::error_response(&mut self.out, &e);
                self.note_failure();
            }
        }
        self.ready_for_query();
    }
}

fn tag_of(m: &Frontend) -> &'static str {
    match m {
        Frontend::Query(_) => "Query",
        Frontend::Parse { .. } => "Parse",
        Frontend::Bind { .. } => "Bind",
        Frontend::Describe { .. } => "Describe",
        Frontend::Execute { .. } => "Execute",
        Frontend::Close { .. } => "Close",
        Frontend::Password(_) => "PasswordMessage",
        _ => "of another type",
    }
}
