//! SVG plots (plotters): the latency percentile spectrum of several series on log–log axes,
//! and latency over time. Small files (a few hundred points each) that a browser opens.

use std::path::Path;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::hist::SpectrumPoint;
use crate::recorder::TimelinePoint;

const SIZE: (u32, u32) = (900, 520);
const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn plot_err(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |reason| BenchError::Plot {
        path: path.to_path_buf(),
        reason,
    }
}

/// x of a percentile on the spectrum axis: 1 / (1 − q), so p90 → 10, p99 → 100, p99.9 → 1000.
fn nines_x(percentile: f64) -> f64 {
    let q = (percentile / 100.0).min(0.999_999);
    1.0 / (1.0 - q)
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    if p < 1e-9 {
        "p0".to_string()
    } else {
        let s = format!("{p:.4}");
        format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Latency (µs, log) against percentile (1 / (1 − q), log) for each named series.
pub fn spectrum(
    path: &Path,
    title: &str,
    series: &[(String, Vec<SpectrumPoint>)],
) -> Result<(), BenchError> {
    let err = plot_err(path);
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, pts)| {
            pts.iter()
                .filter(|p| p.percentile < 100.0)
                .map(|p| (nines_x(p.percentile), p.latency_us.max(1.0)))
                .collect()
        })
        .collect();
    let y_max = points.iter().flatten().map(|p| p.1).fold(10.0, f64::max) * 1.5;
    let y_min = points
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .clamp(1.0, 1e9)
        / 1.5;
    let x_max = points.iter().flatten().map(|p| p.0).fold(10.0, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, ((name, _), pts)) in series.iter().zip(points).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// p50 and p99 per interval (µs, log) against time for each named series.
pub fn timeline(
    path: &Path,
    title: &str,
    series: &[(String, Vec<TimelinePoint>)],
) -> Result<(), BenchError> {
    let err = plot_err(path);
    let all = series.iter().flat_map(|(_, pts)| pts.iter());
    let y_max = all.clone().map(|p| p.p99_us).fold(10.0, f64::max) * 1.5;
    let y_min = all
        .clone()
        .map(|p| p.p50_us.max(1.0))
        .fold(f64::MAX, f64::min)
        .clamp(1.0, 1e9)
        / 1.5;
    let x_max = all.map(|p| p.t_s).fold(1.0, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (µs), solid p99, thin p50")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let p99: Vec<(f64, f64)> = pts.iter().map(|p| (p.t_s, p.p99_us.max(1.0))).collect();
        let p50: Vec<(f64, f64)> = pts.iter().map(|p| (p.t_s, p.p50_us.max(1.0))).collect();
        chart
            .draw_series(LineSeries::new(p99, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(p50, color.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hist::LatencyHist;
    use std::time::Duration;

    #[test]
    fn plots_are_small_svg_files_with_the_series_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = LatencyHist::new();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let path = dir.path().join("spectrum.svg");
        spectrum(
            &path,
            "ycsb-a",
            &[
                ("mantisd".into(), h.spectrum()),
                ("redis".into(), h.spectrum()),
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("mantisd") && svg.contains("redis"));
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
        let pts: Vec<TimelinePoint> = (1..=30)
            .map(|i| TimelinePoint {
                t_s: f64::from(i),
                ops_per_sec: 100.0,
                p50_us: 100.0,
                p99_us: 1000.0 * f64::from(i),
                max_us: 50_000.0,
                errors: 0,
            })
            .collect();
        let path = dir.path().join("timeline.svg");
        timeline(&path, "over time", &[("busy".into(), pts)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("busy") && svg.len() < 200_000);
        assert_eq!(percentile_label(nines_x(99.9)), "p99.9");
        assert_eq!(percentile_label(1.0), "p0");
    }
}
