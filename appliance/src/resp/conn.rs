//! One RESP connection: read, parse every complete command in the buffer (pipelining), run
//! them in order, write the replies. Memory per connection is bounded: the input buffer by
//! `request_bytes_max` (checked before the bytes arrive, from the frame's declared lengths),
//! the output buffer by one reply plus [`OUTPUT_FLUSH_BYTES`].

use std::os::fd::AsRawFd;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::codec::{parse_command, Limits, Parsed};
use super::commands::{execute, execute_keyed, Client, Keyed};
use super::reply::Reply;
use super::session::Session;
use crate::server::{register_client, ConnectionSlot, Shared};

/// Replies are written once this many bytes are pending, even in the middle of a pipeline,
/// so a long pipeline of large GETs cannot grow the output buffer without bound.
pub const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// Smallest read; larger when a frame's declared size says more is coming.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Largest read buffer one connection keeps (for big values arriving).
const READ_CHUNK_BYTES_MAX: usize = 256 * 1024;

/// Most commands parsed from the input buffer before they are run: bounds the parsed copies.
const PIPELINE_PARSED_MAX: usize = 256;

/// Serves a connection until the client quits, closes, idles out, or sends garbage.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>, slot: ConnectionSlot) {
    let registration = register_client(stream.as_raw_fd());
    crate::monitoring::ensure_started(&shared);
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    if let Some(idle) = shared.config.idle_timeout {
        // A read that waits longer fails: idle clients and clients stalled mid-frame alike.
        let _ = stream.set_read_timeout(Some(idle));
        // And a client that stops reading its replies cannot pin the connection forever.
        let _ = stream.set_write_timeout(Some(idle));
    }
    let mut session = Session::new(slot.client_id, shared.config.password.is_some());
    if let Err(e) = run(&mut stream, &shared, &mut session).await {
        tracing::debug!(client = slot.client_id, error = %e, "resp connection ended");
    }
    // A client gone mid-transaction leaves no watch behind (its locks are only held in EXEC).
    super::multi::forget_watches(&shared.engine, &mut session).await;
    let _ = stream.close().await;
    // The socket is closed: forget it before anyone could shut down a reused descriptor.
    drop(registration);
    drop(slot);
}

#[derive(Debug, thiserror::Error)]
enum ConnEnd {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

async fn run(
    stream: &mut TcpStream,
    shared: &Shared,
    session: &mut Session,
) -> Result<(), ConnEnd> {
    let limits = Limits::for_values(shared.config.value_bytes_max);
    let request_bytes_max = shared.config.request_bytes_max;
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut scratch: Vec<u8> = vec![0; READ_CHUNK_BYTES];
    let mut needed = 1usize;
    let mut batch: Vec<Vec<Vec<u8>>> = Vec::with_capacity(PIPELINE_PARSED_MAX);
    loop {
        // Take every complete command already received (up to a bound), then run them.
        let mut start = 0;
        let mut bad_frame = None;
        while input.len() - start >= needed && batch.len() < PIPELINE_PARSED_MAX {
            match parse_command(&input[start..], &limits) {
                Ok(Parsed::Command { args, consumed }) => {
                    start += consumed;
                    needed = 1;
                    if !args.is_empty() {
                        batch.push(args);
                    }
                }
                Ok(Parsed::Incomplete { needed_bytes_min }) => {
                    needed = needed_bytes_min;
                    break;
                }
                Err(e) => {
                    bad_frame = Some(e);
                    break;
                }
            }
        }
        let more_parsed = batch.len() == PIPELINE_PARSED_MAX;
        run_batch(stream, shared, session, &mut batch, &mut output).await?;
        if session.closing {
            stream.write_all(&output).await?;
            return Ok(());
        }
        if let Some(e) = bad_frame {
            shared
                .metrics
                .protocol_errors
                .with_label_values(&["resp"])
                .inc();
            Reply::err(&e).encode(session.protocol, &mut output);
            stream.write_all(&output).await?;
            return Err(ConnEnd::Protocol(e.to_string()));
        }
        if more_parsed {
            // The buffer may hold more complete commands: parse on before reading.
            input.drain(..start);
            continue;
        }
        input.drain(..start);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if needed > request_bytes_max {
            let e = format!(
                "Protocol error: request of at least {needed} bytes exceeds request_bytes_max ({request_bytes_max})"
            );
            Reply::err(&e).encode(session.protocol, &mut output);
            stream.write_all(&output).await?;
            return Err(ConnEnd::Protocol(e));
        }
        // Read into a scratch buffer that is zeroed once, not per read: re-zeroing 16 KiB for
        // every small command showed up as the top user-space cost in profiles.
        let want = needed.saturating_sub(input.len());
        if want > scratch.len() && scratch.len() < READ_CHUNK_BYTES_MAX {
            scratch.resize(want.min(READ_CHUNK_BYTES_MAX), 0);
        }
        let n = stream.read(&mut scratch).await?;
        input.extend_from_slice(&scratch[..n]);
        if n == 0 {
            // End of input: the client closed, or shutdown stopped our reading side. Every
            // complete command was answered above.
            return Ok(());
        }
    }
}

/// Runs the parsed commands in order, encoding their replies into `output`; stops after QUIT.
///
/// Why side by side: a pipeline of durable writes run one at a time waits for one fdatasync
/// per command; started together they share one group commit per shard (and reads on the
/// other shard overlap their round trips). A run is only ever made of single-key commands
/// on pairwise distinct keys, so no command in it can see or miss another's effect: the
/// replies are those of running them in order. What is given up (only with
/// `pipeline_parallel_max` > 1) is the order in which *other* clients may see writes to
/// different keys of one run become visible.
async fn run_batch(
    stream: &mut TcpStream,
    shared: &Shared,
    session: &mut Session,
    batch: &mut Vec<Vec<Vec<u8>>>,
    output: &mut Vec<u8>,
) -> Result<(), ConnEnd> {
    let parallel_max = shared.config.pipeline_parallel_max;
    // The audit records of this pipeline go to the audit thread in one message, when the
    // batch ends however it ends (issue 8).
    let _audit = crate::monitoring::PendingAudit::new();
    let mut commands = std::mem::take(batch).into_iter().peekable();
    while let Some(args) = commands.next() {
        // Inside MULTI every command is queued in order, one at a time.
        let keyed = if parallel_max > 1 && session.multi.is_none() {
            Keyed::classify(&args)
        } else {
            None
        };
        let Some(keyed) = keyed else {
            let reply = execute(shared, session, args).await;
            reply.encode(session.protocol, output);
            if session.closing {
                return Ok(());
            }
            flush_if_full(stream, output).await?;
            continue;
        };
        let mut run = vec![(keyed, args)];
        while run.len() < parallel_max {
            let Some(next) = commands.peek() else { break };
            let Some(keyed) = Keyed::classify(next) else {
                break;
            };
            // `classify` guarantees a key at index 1.
            if run.iter().any(|(_, a)| a[1] == next[1]) {
                break;
            }
            let Some(next) = commands.next() else { break };
            run.push((keyed, next));
        }
        let client = Client {
            id: session.client_id,
            authenticated: session.authenticated,
        };
        let replies =
            futures::future::join_all(run.into_iter().map(|(keyed, args)| async move {
                execute_keyed(shared, client, &keyed, args).await
            }))
            .await;
        for reply in replies {
            reply.encode(session.protocol, output);
            flush_if_full(stream, output).await?;
        }
    }
    Ok(())
}

async fn flush_if_full(stream: &mut TcpStream, output: &mut Vec<u8>) -> Result<(), ConnEnd> {
    if output.len() >= OUTPUT_FLUSH_BYTES {
        // No reply reaches the client before the audit record of its command was queued.
        crate::monitoring::send_pending();
        stream.write_all(output).await?;
        output.clear();
    }
    Ok(())
}
