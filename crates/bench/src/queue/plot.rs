//! `queue.png`: per system, the drain and enqueue throughputs (median bar, the runs' range
//! as a whisker) and the enqueue-to-start latency (p50 and p99, log scale).

use crate::Result;
use crate::queue::report::{QueueReport, Stat, Summary};
use plotters::prelude::*;
use std::path::Path;

const QUESTLINE: RGBColor = RGBColor(30, 90, 200);
const PEER: RGBColor = RGBColor(150, 150, 150);
const P99: RGBColor = RGBColor(220, 120, 40);

pub fn draw(report: &QueueReport, path: &Path) -> Result<()> {
    crate::plot::register_font()?;
    let root = BitMapBackend::new(path, (1200, 1350)).into_drawing_area();
    root.fill(&WHITE)?;
    let p = &report.params;
    let title = format!(
        "job queues on one 2-core machine — {} no-op jobs, concurrency {}, median of {} runs",
        p.jobs, p.concurrency, p.runs
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((3, 1));
    let systems = &report.summary;
    bars(&panels[0], systems, "drain: jobs/s (bulk-enqueued backlog, one worker process)", |s| s.drain_jobs_per_sec)?;
    bars(&panels[1], systems, "bulk enqueue: jobs/s (calls of 1,000, one producer process)", |s| {
        s.enqueue_jobs_per_sec
    })?;
    latency(&panels[2], systems, p.latency_jobs, p.rate)?;
    root.present()?;
    Ok(())
}

fn label(s: &Summary) -> String {
    s.system.name().to_owned()
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    systems: &[Summary],
    caption: &str,
    value: impl Fn(&Summary) -> Option<Stat>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let y_max = systems.iter().filter_map(&value).map(|s| s.max).fold(1.0, f64::max) * 1.15;
    let n = systems.len();
    let names: Vec<String> = systems.iter().map(label).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| index(*x).and_then(|i| names.get(i).cloned()).unwrap_or_default())
        .y_desc("jobs/s")
        .draw()?;
    for (i, s) in systems.iter().enumerate() {
        let Some(stat) = value(s) else { continue };
        let x = i as f64;
        let color = if s.system.is_questline() { QUESTLINE } else { PEER };
        chart.draw_series(std::iter::once(Rectangle::new([(x - 0.3, 0.0), (x + 0.3, stat.median)], color.filled())))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, stat.min), (x, stat.max)],
            BLACK.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.0}", stat.median),
            (x - 0.25, stat.max + y_max * 0.02),
            ("sans-serif", 15),
        )))?;
    }
    Ok(())
}

fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    systems: &[Summary],
    jobs: u64,
    rate: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = systems.len();
    let names: Vec<String> = systems.iter().map(label).collect();
    let highest = systems.iter().filter_map(|s| s.latency_p99_ms).map(|s| s.max).fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "enqueue → handler start, ms (log): {jobs} jobs one per call, open loop at {rate:.0}/s, idle worker"
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), (0.1..highest).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| index(*x).and_then(|i| names.get(i).cloned()).unwrap_or_default())
        .y_desc("ms")
        .draw()?;
    for (i, s) in systems.iter().enumerate() {
        let x = i as f64;
        let color = if s.system.is_questline() { QUESTLINE } else { PEER };
        for (stat, dx, c) in [(s.latency_p50_ms, -0.2, color), (s.latency_p99_ms, 0.2, P99)] {
            let Some(stat) = stat else { continue };
            let v = stat.median.max(0.1);
            chart
                .draw_series(std::iter::once(Rectangle::new([(x + dx - 0.18, 0.1), (x + dx + 0.18, v)], c.filled())))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{v:.1}"),
                (x + dx - 0.17, v * 1.25),
                ("sans-serif", 14),
            )))?;
        }
    }
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("p50 (blue: questline, grey: peers)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], QUESTLINE.filled()));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("p99")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], P99.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The system index at an axis position, for whole positions only.
fn index(x: f64) -> Option<usize> {
    let i = x.round();
    ((x - i).abs() < 0.01 && i >= 0.0).then_some(i as usize)
}
