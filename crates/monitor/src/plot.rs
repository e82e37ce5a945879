//! `trainui plot RUN_DIR... --out FILE.svg|FILE.png`: the loss curves of
//! one or more runs as a picture for reports and chats. Each run has its
//! colour: raw training loss faint, smoothed (the TUI's own EMA, `smooth`)
//! solid, validation loss as dots; a legend, axis labels, an optional log
//! scale. Drawn by plotters, with the DejaVu Sans font built in (no system
//! fonts are looked for), PNG encoded by the `png` crate.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::smooth;
use crate::tui::app::default_smoothing;
use crate::tui::history::thin;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::Event;
use trainui_protocol::rundir::{self, EventTail};
use trainui_protocol::{process, text};

/// DejaVu Sans (crates/monitor/assets/fonts/LICENSE).
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
/// steps are replaced, as the TUI does. An events.jsonl that cannot be
/// read (not a regular file, no permission) is refused with the reason,
/// not drawn as an empty run.
pub fn curves(run_dir: &Path) -> Result<Curves> {
    let path = run_dir.join(rundir::EVENTS_FILE);
    if let Some(missing) = rundir::missing_events(run_dir, "give run directories") {
        return Err(missing);
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
        if let Some(problem) = tail.problem.take() {
            return Err(rundir::unreadable_events(&problem, "plot"));
        }
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
    tail.warn_skipped();
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
    process::print(format!(
        "wrote {} ({} run{})\n",
        text::escape(&options.out.display().to_string()),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    ));
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

/// Text from a run directory or the command line (a run's name, a title)
/// as the picture shows it: escaped as every printer escapes it
/// ([`text::escape`]), and without the two characters that [`text::escape`]
/// keeps but XML 1.0 has no place for (U+FFFE, U+FFFF). plotters' SVG
/// writer escapes `<`, `>`, `&` and quotes itself.
fn shown(text: &str) -> Cow<'_, str> {
    let escaped = text::escape(text);
    if !escaped.contains(['\u{fffe}', '\u{ffff}']) {
        return escaped;
    }
    Cow::Owned(
        escaped
            .chars()
            .map(|c| match c {
                '\u{fffe}' | '\u{ffff}' => format!("\\u{{{:x}}}", c as u32),
                c => c.to_string(),
            })
            .collect(),
    )
}

/// Where loss values go on the vertical axis. The chart's coordinates are
/// finite numbers far from f64's limits whatever the losses, so no
/// arithmetic on them (padding, ticks, plotters' own mapping) overflows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// The value times `factor`: 1, or 1/4 when the values' span or its
    /// padding would pass f64's largest value (a power of two: exact).
    Linear { factor: f64 },
    /// The value's base-10 logarithm, for positive values: within ±324.
    Log,
}

impl Scale {
    /// The chart coordinate of a loss, if it has one.
    fn place(self, value: f64) -> Option<f64> {
        let placed = match self {
            Self::Linear { factor } => value * factor,
            Self::Log if value > 0.0 => value.log10(),
            Self::Log => return None,
        };
        placed.is_finite().then_some(placed)
    }

    /// The `(step, coordinate)` of each point that has a place.
    fn place_all(self, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|&(step, value)| Some((step, self.place(value)?)))
            .collect()
    }

    /// The smoothed curve of `points`, placed. A linear curve is smoothed
    /// in chart coordinates (the same curve, scaled), where the average
    /// cannot overflow; a logarithmic one is the logarithm of the values'
    /// average, as it has always been drawn.
    fn smoothed(self, points: &[(f64, f64)], window: f64) -> Vec<(f64, f64)> {
        match self {
            Self::Linear { .. } => smooth::ema(&self.place_all(points), window),
            Self::Log => self.place_all(&smooth::ema(points, window)),
        }
    }
}

/// The vertical axis: its scale, its range and ticks in chart coordinates,
/// and the step between ticks (for the labels' precision).
#[derive(Debug, Clone, PartialEq)]
struct ValueAxis {
    scale: Scale,
    range: Range<f64>,
    ticks: Vec<f64>,
    light: Vec<f64>,
    step: f64,
}

/// Ticks per axis at most (plotters' own default).
const TICKS: usize = 10;

impl ValueAxis {
    /// The axis for `values` (finite ones), padded: 5% of their span, at
    /// least a thousandth of their size, on a linear scale; a factor of 1.2
    /// on a log scale, which shows positive values only.
    fn new(values: impl Iterator<Item = f64> + Clone, log_scale: bool) -> Self {
        let scale = if log_scale {
            Scale::Log
        } else {
            let (low, high) = bounds(values.clone());
            let fits = (high - low).is_finite()
                && padded(low, high).is_some_and(|(l, h)| l.is_finite() && h.is_finite());
            Scale::Linear {
                factor: if fits { 1.0 } else { 0.25 },
            }
        };
        let (low, high) = bounds(values.filter_map(|v| scale.place(v)));
        let range = match scale {
            // Nothing to place: 0.1 to 1.
            Scale::Log if low > high => -1.0..0.0,
            Scale::Linear { factor } if low > high => 0.1 * factor..factor,
            Scale::Log => {
                let pad = 1.2f64.log10();
                low - pad..high + pad
            }
            Scale::Linear { .. } => {
                let (low, high) = padded(low, high).unwrap_or((low - 1e-3, high + 1e-3));
                low..high
            }
        };
        match scale {
            Scale::Log => Self {
                scale,
                ticks: log_ticks(&range),
                light: Vec::new(),
                step: 1.0,
                range,
            },
            Scale::Linear { factor } => {
                let (ticks, step) = nice_ticks(&range, TICKS, 0.0);
                // A tick whose value (the coordinate over the factor) would
                // pass f64's largest value has no label.
                let ticks = ticks
                    .into_iter()
                    .filter(|t| (t / factor).is_finite())
                    .collect();
                Self {
                    scale,
                    ticks,
                    light: nice_ticks(&range, TICKS * 5, 0.0).0,
                    step: step / factor,
                    range,
                }
            }
        }
    }

    /// How a tick reads: the loss it stands for.
    fn label(&self, coordinate: f64) -> String {
        match self.scale {
            Scale::Linear { factor } => value_label(coordinate / factor, self.step),
            Scale::Log => power_label(coordinate),
        }
    }
}

/// The least and the greatest of `values`; `(inf, -inf)` for none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// `low` and `high` padded by 5% of their span, at least a thousandth of
/// their size (a thousandth when they are zero or nearly); `None` for no
/// values.
fn padded(low: f64, high: f64) -> Option<(f64, f64)> {
    if low > high {
        return None;
    }
    let pad = ((high - low) * 0.05).max(low.abs().max(high.abs()) * 1e-3);
    let pad = if pad.is_normal() { pad } else { 1e-3 };
    Some((low - pad, high + pad))
}

/// A chart axis over a finite range with the ticks we chose: plotters'
/// own numeric axes work out ticks by a search that never ends on some
/// ranges near f64's limits, so none of theirs is used.
#[derive(Debug, Clone)]
struct Ticked {
    range: Range<f64>,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let fraction = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.5
        };
        let pixels = f64::from(limit.1) - f64::from(limit.0);
        // As plotters rounds; far outside the picture is clipped anyway.
        let offset = if pixels >= 0.0 {
            (pixels * fraction + 1e-3).floor()
        } else {
            (pixels * fraction - 1e-3).ceil()
        };
        let at = f64::from(limit.0) + offset;
        if at.is_nan() {
            limit.0
        } else {
            at.clamp(-1e7, 1e7) as i32
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Ticked {
    fn format_ext(&self, value: &f64) -> String {
        value_label(*value, 0.0)
    }
}

/// Ticks at the multiples of a round step (1, 2 or 5 times a power of ten,
/// at least `least`) within `range`, about `target` of them, and the step.
/// Bounded work for any finite range; none for a range that is not one.
fn nice_ticks(range: &Range<f64>, target: usize, least: f64) -> (Vec<f64>, f64) {
    let span = range.end - range.start;
    if !(span.is_finite() && span > 0.0 && target > 0) {
        return (Vec::new(), 0.0);
    }
    let Some(step) = nice_step(span / target as f64).map(|s| s.max(least)) else {
        return (Vec::new(), 0.0);
    };
    let first = (range.start / step).ceil();
    let mut ticks: Vec<f64> = Vec::new();
    // At most about `target` steps fit; the count bounds the loop whatever
    // rounding does.
    for i in 0..=2 * target + 2 {
        let tick = (first + i as f64) * step;
        if !tick.is_finite() || tick > range.end {
            break;
        }
        if tick >= range.start && ticks.last().is_none_or(|&last| tick > last) {
            ticks.push(tick);
        }
    }
    (ticks, step)
}

/// The least of 1, 2 or 5 times a power of ten that is at least `raw`
/// (positive), if it is finite.
fn nice_step(raw: f64) -> Option<f64> {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw && s.is_finite() && s > 0.0)
}

/// Ticks of a log axis over `range` (powers of ten): 1, 2 and 5 times the
/// powers of ten in it, or every digit when that gives fewer than four (a
/// loss that falls from 5.5 to 1.6 is inside one decade), or only some
/// powers of ten when the range spans many decades.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    // Within ±330 for any range of f64 logarithms.
    let first = range.start.floor().clamp(-400.0, 400.0) as i32;
    let last = range.end.ceil().clamp(-400.0, 400.0) as i32;
    let ticks = |digits: &[f64], every: i32| -> Vec<f64> {
        (first..=last)
            .filter(|d| d.rem_euclid(every) == 0)
            .flat_map(|d| digits.iter().map(move |m| f64::from(d) + m.log10()))
            .filter(|t| range.contains(t))
            .collect()
    };
    let decades = last - first;
    if decades > 6 {
        let every = nice_step(f64::from(decades) / TICKS as f64).map_or(1, |e| e as i32);
        return ticks(&[1.0], every.max(1));
    }
    let coarse = ticks(&[1.0, 2.0, 5.0], 1);
    if coarse.len() >= 4 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)
    }
}

/// A value as a tick reads, to the precision of the `step` between ticks:
/// `0.25`, `3`, `1.7e308`, `2e-300`.
fn value_label(value: f64, step: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return "0".to_owned();
    }
    let exponent = value.abs().log10().floor() as i32;
    let step_exponent = if step.is_finite() && step > 0.0 {
        step.log10().floor() as i32
    } else {
        exponent
    };
    if (-4..6).contains(&exponent) && step_exponent >= -10 {
        let decimals = (-step_exponent).clamp(0, 10) as usize;
        format!("{value:.decimals$}")
    } else {
        let digits = (exponent - step_exponent).clamp(0, 16) as usize;
        format!("{value:.digits$e}")
    }
}

/// The label of a log axis tick at `exponent` (a digit times a power of
/// ten): `0.5`, `20`, `1e-300`.
fn power_label(exponent: f64) -> String {
    let power = (exponent + 1e-9).floor();
    let digit = 10f64.powf(exponent - power).round();
    let power = power as i32;
    if (-4..6).contains(&power) {
        let decimals = (-power).max(0) as usize;
        format!("{:.decimals$}", digit * 10f64.powi(power))
    } else {
        format!("{digit}e{power}")
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
        .filter(|s| s.is_finite())
        .fold(1.0, f64::max);
    let window = options
        .smoothing
        .unwrap_or_else(|| default_smoothing(runs.iter().map(|r| r.max_steps).max().unwrap_or(0)));
    let names: Vec<Cow<'_, str>> = runs.iter().map(|r| shown(&r.name)).collect();
    let title = options.title.as_deref().map_or_else(
        || format!("loss · {}", names.join(", ")),
        |title| shown(title).into_owned(),
    );
    let values = runs
        .iter()
        .flat_map(|r| r.train.iter().chain(&r.val))
        .map(|p| p.1);
    let y_axis = ValueAxis::new(values, options.log_scale);
    let x_range = 0.0..last_step;
    // Fewer ticks where step numbers are long (`18,446,744,073,709,551,615`).
    let label_chars = step_label(&last_step).len();
    let x_ticks = (options.width as usize / (label_chars * 9 + 40)).clamp(2, 10);
    // Steps are whole numbers.
    let (x_bold, _) = nice_ticks(&x_range, x_ticks, 1.0);
    let (x_light, _) = nice_ticks(&x_range, x_ticks * 5, 1.0);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    let y_desc = if options.log_scale {
        "loss (log scale)"
    } else {
        "loss"
    };
    let mut chart = builder
        .build_cartesian_2d(
            Ticked {
                range: x_range,
                bold: x_bold,
                light: x_light,
            },
            Ticked {
                range: y_axis.range.clone(),
                bold: y_axis.ticks.clone(),
                light: y_axis.light.clone(),
            },
        )
        .map_err(|e| error(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&step_label)
        .y_label_formatter(&|v| y_axis.label(*v))
        .light_line_style(BLACK.mix(0.04))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| error(&e))?;
    series(&mut chart, runs, &names, window, y_axis.scale)?;
    root.present().map_err(|e| error(&e))
}

/// Steps on the axis: whole, with thousands separators (plotters hands
/// the value by reference).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn step_label(step: &f64) -> String {
    trainui_protocol::lines::thousands(step.max(0.0).round() as u64)
}

/// Each run's raw, smoothed and validation curves, and the legend
/// (`names`: the runs' names as shown).
fn series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    runs: &[Curves],
    names: &[Cow<'_, str>],
    window: u64,
    scale: Scale,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let error = |e: &dyn std::fmt::Display| e.to_string();
    for (index, (run, name)) in runs.iter().zip(names).enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let raw = thin(&scale.place_all(&run.train), MAX_POINTS);
        chart
            .draw_series(LineSeries::new(raw, color.mix(0.25).stroke_width(1)))
            .map_err(|e| error(&e))?
            .label(format!("{name} raw"))
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.mix(0.25).stroke_width(2))
            });
        let smoothed = thin(&scale.smoothed(&run.train, window as f64), MAX_POINTS);
        chart
            .draw_series(LineSeries::new(smoothed, color.stroke_width(2)))
            .map_err(|e| error(&e))?
            .label(format!("{name} ema {window} steps"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        if !run.val.is_empty() {
            let val = thin(&scale.place_all(&run.val), MAX_POINTS);
            chart
                .draw_series(
                    val.iter()
                        .map(|&point| Circle::new(point, 4, color.filled())),
                )
                .map_err(|e| error(&e))?
                .label(format!("{name} val"))
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXTREMES: &[&[f64]] = &[
        &[1e308, 1.7e308],
        &[1e308, -1e308],
        &[f64::MAX],
        &[f64::MAX, f64::MIN],
        &[f64::MAX, 0.0, f64::MIN],
        &[f64::MIN_POSITIVE],
        &[5e-324],
        &[5e-324, 1e-323, 2.5e-320],
        &[-5e-324, 5e-324],
        &[1e-300, 5e-324, 1e300],
        &[3.0, 3.0, 3.0],
        &[0.0],
        &[0.5],
        &[1e16, 1e16 + 2.0],
        &[-7.25],
    ];

    #[test]
    fn any_finite_values_get_a_finite_axis_with_ticks_inside_it() {
        for values in EXTREMES {
            for log_scale in [false, true] {
                let axis = ValueAxis::new(values.iter().copied(), log_scale);
                let what = format!("{values:?} log {log_scale}: {axis:?}");
                let range = &axis.range;
                assert!(range.start.is_finite() && range.end.is_finite(), "{what}");
                assert!((range.end - range.start).is_finite(), "{what}");
                assert!(range.end > range.start, "{what}");
                assert!(!axis.ticks.is_empty(), "{what}");
                assert!(axis.ticks.len() <= 3 * TICKS, "{what}");
                for tick in axis.ticks.iter().chain(&axis.light) {
                    assert!((range.start..=range.end).contains(tick), "{tick} in {what}");
                    let label = axis.label(*tick);
                    assert!(
                        !label.contains("inf") && !label.contains("NaN"),
                        "{label}: {what}"
                    );
                }
                // Every value that has a place is inside the axis.
                for value in *values {
                    if let Some(at) = axis.scale.place(*value) {
                        assert!(range.contains(&at), "{value}: {what}");
                    } else {
                        assert!(log_scale && *value <= 0.0, "{value}: {what}");
                    }
                }
            }
        }
    }

    #[test]
    fn ordinary_losses_get_round_ticks_as_before() {
        let axis = ValueAxis::new([0.21, 4.31].into_iter(), false);
        assert_eq!(axis.scale, Scale::Linear { factor: 1.0 });
        let labels: Vec<String> = axis.ticks.iter().map(|t| axis.label(*t)).collect();
        assert_eq!(
            labels,
            [
                "0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5"
            ]
        );
        let axis = ValueAxis::new([0.21, 4.31].into_iter(), true);
        let labels: Vec<String> = axis.ticks.iter().map(|t| axis.label(*t)).collect();
        assert_eq!(labels, ["0.2", "0.5", "1", "2", "5"]);
        // The top of the range reads as itself, halved values and all.
        let axis = ValueAxis::new([-1e308, 1e308].into_iter(), false);
        assert_eq!(axis.scale, Scale::Linear { factor: 0.25 });
        let labels: Vec<String> = axis.ticks.iter().map(|t| axis.label(*t)).collect();
        assert_eq!(labels, ["-8e307", "-4e307", "0", "4e307", "8e307"]);
        let axis = ValueAxis::new([1e-300, 1e300].into_iter(), true);
        let labels: Vec<String> = axis.ticks.iter().map(|t| axis.label(*t)).collect();
        assert_eq!(
            labels,
            ["1e-300", "1e-200", "1e-100", "1", "1e100", "1e200", "1e300"]
        );
    }

    #[test]
    fn step_ticks_are_whole_and_few_for_any_run_length() {
        for last in [1.0, 2.0, 7.0, 300.0, 1e6, u64::MAX as f64] {
            let (ticks, step) = nice_ticks(&(0.0..last), 10, 1.0);
            assert!(step >= 1.0, "{last}");
            assert!(!ticks.is_empty() && ticks.len() <= 11, "{last}: {ticks:?}");
            assert!(
                ticks.iter().all(|t| t.fract() == 0.0 && *t <= last),
                "{ticks:?}"
            );
        }
        // Not a range: no ticks, and no work.
        for range in [0.0..f64::INFINITY, f64::NAN..1.0, 1.0..1.0, 2.0..1.0] {
            assert!(nice_ticks(&range, 10, 0.0).0.is_empty(), "{range:?}");
        }
    }

    #[test]
    fn names_in_a_picture_are_escaped_and_legal_in_xml() {
        assert_eq!(shown("lr-3e-4"), "lr-3e-4");
        assert_eq!(
            shown("a\x1b]0;x\x07\u{202e}b\u{fffe}\u{ffff}<&>"),
            "a\\x1b]0;x\\x07\\u{202e}b\\u{fffe}\\u{ffff}<&>"
        );
    }
}
