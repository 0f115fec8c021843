//! The timeline plot: open connections, deliveries per second and the p99 latency of each
//! second, stacked on one time axis, so that a node loss and the reconnects that follow it
//! (`run-storm.sh`) can be read side by side. Drawing only.

use std::path::Path;

use plotters::prelude::*;

use super::{area, err};
use crate::summary::Summary;

/// One panel: its axis label, points and colour.
type Panel = (&'static str, Vec<(f64, f64)>, RGBColor);

/// Draws the three panels of `s`'s timeline into `path`.
pub fn draw(path: &Path, title: &str, s: &Summary) -> anyhow::Result<()> {
    let t = &s.timeline;
    let xmax = t.last().map_or(1.0, |p| p.t_s.max(1.0));
    let panels: [Panel; 3] = [
        (
            "open connections",
            t.iter().map(|p| (p.t_s, p.connections as f64)).collect(),
            BLACK,
        ),
        (
            "deliveries / s",
            t.iter().map(|p| (p.t_s, p.deliveries_per_sec)).collect(),
            BLUE,
        ),
        (
            "p99 latency (ms)",
            t.iter()
                .filter_map(|p| p.latency_ms.p99.map(|v| (p.t_s, v)))
                .collect(),
            RED,
        ),
    ];
    let root = area(path)?;
    let root = root
        .titled(&format!("{title} · timeline"), ("sans-serif", 18))
        .map_err(err)?;
    for ((name, data, color), panel) in panels.into_iter().zip(root.split_evenly((3, 1))) {
        let ymax = data.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&panel)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(name)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
