//! `GET /api/v1/compression/stats` (bytes by codec, ratios, cold fraction, recompression
//! throughput, per shard and in total) and `GET /api/v1/compression/recommendations`.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use mantis_engine::cold::{CompressionStats, CODEC_NAMES};
use mantis_engine::ShardStats;
use serde_json::{json, Value};

use super::error::{json_response, ApiError, HttpResponse};
use crate::server::Shared;

pub const ROUTE_STATS: &str = "compression_stats";
pub const ROUTE_RECOMMENDATIONS: &str = "compression_recommendations";

/// Below this much stored data, ratios say little: no recommendation.
const RECOMMEND_DATA_BYTES_MIN: u64 = 1 << 20;
/// stored/raw above this: the data barely compresses.
const POOR_RATIO_STORED_PER_RAW: f64 = 0.85;
/// Cold fraction above this: the window is probably shorter than the real reuse interval.
const COLD_FRACTION_HIGH: f64 = 0.9;

pub async fn route(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
) -> Option<(&'static str, Result<HttpResponse, ApiError>)> {
    let route = match path {
        "/api/v1/compression/stats" => ROUTE_STATS,
        "/api/v1/compression/recommendations" => ROUTE_RECOMMENDATIONS,
        _ => return None,
    };
    if req.method() != Method::GET {
        return Some(("other", Err(ApiError::method_not_allowed("GET"))));
    }
    let answer = match shared.engine.stats().await {
        Ok(stats) if route == ROUTE_STATS => Ok(json_response(StatusCode::OK, &stats_json(&stats))),
        Ok(stats) => {
            let total = total(&stats);
            Ok(json_response(
                StatusCode::OK,
                &json!({ "recommendations": recommend(&total) }),
            ))
        }
        Err(e) => Err(ApiError::from(e)),
    };
    Some((route, answer))
}

/// Sums the shards' compression stats.
pub fn total(stats: &[ShardStats]) -> CompressionStats {
    let mut t = CompressionStats::default();
    for s in stats.iter().map(|s| &s.compression) {
        t.raw_data_bytes += s.raw_data_bytes;
        t.stored_data_bytes += s.stored_data_bytes;
        for i in 0..4 {
            t.blocks_by_codec[i] += s.blocks_by_codec[i];
            t.stored_bytes_by_codec[i] += s.stored_bytes_by_codec[i];
            t.raw_bytes_by_codec[i] += s.raw_bytes_by_codec[i];
        }
        t.blocks_total += s.blocks_total;
        t.cold_blocks += s.cold_blocks;
        t.epoch = t.epoch.max(s.epoch);
        t.history_bytes += s.history_bytes;
        t.recompressions += s.recompressions;
        t.recompressed_bytes_in += s.recompressed_bytes_in;
        t.recompressed_bytes_out += s.recompressed_bytes_out;
        t.recompress_time_us += s.recompress_time_us;
    }
    t
}

/// raw / stored (how many times smaller), 1.0 when empty.
fn ratio(raw: u64, stored: u64) -> f64 {
    if stored == 0 {
        1.0
    } else {
        raw as f64 / stored as f64
    }
}

pub fn compression_json(c: &CompressionStats) -> Value {
    let by_codec: serde_json::Map<String, Value> = CODEC_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let v = json!({
                "segment_raw_bytes": c.raw_bytes_by_codec[i],
                "segment_stored_bytes": c.stored_bytes_by_codec[i],
                "ratio": ratio(c.raw_bytes_by_codec[i], c.stored_bytes_by_codec[i]),
                "blocks": c.blocks_by_codec[i],
            });
            (name.to_string(), v)
        })
        .collect();
    let throughput = if c.recompress_time_us == 0 {
        0.0
    } else {
        c.recompressed_bytes_in as f64 * 1e6 / c.recompress_time_us as f64
    };
    json!({
        "raw_bytes": c.raw_data_bytes,
        "stored_bytes": c.stored_data_bytes,
        "ratio": ratio(c.raw_data_bytes, c.stored_data_bytes),
        "by_codec": by_codec,
        "blocks": c.blocks_total,
        "cold_blocks": c.cold_blocks,
        "cold_fraction": cold_fraction(c),
        "access_epoch": c.epoch,
        "access_history_bytes": c.history_bytes,
        "recompressions": c.recompressions,
        "recompressed_bytes_in": c.recompressed_bytes_in,
        "recompressed_bytes_out": c.recompressed_bytes_out,
        "recompress_bytes_per_sec": throughput,
    })
}

fn cold_fraction(c: &CompressionStats) -> f64 {
    if c.blocks_total == 0 {
        0.0
    } else {
        c.cold_blocks as f64 / c.blocks_total as f64
    }
}

pub fn stats_json(stats: &[ShardStats]) -> Value {
    let shards: Vec<Value> = stats
        .iter()
        .map(|s| {
            let mut v = compression_json(&s.compression);
            v["shard"] = json!(s.shard);
            v
        })
        .collect();
    json!({ "total": compression_json(&total(stats)), "shards": shards })
}

/// Advice from the totals: each item has a `kind`, a `message` and the figure behind it.
pub fn recommend(c: &CompressionStats) -> Vec<Value> {
    let mut out = Vec::new();
    if c.stored_data_bytes < RECOMMEND_DATA_BYTES_MIN {
        return out;
    }
    let stored_per_raw = c.stored_data_bytes as f64 / c.raw_data_bytes.max(1) as f64;
    if stored_per_raw > POOR_RATIO_STORED_PER_RAW {
        out.push(json!({
            "kind": "poor_ratio",
            "ratio": ratio(c.raw_data_bytes, c.stored_data_bytes),
            "message": "the data barely compresses: compression = \"none\" saves the CPU (already-compressed or random values?)",
        }));
    }
    let cold = cold_fraction(c);
    if cold > COLD_FRACTION_HIGH {
        out.push(json!({
            "kind": "cold_fraction_high",
            "cold_fraction": cold,
            "message": "almost all data counts as cold: if it is reread at longer intervals than the window, lengthen the epoch (cold.epoch_secs) or the window (cold.cold_after_epochs)",
        }));
    }
    let zstd = 3;
    let zstd_gain = ratio(c.raw_bytes_by_codec[zstd], c.stored_bytes_by_codec[zstd]);
    let lz4 = 1;
    let lz4_gain = ratio(c.raw_bytes_by_codec[lz4], c.stored_bytes_by_codec[lz4]);
    if c.stored_bytes_by_codec[zstd] > 0
        && c.stored_bytes_by_codec[lz4] > 0
        && zstd_gain < lz4_gain * 1.1
    {
        out.push(json!({
            "kind": "cold_recompression_gains_little",
            "zstd_ratio": zstd_gain,
            "lz4_ratio": lz4_gain,
            "message": "ZSTD cold segments are barely smaller than LZ4 ones: recompression costs I/O for little space",
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(raw: u64, stored: u64) -> CompressionStats {
        CompressionStats {
            raw_data_bytes: raw,
            stored_data_bytes: stored,
            raw_bytes_by_codec: [0, raw, 0, 0],
            stored_bytes_by_codec: [0, stored, 0, 0],
            blocks_total: 100,
            ..CompressionStats::default()
        }
    }

    #[test]
    fn recommendations_follow_the_figures() {
        assert!(recommend(&stats(10 << 20, 4 << 20)).is_empty());
        assert!(
            recommend(&stats(100, 99)).is_empty(),
            "too little data to judge"
        );
        let r = recommend(&stats(10 << 20, 10 << 20));
        assert_eq!(r[0]["kind"], "poor_ratio");
        let mut c = stats(10 << 20, 4 << 20);
        c.cold_blocks = 95;
        assert_eq!(recommend(&c)[0]["kind"], "cold_fraction_high");
        c.cold_blocks = 0;
        c.raw_bytes_by_codec[3] = 10 << 20;
        c.stored_bytes_by_codec[3] = 4 << 20;
        assert_eq!(recommend(&c)[0]["kind"], "cold_recompression_gains_little");
        let j = compression_json(&c);
        assert_eq!(j["by_codec"]["lz4"]["ratio"], 2.5);
    }
}
