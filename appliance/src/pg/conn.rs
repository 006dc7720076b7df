//! One PostgreSQL connection on a shard's executor: read, let the session consume every
//! complete message, write its answers. Memory is bounded like the RESP loop's: the input by
//! the message limit (checked from the declared length before the bytes arrive), the output is
//! written whenever [`OUTPUT_FLUSH_BYTES`] are pending between messages.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::backend::SqlBackend;
use super::session::{Flow, Progress, Session};

/// Answers are written once this many bytes are pending, even in the middle of a pipeline.
pub const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// Smallest read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Largest read buffer a connection keeps (for big messages arriving).
const READ_CHUNK_BYTES_MAX: usize = 256 * 1024;

/// Runs the protocol until the client terminates or closes, or a fatal error was sent.
pub async fn run<B: SqlBackend>(
    stream: &mut TcpStream,
    session: &mut Session<B>,
) -> std::io::Result<()> {
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut scratch: Vec<u8> = vec![0; READ_CHUNK_BYTES];
    let mut needed = 1usize;
    loop {
        let mut start = 0;
        while input.len() - start >= needed {
            match session.step(&input[start..]).await {
                Progress::Need(n) => {
                    needed = n;
                    break;
                }
                Progress::Consumed(n, flow) => {
                    assert!(n > 0 && start + n <= input.len(), "a step consumes input");
                    start += n;
                    needed = 1;
                    if flow == Flow::Close {
                        stream.write_all(&session.out).await?;
                        session.out.clear();
                        return Ok(());
                    }
                    if session.out.len() >= OUTPUT_FLUSH_BYTES {
                        stream.write_all(&session.out).await?;
                        session.out.clear();
                    }
                }
            }
            glommio::yield_if_needed().await;
        }
        input.drain(..start);
        if !session.out.is_empty() {
            stream.write_all(&session.out).await?;
            session.out.clear();
        }
        let want = needed.saturating_sub(input.len());
        if want > scratch.len() && scratch.len() < READ_CHUNK_BYTES_MAX {
            scratch.resize(want.min(READ_CHUNK_BYTES_MAX), 0);
        }
        let n = stream.read(&mut scratch).await?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&scratch[..n]);
    }
}
