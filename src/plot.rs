//! `trainui plot RUN_DIR... --out FILE.svg|FILE.png`: the loss curves of
//! one or more runs as a picture for reports and chats. Each run has its
//! colour: raw training loss faint, smoothed (the TUI's own EMA, `smooth`)
//! solid, validation loss as dots; a legend, axis labels, an optional log
//! scale. Drawn by plotters, with the DejaVu Sans font built in (no system
//! fonts are looked for), PNG encoded by the `png` crate.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::{Error, Result};
use crate::events::Event;
use crate::rundir::{self, EventTail};
use crate::smooth;
use crate::tui::app::default_smoothing;
use crate::tui::history::thin;

/// DejaVu Sans (assets/fonts/LICENSE).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Points drawn per series at most: more than any picture has pixels.
const MAX_POINTS: usize = 4000;
/// Bytes of events.jsonl read at a time.
const CHUNK: u64 = 16 << 20;

/// One colour per run, in order (Tableau 10: distinct, and legible to most
/// colour-blind readers).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// What to draw and how.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    pub runs: Vec<PathBuf>,
    pub out: PathBuf,
    pub width: u32,
    pub height: u32,
    pub log_scale: bool,
    /// EMA window in steps; `None`: as the TUI picks it for the longest run.
    pub smoothing: Option<u64>,
    pub title: Option<String>,
}

/// The curves of one run.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    pub name: String,
    pub max_steps: u64,
    /// `(step, loss)` of its step events, finite ones.
    pub train: Vec<(f64, f64)>,
    /// `(step, validation loss)`.
    pub val: Vec<(f64, f64)>,
}

/// Reads a run's curves from its events.jsonl. A resumed run's rewound
/// steps are replaced, as the TUI does.
pub fn curves(run_dir: &Path) -> Result<Curves> {
    let path = run_dir.join(rundir::EVENTS_FILE);
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "{}: no events.jsonl here; give run directories",
            run_dir.display()
        )));
    }
    let name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut curves = Curves {
        name,
        ..Curves::default()
    };
    let mut tail = EventTail::new(run_dir, 0);
    let length = std::fs::metadata(&path).map_or(0, |m| m.len());
    loop {
        let before = tail.offset();
        let events = tail.read_new(CHUNK);
        // A piece without a whole line is not the end of the file; a read
        // that moves no further is.
        if events.is_empty() && (tail.offset() >= length || tail.offset() == before) {
            break;
        }
        for event in events {
            match event {
                Event::Started(info) => {
                    curves.max_steps = info.max_steps;
                    let from = info.start_step as f64;
                    curves.train.retain(|p| p.0 <= from);
                    curves.val.retain(|p| p.0 <= from);
                }
                Event::Step(m) => {
                    curves.max_steps = curves.max_steps.max(m.max_steps);
                    if m.loss.is_finite() {
                        curves.train.push((m.step as f64, m.loss));
                    }
                }
                Event::ValLoss {
                    step,
                    loss: Some(loss),
                    ..
                } if loss.is_finite() => curves.val.push((step as f64, loss)),
                _ => {}
            }
        }
    }
    Ok(curves)
}

/// `trainui plot`: reads every run, draws, writes the file.
pub fn run(options: &PlotOptions) -> Result<()> {
    let runs = options
        .runs
        .iter()
        .map(|dir| curves(dir))
        .collect::<Result<Vec<Curves>>>()?;
    if runs.iter().all(|r| r.train.is_empty() && r.val.is_empty()) {
        return Err(Error::Usage(
            "no losses in these runs yet: nothing to draw".into(),
        ));
    }
    draw(&runs, options)?;
    println!(
        "wrote {} ({} run{})",
        options.out.display(),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Draws `runs` into `options.out`, SVG or PNG by its extension.
pub fn draw(runs: &[Curves], options: &PlotOptions) -> Result<()> {
    let out = &options.out;
    let extension = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    // Registering twice is harmless; without it plotters has no font at all.
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| Error::Failed("the built-in font does not load".into()))?;
    let size = (options.width, options.height);
    let failed = |e: String| Error::Failed(format!("cannot draw {}: {e}", out.display()));
    match extension.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            chart(
                &SVGBackend::with_string(&mut svg, size).into_drawing_area(),
                runs,
                options,
            )
            .map_err(failed)?;
            std::fs::write(out, svg).map_err(Error::io("cannot write", out))
        }
        Some("png") => {
            let mut rgb = vec![0u8; options.width as usize * options.height as usize * 3];
            chart(
                &BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(),
                runs,
                options,
            )
            .map_err(failed)?;
            write_png(out, options.width, options.height, &rgb)
        }
        _ => Err(Error::Usage(format!(
            "{}: the picture's name must end in .svg or .png",
            out.display()
        ))),
    }
}

fn write_png(out: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let file = std::fs::File::create(out).map_err(Error::io("cannot create", out))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(rgb))
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", out.display())))
}

/// The value range of every curve, padded; positive for a log scale.
fn value_range(runs: &[Curves], log_scale: bool) -> (f64, f64) {
    let values = runs
        .iter()
        .flat_map(|r| r.train.iter().chain(&r.val))
        .map(|p| p.1)
        .filter(|v| !log_scale || *v > 0.0);
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() {
        return (0.1, 1.0);
    }
    if log_scale {
        (low / 1.2, high * 1.2)
    } else {
        let pad = ((high - low) * 0.05).max(1e-3);
        (low - pad, high + pad)
    }
}

fn chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[Curves],
    options: &PlotOptions,
) -> std::result::Result<(), String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let last_step = runs
        .iter()
        .flat_map(|r| r.train.iter().chain(&r.val))
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let window = options
        .smoothing
        .unwrap_or_else(|| default_smoothing(runs.iter().map(|r| r.max_steps).max().unwrap_or(0)));
    let title = options.title.clone().unwrap_or_else(|| {
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        format!("loss · {}", names.join(", "))
    });
    let (low, high) = value_range(runs, options.log_scale);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    let x_range = 0.0..last_step;
    let y_desc = if options.log_scale {
        "loss (log scale)"
    } else {
        "loss"
    };
    if options.log_scale {
        let mut chart = builder
            .build_cartesian_2d(
                x_range,
                (low..high)
                    .log_scale()
                    .with_key_points(log_ticks(low, high)),
            )
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .x_label_formatter(&step_label)
            .light_line_style(BLACK.mix(0.04))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| error(&e))?;
        series(&mut chart, runs, window, options.log_scale)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range, low..high)
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .x_label_formatter(&step_label)
            .light_line_style(BLACK.mix(0.04))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| error(&e))?;
        series(&mut chart, runs, window, options.log_scale)?;
    }
    root.present().map_err(|e| error(&e))
}

/// Ticks of a log axis from `low` to `high`: 1, 2 and 5 times the powers
/// of ten between them, or every digit when that gives fewer than four
/// (a loss that falls from 5.5 to 1.6 is inside one decade).
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decades = low.log10().floor() as i32..=high.log10().ceil() as i32;
    let ticks = |digits: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|d| digits.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|t| (low..=high).contains(t))
            .collect()
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 4 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// Steps on the axis: whole, with thousands separators (plotters hands
/// the value by reference).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn step_label(step: &f64) -> String {
    crate::lines::thousands(step.max(0.0).round() as u64)
}

/// Each run's raw, smoothed and validation curves, and the legend.
fn series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    runs: &[Curves],
    window: u64,
    log_scale: bool,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let error = |e: &dyn std::fmt::Display| e.to_string();
    for (index, run) in runs.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        // A log scale has no room for losses at or below zero.
        let drawable = |points: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            if log_scale {
                points.into_iter().filter(|p| p.1 > 0.0).collect()
            } else {
                points
            }
        };
        let raw = drawable(thin(&run.train, MAX_POINTS));
        chart
            .draw_series(LineSeries::new(raw, color.mix(0.25).stroke_width(1)))
            .map_err(|e| error(&e))?
            .label(format!("{} raw", run.name))
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.mix(0.25).stroke_width(2))
            });
        let smoothed = drawable(thin(&smooth::ema(&run.train, window as f64), MAX_POINTS));
        chart
            .draw_series(LineSeries::new(smoothed, color.stroke_width(2)))
            .map_err(|e| error(&e))?
            .label(format!("{} ema {window} steps", run.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        if !run.val.is_empty() {
            let val = drawable(thin(&run.val, MAX_POINTS));
            chart
                .draw_series(
                    val.iter()
                        .map(|&point| Circle::new(point, 4, color.filled())),
                )
                .map_err(|e| error(&e))?
                .label(format!("{} val", run.name))
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .border_style(BLACK.mix(0.4))
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(|e| error(&e))
}
