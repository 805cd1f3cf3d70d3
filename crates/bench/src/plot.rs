//! One PNG per run: throughput over time (engine and reference), resident memory over time,
//! and the request latency distribution.
//!
//! plotters draws text with `ab_glyph` from a TrueType font it is handed; we load DejaVu
//! Sans (or Liberation) from the system's fonts. Without one, there is no plot (the JSON
//! result is written regardless).

use crate::Result;
use crate::report::Report;
use crate::sampler::Sample;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

pub(crate) fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| format!("no TrueType font found (looked for {})", FONTS.join(", ")))?;
            // Registered once for the life of the process: plotters wants 'static bytes.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "invalid font".to_owned())
        })
        .clone()
        .map_err(Into::into)
}

pub fn draw(report: &Report, path: &Path) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 1350)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "questline ingest — {} ({} mode), {} users, {} missions, {} clients × {} events/batch",
        report.params.database,
        report.params.mode,
        report.params.users,
        report.params.missions,
        report.params.clients,
        report.params.batch
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((3, 1));
    throughput(report, &panels[0])?;
    memory(report, &panels[1])?;
    latency(report, &panels[2])?;
    root.present()?;
    Ok(())
}

fn throughput<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let engine = &report.engine.samples;
    let reference = report.reference.as_ref().map(|r| r.samples.as_slice()).unwrap_or(&[]);
    let t_max = engine.iter().chain(reference).map(|s| s.t).fold(1.0, f64::max);
    let y_max = engine.iter().chain(reference).map(|s| s.rate).fold(1.0, f64::max) * 1.15;
    let caption = match &report.reference {
        Some(r) => format!(
            "events/s committed: engine {:.0} (mean), reference {:.0} (mean) — {:.0}%",
            report.engine.events_per_sec,
            r.events_per_sec,
            report.share_of_reference.unwrap_or(0.0) * 100.0
        ),
        None => format!("events/s committed: engine {:.0} (mean)", report.engine.events_per_sec),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc("seconds since the phase started").y_desc("events/s").draw()?;
    // Commits are bursty (a lane gathers requests into one transaction), so the per-second
    // rate is drawn faintly and a 5-second moving average over it.
    let faint = |c: RGBColor| RGBColor(c.0 / 3 + 170, c.1 / 3 + 170, c.2 / 3 + 170);
    chart.draw_series(LineSeries::new(engine.iter().map(|s| (s.t, s.rate)), faint(BLUE)))?;
    series(&mut chart, &smooth(engine), |s| s.rate, BLUE, "engine (HTTP, in-process server), 5 s average")?;
    if !reference.is_empty() {
        chart.draw_series(LineSeries::new(reference.iter().map(|s| (s.t, s.rate)), faint(RED)))?;
        series(&mut chart, &smooth(reference), |s| s.rate, RED, "reference (raw SQL, same rows), 5 s average")?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}

fn memory<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let samples = &report.engine.samples;
    let t_max = samples.iter().map(|s| s.t).fold(1.0, f64::max);
    let y_max = samples.iter().map(|s| s.rss_mib).fold(1.0, f64::max) * 1.15;
    let m = &report.engine.memory;
    let mut caption = format!("resident memory (server and load generator), peak {:.0} MiB", m.peak_sampled_mib);
    if let (Some(a), Some(b)) = (m.first_minute_mib, m.last_minute_mib) {
        caption.push_str(&format!("; first minute {a:.0} MiB, last minute {b:.0} MiB"));
    }
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc("seconds since the phase started").y_desc("RSS, MiB").draw()?;
    series(&mut chart, samples, |s| s.rss_mib, RGBColor(0, 140, 60), "RSS")?;
    series(&mut chart, samples, |s| s.rss_anon_mib, RGBColor(150, 60, 160), "anonymous RSS (without mapped files)")?;
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}

fn latency<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let l = &report.engine.latency;
    let points: Vec<(f64, f64)> = l.distribution.iter().enumerate().map(|(i, (_, ms))| (i as f64, *ms)).collect();
    let labels: Vec<String> = l.distribution.iter().map(|(p, _)| format!("p{p}")).collect();
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "request latency ({} requests): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                l.requests, l.p50_ms, l.p95_ms, l.p99_ms
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3..(points.len() as f64 - 0.7), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("percentile")
        .y_desc("ms")
        .draw()?;
    chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))?;
    Ok(())
}

/// The rate over the five seconds ending at each sample.
fn smooth(samples: &[Sample]) -> Vec<Sample> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let from = i.saturating_sub(5);
            let (t0, d0) = if i >= 5 { (samples[from].t, samples[from].done) } else { (0.0, 0) };
            Sample { rate: (s.done - d0) as f64 / (s.t - t0).max(1e-9), ..*s }
        })
        .collect()
}

fn series<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    samples: &[Sample],
    y: impl Fn(&Sample) -> f64,
    color: RGBColor,
    label: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, y(s))), color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}
