//! Issue 7: a request sent from another thread to an executor that is busy with background
//! work must be served within about a millisecond, not at the next 10 ms preemption tick.
//! The shape is the engine's: a flume channel from a client thread to the executor, a
//! low-share background queue whose loop paces itself with `BackgroundPacer`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use glommio::{Latency, Shares};
use mantis_storage::rt::{in_foreground_queue, shard_executor_builder, BackgroundPacer};

const REQUESTS: usize = 200;

/// Median round trip of `REQUESTS` requests while a background queue burns CPU.
fn median_round_trip(foreground_queue: bool) -> Duration {
    mantis_storage::rt::raise_memlock_limit().unwrap();
    let (req_tx, req_rx) = flume::bounded::<flume::Sender<()>>(1);
    let (started_tx, started_rx) = flume::bounded::<()>(1);
    let ex = shard_executor_builder(0, false, 0)
        .spawn(move || async move {
            let tq = glommio::executor().create_task_queue(
                Shares::Static(25),
                Latency::NotImportant,
                "background",
            );
            let stop = std::rc::Rc::new(std::cell::Cell::new(false));
            let stop_bg = stop.clone();
            let bg = glommio::spawn_local_into(
                async move {
                    let mut pacer = BackgroundPacer::new();
                    while !stop_bg.get() {
                        // About 20 µs of work per unit, like checksumming a block.
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_micros(20) {
                            std::hint::spin_loop();
                        }
                        glommio::yield_if_needed().await;
                        pacer.step().await;
                    }
                },
                tq,
            )
            .unwrap();
            let serve = async move {
                started_tx.send_async(()).await.unwrap();
                while let Ok(reply) = req_rx.recv_async().await {
                    reply.send_async(()).await.unwrap();
                }
            };
            if foreground_queue {
                in_foreground_queue("foreground", serve).await.unwrap();
            } else {
                serve.await;
            }
            stop.set(true);
            bg.await;
        })
        .unwrap();
    started_rx.recv().unwrap();
    let mut samples = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let (tx, rx) = flume::bounded(1);
        let t = Instant::now();
        req_tx.send(tx).unwrap();
        rx.recv().unwrap();
        samples.push(t.elapsed());
    }
    drop(req_tx);
    ex.join().unwrap();
    samples.sort();
    samples[REQUESTS / 2]
}

/// Measured 2026-11-28: both are about 8 µs at the median here, so the foreign wake-up is
/// not held back to the 10 ms preemption tick even in the default queue (the eventfd is
/// armed): this bounds the foreground queue and records the default queue for comparison.
#[test]
fn foreign_request_is_served_promptly_while_background_work_runs() {
    let default_queue = median_round_trip(false);
    let foreground = median_round_trip(true);
    eprintln!(
        "median round trip: default queue {default_queue:?}, foreground queue {foreground:?}"
    );
    assert!(
        foreground < Duration::from_millis(1),
        "foreground queue round trip {foreground:?}"
    );
    assert!(
        default_queue < Duration::from_millis(20),
        "default queue round trip {default_queue:?}"
    );
}
