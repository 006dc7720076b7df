//! Issue 7's Prometheus series: corruption events by component, scrubber progress, and
//! compression by codec, copied from the engine's `ShardStats` at scrape time.
//!
//! The engine's counters are cumulative since start; a counter here is advanced by the
//! difference to what it already exported (never backwards), under one lock so that two
//! concurrent scrapes cannot add the same difference twice.

use std::sync::Mutex;

use mantis_engine::cold::CODEC_NAMES;
use mantis_engine::scrub::Site;
use mantis_engine::ShardStats;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct IntegrityMetrics {
    corruption_events: IntCounterVec,
    scrub_bytes: IntCounterVec,
    scrub_passes: IntCounterVec,
    scrub_errors: IntCounterVec,
    scrub_last_full_pass: GaugeVec,
    scrub_running: IntGaugeVec,
    scrub_pass_progress: GaugeVec,
    codec_raw_bytes: IntGaugeVec,
    codec_stored_bytes: IntGaugeVec,
    codec_blocks: IntGaugeVec,
    cold_blocks: IntGauge,
    recompressions: IntCounter,
    recompressed_bytes_in: IntCounter,
    recompressed_bytes_out: IntCounter,
    record_lock: Mutex<()>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl IntegrityMetrics {
    pub fn new() -> Result<IntegrityMetrics, prometheus::Error> {
        let shard = &["shard"];
        let codec = &["codec"];
        Ok(IntegrityMetrics {
            corruption_events: IntCounterVec::new(
                opts(
                    "corruption_events_total",
                    "Checksum mismatches and damaged structures found on reads or by the scrubber, by component",
                ),
                &["component"],
            )?,
            scrub_bytes: IntCounterVec::new(
                opts("scrub_bytes_total", "Bytes verified by the background scrubber"),
                shard,
            )?,
            scrub_passes: IntCounterVec::new(
                opts("scrub_passes_total", "Complete scrub passes (segments and WAL)"),
                shard,
            )?,
            scrub_errors: IntCounterVec::new(
                opts("scrub_errors_total", "Damage found by the scrubber"),
                shard,
            )?,
            scrub_last_full_pass: GaugeVec::new(
                opts(
                    "scrub_last_full_pass_timestamp_seconds",
                    "Unix time the last complete scrub pass ended (0: never)",
                ),
                shard,
            )?,
            scrub_running: IntGaugeVec::new(
                opts("scrub_running", "1 while a scrub pass runs"),
                shard,
            )?,
            scrub_pass_progress: GaugeVec::new(
                opts(
                    "scrub_pass_progress_ratio",
                    "Fraction of the current (or last) pass's segment bytes verified",
                ),
                shard,
            )?,
            codec_raw_bytes: IntGaugeVec::new(
                opts(
                    "compression_raw_bytes",
                    "Data block bytes before compression in live segments, by segment codec",
                ),
                codec,
            )?,
            codec_stored_bytes: IntGaugeVec::new(
                opts(
                    "compression_stored_bytes",
                    "Data block bytes as stored in live segments, by segment codec",
                ),
                codec,
            )?,
            codec_blocks: IntGaugeVec::new(
                opts(
                    "compression_blocks",
                    "Data blocks in live segments by the codec each block was stored with",
                ),
                codec,
            )?,
            cold_blocks: IntGauge::new(
                "compression_cold_blocks",
                "Data blocks untouched for the whole cold window",
            )?,
            recompressions: IntCounter::new(
                "recompressions_total",
                "Cold segments rewritten with the cold codec",
            )?,
            recompressed_bytes_in: IntCounter::new(
                "recompressed_bytes_read_total",
                "Segment bytes read by cold recompression",
            )?,
            recompressed_bytes_out: IntCounter::new(
                "recompressed_bytes_written_total",
                "Segment bytes written by cold recompression",
            )?,
            record_lock: Mutex::new(()),
        })
    }

    pub fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.corruption_events.clone()))?;
        r.register(Box::new(self.scrub_bytes.clone()))?;
        r.register(Box::new(self.scrub_passes.clone()))?;
        r.register(Box::new(self.scrub_errors.clone()))?;
        r.register(Box::new(self.scrub_last_full_pass.clone()))?;
        r.register(Box::new(self.scrub_running.clone()))?;
        r.register(Box::new(self.scrub_pass_progress.clone()))?;
        r.register(Box::new(self.codec_raw_bytes.clone()))?;
        r.register(Box::new(self.codec_stored_bytes.clone()))?;
        r.register(Box::new(self.codec_blocks.clone()))?;
        r.register(Box::new(self.cold_blocks.clone()))?;
        r.register(Box::new(self.recompressions.clone()))?;
        r.register(Box::new(self.recompressed_bytes_in.clone()))?;
        r.register(Box::new(self.recompressed_bytes_out.clone()))?;
        // Every component appears from the start (at 0), so `increase()` sees the first event.
        for site in Site::ALL {
            self.corruption_events.with_label_values(&[site.as_str()]);
        }
        Ok(())
    }

    /// Copies the engine's numbers in.
    pub fn record(&self, stats: &[ShardStats]) {
        let Ok(_guard) = self.record_lock.lock() else {
            return;
        };
        for site in Site::ALL {
            let total = stats
                .iter()
                .map(|s| s.corruption_events_by_site[site.index()])
                .sum();
            advance(
                &self.corruption_events.with_label_values(&[site.as_str()]),
                total,
            );
        }
        for s in stats {
            let shard = s.shard.to_string();
            let labels = &[shard.as_str()];
            advance(
                &self.scrub_bytes.with_label_values(labels),
                s.scrub.bytes_scrubbed_total,
            );
            advance(
                &self.scrub_passes.with_label_values(labels),
                s.scrub.passes_completed,
            );
            advance(
                &self.scrub_errors.with_label_values(labels),
                s.scrub.corruptions_found,
            );
            self.scrub_last_full_pass
                .with_label_values(labels)
                .set(s.scrub.last_full_pass_end_unix_ms as f64 / 1e3);
            self.scrub_running
                .with_label_values(labels)
                .set(i64::from(s.scrub.running));
            let progress = if s.scrub.pass_bytes_total == 0 {
                1.0
            } else {
                s.scrub.pass_bytes_done as f64 / s.scrub.pass_bytes_total as f64
            };
            self.scrub_pass_progress
                .with_label_values(labels)
                .set(progress.min(1.0));
        }
        let total = crate::http::compression::total(stats);
        for (i, name) in CODEC_NAMES.iter().enumerate() {
            let set = |family: &IntGaugeVec, value: u64| {
                family
                    .with_label_values(&[name])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&self.codec_raw_bytes, total.raw_bytes_by_codec[i]);
            set(&self.codec_stored_bytes, total.stored_bytes_by_codec[i]);
            set(&self.codec_blocks, total.blocks_by_codec[i]);
        }
        self.cold_blocks
            .set(i64::try_from(total.cold_blocks).unwrap_or(i64::MAX));
        advance(&self.recompressions, total.recompressions);
        advance(&self.recompressed_bytes_in, total.recompressed_bytes_in);
        advance(&self.recompressed_bytes_out, total.recompressed_bytes_out);
    }
}

/// Moves a counter up to the engine's cumulative `value` (a shard restart never lowers it).
fn advance(counter: &IntCounter, value: u64) {
    let exported = counter.get();
    if value > exported {
        counter.inc_by(value - exported);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_follow_the_engine_and_never_go_back() {
        let m = IntegrityMetrics::new().unwrap();
        let r = Registry::new_custom(Some("mantis".into()), None).unwrap();
        m.register(&r).unwrap();
        let mut s = ShardStats::default();
        s.corruption_events_by_site[Site::Segment.index()] = 2;
        s.scrub.bytes_scrubbed_total = 4096;
        s.scrub.last_full_pass_end_unix_ms = 1_500;
        s.compression.recompressions = 3;
        s.compression.blocks_by_codec[3] = 7;
        m.record(&[s.clone()]);
        m.record(&[ShardStats::default()]);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap();
        assert!(
            text.contains("mantis_corruption_events_total{component=\"segment\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mantis_corruption_events_total{component=\"wal\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("mantis_scrub_bytes_total{shard=\"0\"} 4096"),
            "{text}"
        );
        assert!(text.contains("mantis_recompressions_total 3"), "{text}");
        assert!(
            text.contains("mantis_compression_blocks{codec=\"zstd\"} 0"),
            "{text}"
        );
    }
}
