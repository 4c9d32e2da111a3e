//! A PNG of a sweep: create throughput, latencies and the scheduler's cost per Job (CPU and
//! memory) against the number of clusters (Jobs fixed) and against the number of Jobs
//! (clusters fixed), on log-scaled x axes; one column per swept axis.
//!
//! Drawn with `plotters`' bitmap backend alone, text through `ab_glyph` from a TTF found on the
//! system, and encoded with `png`: no system graphics or font libraries.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow, bail};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::sweep::{Growth, SweepResults};

/// Picture size.
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1600;
/// Charts per column: throughput, latency, CPU per Job, memory per Job.
const ROWS: usize = 4;
/// The font family name the plot registers its TTF under.
const FAMILY: &str = "sans-serif";

/// Fonts tried, in order, when none is given.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers `font` (or the first of [`FONT_CANDIDATES`] that exists) once per process;
/// returns the file used.
fn load_font(font: Option<&Path>) -> anyhow::Result<PathBuf> {
    static LOADED: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = LOADED.get() {
        return Ok(path.clone());
    }
    let path = match font {
        Some(p) => p.to_owned(),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!(
                    "no TrueType font found (tried {}); pass --font PATH.ttf",
                    FONT_CANDIDATES.join(", ")
                )
            })?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // ab_glyph keeps a reference for the life of the process; one font per process is leaked.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))?;
    Ok(LOADED.get_or_init(|| path).clone())
}

/// Draws `results` to a PNG at `path`; returns the font file used.
pub fn draw(results: &SweepResults, path: &Path, font: Option<&Path>) -> anyhow::Result<PathBuf> {
    let font = load_font(font)?;
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let axes: Vec<(&Growth, &str, &str)> = [
            (&results.by_clusters, "clusters", "Jobs"),
            (&results.by_jobs, "Jobs", "clusters"),
        ]
        .into_iter()
        .filter(|(growth, _, _)| !growth.x.is_empty())
        .collect();
        let columns = axes.len().max(1);
        let panels = root.split_evenly((ROWS, columns));
        if axes.is_empty() {
            panels[0]
                .titled("Nothing swept", (FAMILY, 18))
                .map_err(plot_error)?;
        }
        for (column, (growth, axis, other)) in axes.into_iter().enumerate() {
            let x_desc = format!("{axis} (log scale)");
            let fixed = format!("{} {other}", growth.fixed);
            let at = |row: usize| &panels[row * columns + column];
            panel(
                at(0),
                &format!("Acknowledged creates/s vs {axis} ({fixed})"),
                &x_desc,
                "creates/s",
                growth,
                &[("creates/s", &growth.create_per_s, BLUE)],
            )?;
            panel(
                at(1),
                &format!("Latency vs {axis} ({fixed})"),
                &x_desc,
                "ms",
                growth,
                &[
                    ("propagation p50", &growth.propagation_p50_ms, GREEN),
                    ("propagation p99", &growth.propagation_p99_ms, RED),
                    (
                        "propagation p99 from send",
                        &growth.propagation_from_send_p99_ms,
                        RGBColor(255, 140, 0),
                    ),
                    ("status p99", &growth.status_p99_ms, MAGENTA),
                ],
            )?;
            panel(
                at(2),
                &format!("Scheduler CPU per Job vs {axis} ({fixed})"),
                &x_desc,
                "CPU ms per Job",
                growth,
                &[(
                    "scheduler CPU ms per Job",
                    &growth.cpu_s_per_1000_jobs,
                    BLUE,
                )],
            )?;
            panel(
                at(3),
                &format!("Scheduler memory per Job vs {axis} ({fixed})"),
                &x_desc,
                "MiB per 1,000 Jobs",
                growth,
                &[(
                    "resident memory added, MiB per 1,000 Jobs",
                    &growth.rss_mb_per_1000_jobs,
                    RED,
                )],
            )?;
        }
        root.present().map_err(plot_error)?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(font)
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// One chart: `series` against `growth.x`.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    growth: &Growth,
    series: &[(&str, &Vec<Option<f64>>, RGBColor)],
) -> anyhow::Result<()> {
    if growth.x.is_empty() {
        area.titled(&format!("{title}: not swept"), (FAMILY, 18))
            .map_err(plot_error)?;
        return Ok(());
    }
    let (lo, hi) = x_range(&growth.x);
    let y_max = series
        .iter()
        .flat_map(|(_, ys, _)| ys.iter().flatten())
        .fold(0f64, |m, &y| m.max(y));
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(8)
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .light_line_style(WHITE)
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(plot_error)?;
    for &(name, ys, color) in series {
        let points: Vec<(f64, f64)> = growth
            .x
            .iter()
            .zip(ys.iter())
            .filter_map(|(&x, y)| Some((x as f64, (*y)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// A log-scale range around the x values.
fn x_range(xs: &[usize]) -> (f64, f64) {
    let lo = xs.iter().copied().min().unwrap_or(1).max(1) as f64;
    let hi = xs.iter().copied().max().unwrap_or(1).max(1) as f64;
    (lo / 1.5, hi * 1.5)
}

/// Checks that `bytes` start like a PNG file.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// Fails unless `path` holds a PNG of the plot's size.
pub fn check_png(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    if !is_png(&bytes) {
        bail!("{} is not a PNG", path.display());
    }
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info()?;
    let info = reader.info();
    if (info.width, info.height) != (WIDTH, HEIGHT) {
        bail!("{} is {}×{}", path.display(), info.width, info.height);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_gaps_for_failed_runs() {
        if !FONT_CANDIDATES.iter().any(|p| Path::new(p).exists()) {
            panic!("no font among {FONT_CANDIDATES:?}: install fonts-dejavu-core");
        }
        let growth = |x: Vec<usize>| Growth {
            fixed: 10,
            create_per_s: x.iter().map(|&v| Some(1000.0 / v as f64)).collect(),
            propagation_p50_ms: vec![Some(1.0); x.len()],
            propagation_p99_ms: x.iter().map(|&v| (v > 1).then_some(v as f64)).collect(),
            status_p99_ms: vec![None; x.len()],
            x,
            ..Default::default()
        };
        let results = SweepResults {
            runs: vec![],
            by_clusters: growth(vec![1, 10, 100]),
            by_jobs: growth(vec![1000]),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        draw(&results, &path, None).unwrap();
        check_png(&path).unwrap();
        let empty = dir.path().join("empty.png");
        draw(&SweepResults::default(), &empty, None).unwrap();
        check_png(&empty).unwrap();
    }
}
