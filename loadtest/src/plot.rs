//! SVG plots written next to a summary: latency by percentile (HDR style, log of "nines"),
//! latency over time (p50, p99, max per second), throughput over time and the stacked
//! timeline of connections, deliveries/s and p99 (`plot::timeline`). Drawing only.

mod timeline;

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::summary::{sibling, Summary};

const SIZE: (u32, u32) = (900, 480);

/// Highest percentile drawn, as a count of nines (5 = 99.999%).
const MAX_NINES: f64 = 5.0;

/// Writes the four plots; returns their paths.
pub fn write_all(
    summary: &Summary,
    latency: &Histogram<u64>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let title = format!(
        "{} {} · {} connections",
        summary.target, summary.scenario, summary.connections
    );
    let paths = vec![
        sibling(out, "latency-percentiles"),
        sibling(out, "latency-over-time"),
        sibling(out, "throughput"),
        sibling(out, "timeline"),
    ];
    percentiles(&paths[0], &title, latency)?;
    over_time(&paths[1], &title, summary)?;
    throughput(&paths[2], &title, summary)?;
    timeline::draw(&paths[3], &title, summary)?;
    Ok(paths)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

fn area(path: &Path) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

fn nines_label(x: f64) -> String {
    let q = 1.0 - 10f64.powf(-x);
    format!("{}%", (q * 100.0 * 1000.0).round() / 1000.0)
}

fn percentiles(path: &Path, title: &str, h: &Histogram<u64>) -> anyhow::Result<()> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            MAX_NINES
        } else {
            (-(1.0 - q).log10()).min(MAX_NINES)
        };
        points.push((
            x,
            h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
        ));
    }
    let ymax = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = area(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title} · latency by percentile"),
            ("sans-serif", 18),
        )
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..MAX_NINES, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc("percentile")
        .y_desc("publish → receive latency (ms)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn over_time(path: &Path, title: &str, s: &Summary) -> anyhow::Result<()> {
    let series = |f: fn(&crate::stats::Percentiles) -> Option<f64>| -> Vec<(f64, f64)> {
        s.timeline
            .iter()
            .filter_map(|p| f(&p.latency_ms).map(|v| (p.t_s, v)))
            .collect()
    };
    let p50 = series(|l| l.p50);
    let p99 = series(|l| l.p99);
    let max = series(|l| l.max);
    let xmax = s.timeline.last().map_or(1.0, |p| p.t_s.max(1.0));
    let ymax = max.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = area(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} · latency over time"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency of the second's deliveries (ms)")
        .draw()
        .map_err(err)?;
    for (name, data, color) in [("p50", p50, GREEN), ("p99", p99, BLUE), ("max", max, RED)] {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn throughput(path: &Path, title: &str, s: &Summary) -> anyhow::Result<()> {
    let t = &s.timeline;
    let deliveries: Vec<(f64, f64)> = t.iter().map(|p| (p.t_s, p.deliveries_per_sec)).collect();
    let publishes: Vec<(f64, f64)> = t.iter().map(|p| (p.t_s, p.publishes_per_sec)).collect();
    let connects: Vec<(f64, f64)> = t.iter().map(|p| (p.t_s, p.connects_per_sec)).collect();
    let xmax = t.last().map_or(1.0, |p| p.t_s.max(1.0));
    let y1 = deliveries.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let y2 = publishes
        .iter()
        .chain(&connects)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let root = area(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} · throughput"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..y1)
        .map_err(err)?
        .set_secondary_coord(0f64..xmax, 0f64..y2);
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("deliveries / s")
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("publishes / s, connects / s")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(deliveries, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("deliveries/s (left)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    for (name, data, color) in [
        ("publishes/s (right)", publishes, GREEN),
        ("connects/s (right)", connects, RED),
    ] {
        chart
            .draw_secondary_series(LineSeries::new(data, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_are_labelled_as_percentiles() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
