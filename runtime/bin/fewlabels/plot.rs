//! The loss plot of `fewlabels train`: loss curves over steps (top) and the class head's
//! accuracy, on training batches and held out (bottom), drawn with plotters into a buffer and
//! written as PNG. Text uses DejaVu Sans when Debian's fonts-dejavu-core is installed; without
//! it the plot is drawn without any text.

use crate::{images, Res};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const WIDTH: u32 = 900;
const HEIGHT: u32 = 700;

/// One curve: its name, colour and points (step, value).
pub struct Series {
    pub name: &'static str,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// Whether a font is registered for text (registered once per process).
fn has_font() -> bool {
    static FONT_OK: OnceLock<bool> = OnceLock::new();
    *FONT_OK.get_or_init(|| match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    })
}

/// Smallest and largest value of every series' points (with a margin), or `fallback`.
fn range(series: &[Series], axis: impl Fn(&(f64, f64)) -> f64, fallback: (f64, f64)) -> (f64, f64) {
    let vals = series
        .iter()
        .flat_map(|s| s.points.iter().map(&axis))
        .filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo > hi {
        return fallback;
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    series: &[Series],
    x_range: (f64, f64),
    y_range: (f64, f64),
    text: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut b = ChartBuilder::on(area);
    b.margin(12);
    if text {
        b.caption(title, ("sans-serif", 20))
            .x_label_area_size(36)
            .y_label_area_size(56);
    }
    let mut chart = b
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
        .map_err(e)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(TRANSPARENT);
    if text {
        mesh.x_desc("step").y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(e)?;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let colour = s.colour;
        let drawn = chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(e)?;
        if text {
            drawn.label(s.name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        }
        if s.points.len() < 30 {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(e)?;
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Draws the losses (top) and accuracies in [0, 1] (bottom) over steps to a PNG file.
pub fn write(path: &Path, losses: &[Series], accuracy: &[Series], last_step: f64) -> Res<()> {
    let text = has_font();
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = || -> Result<(), String> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (top, bottom) = root.split_vertically(HEIGHT * 3 / 5);
            let x_range = (0.0, last_step.max(1.0));
            let y = range(losses, |p| p.1, (0.0, 1.0));
            panel(&top, "losses", "loss", losses, x_range, y, text)?;
            panel(
                &bottom,
                "class-head accuracy",
                "accuracy",
                accuracy,
                x_range,
                (0.0, 1.0),
                text,
            )?;
            root.present().map_err(|e| e.to_string())
        };
        draw().map_err(|e| format!("loss plot {}: {e}", path.display()))?;
    }
    images::write_pixels(path, &buf, WIDTH as usize, HEIGHT as usize, 3)
}
