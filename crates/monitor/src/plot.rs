//! `trainui plot RUN_DIR... --out FILE.svg|FILE.png`: the loss curves of
//! one or more runs (or their learning rate, gradient norm or tokens/s,
//! `--series`, against steps, tokens seen or wall-clock time, `--x`) as a
//! picture for reports and chats. Each run has its colour: raw values
//! faint, smoothed (the TUI's own EMA and window, `smooth`) solid,
//! validation loss as dots; a legend, axis labels, an optional log
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
pub use crate::tui::history::TokenCount;
use crate::tui::history::thin;
pub use crate::tui::view_state::{Series, XAxis};
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
    /// EMA window in steps; `None`: as the TUI picks it for these runs
    /// ([`smooth::shared_window`]).
    pub smoothing: Option<u64>,
    pub title: Option<String>,
    /// What is drawn.
    pub series: Series,
    /// What the x axis counts.
    pub x_axis: XAxis,
}

/// The series `plot --series` names (`loss` for any other name: the
/// command line allows only the four).
#[must_use]
pub fn series_named(name: &str) -> Series {
    match name {
        "lr" => Series::LearningRate,
        "grad_norm" => Series::GradNorm,
        "tokens_per_sec" => Series::TokensPerSec,
        _ => Series::Loss,
    }
}

/// The x axis `plot --x` names (`steps` for any other name).
#[must_use]
pub fn x_axis_named(name: &str) -> XAxis {
    match name {
        "tokens" => XAxis::Tokens,
        "time" => XAxis::Time,
        _ => XAxis::Steps,
    }
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
    /// `(step, value)` of the step events' other numbers, finite ones.
    pub learning_rate: Vec<(f64, f64)>,
    pub grad_norm: Vec<(f64, f64)>,
    pub tokens_per_sec: Vec<(f64, f64)>,
    /// `(step, tokens seen)` ([`TokenCount`]).
    pub tokens: Vec<(f64, f64)>,
    pub tokens_estimated: bool,
    /// `(step, wall-clock seconds)`.
    pub clock: Vec<(f64, f64)>,
}

impl Curves {
    /// The `(step, value)` points of `series`.
    #[must_use]
    pub fn points(&self, series: Series) -> &[(f64, f64)] {
        match series {
            Series::Loss => &self.train,
            Series::LearningRate => &self.learning_rate,
            Series::GradNorm => &self.grad_norm,
            Series::TokensPerSec => &self.tokens_per_sec,
        }
    }

    /// `points` with their steps moved to `x_axis`.
    #[must_use]
    pub fn against(&self, x_axis: XAxis, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let map = match x_axis {
            XAxis::Steps => return points.to_vec(),
            XAxis::Tokens => &self.tokens,
            XAxis::Time => &self.clock,
        };
        points
            .iter()
            .map(|&(step, y)| (at_step(map, step), y))
            .collect()
    }
}

/// The value of `map` (step, value; steps increasing) at `step`, between
/// the logged steps around it.
#[must_use]
pub fn at_step(map: &[(f64, f64)], step: f64) -> f64 {
    let after = map.partition_point(|p| p.0 < step);
    match (map.get(after.wrapping_sub(1)), map.get(after)) {
        (Some(&(s0, t0)), Some(&(s1, t1))) if s1 > s0 => t0 + (t1 - t0) * (step - s0) / (s1 - s0),
        (_, Some(&(_, t))) | (Some(&(_, t)), None) => t,
        (None, None) => step,
    }
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
    let mut count = TokenCount::default();
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
                    for points in [
                        &mut curves.train,
                        &mut curves.val,
                        &mut curves.learning_rate,
                        &mut curves.grad_norm,
                        &mut curves.tokens_per_sec,
                        &mut curves.tokens,
                        &mut curves.clock,
                    ] {
                        points.retain(|p| p.0 <= from);
                    }
                    if info.resumed_from.is_some() {
                        count.resume(curves.tokens.last().map_or(0.0, |p| p.1));
                    }
                }
                Event::Step(m) => {
                    curves.max_steps = curves.max_steps.max(m.max_steps);
                    let step = m.step as f64;
                    if m.loss.is_finite() {
                        curves.train.push((step, m.loss));
                    }
                    if m.learning_rate.is_finite() {
                        curves.learning_rate.push((step, m.learning_rate));
                    }
                    if let Some(norm) = m.grad_norm.filter(|n| n.is_finite()) {
                        curves.grad_norm.push((step, norm));
                    }
                    if m.tokens_per_sec.is_finite() {
                        curves.tokens_per_sec.push((step, m.tokens_per_sec));
                    }
                    curves.tokens.push((step, count.step(&m)));
                    curves.clock.push((step, m.elapsed_secs));
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
    curves.tokens_estimated = count.estimated;
    Ok(curves)
}

/// `trainui plot`: reads every run, draws, writes the file.
pub fn run(options: &PlotOptions) -> Result<()> {
    let runs = options
        .runs
        .iter()
        .map(|dir| curves(dir))
        .collect::<Result<Vec<Curves>>>()?;
    let series = options.series;
    let nothing = match series {
        Series::Loss => runs.iter().all(|r| r.train.is_empty() && r.val.is_empty()),
        _ => runs.iter().all(|r| r.points(series).is_empty()),
    };
    if nothing {
        return Err(Error::Usage(format!(
            "no {} in these runs yet: nothing to draw",
            match series {
                Series::Loss => "losses",
                Series::LearningRate => "learning rates",
                Series::GradNorm => "gradient norms (their producer does not report them)",
                Series::TokensPerSec => "tokens/s",
            }
        )));
    }
    if options.x_axis == XAxis::Tokens
        && runs
            .iter()
            .all(|r| r.tokens.last().is_none_or(|p| p.1 <= 0.0))
    {
        return Err(Error::Usage(
            "these runs count no tokens (no tokens_seen and no tokens/s in their step events): \
             use --x steps or --x time"
                .into(),
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

/// One run as drawn: its points placed on the chart's axes.
struct Drawn {
    raw: Vec<(f64, f64)>,
    /// The smoothed curve and the window applied to it, for the series
    /// that are smoothed (all but the learning rate).
    smoothed: Option<(u64, Vec<(f64, f64)>)>,
    val: Vec<(f64, f64)>,
}

/// The smoothing window `plot` applies to `runs` as the TUI would: `chosen`
/// or the window [`smooth::shared_window`] gives the runs together, each
/// curve's capped by [`smooth::applied_window`].
#[must_use]
pub fn window(runs: &[Curves], chosen: Option<u64>) -> u64 {
    chosen.unwrap_or_else(|| smooth::shared_window(runs.iter().map(|r| r.max_steps)))
}

/// A count of tokens as axes show it: `950`, `12.5k`, `3M`.
#[must_use]
pub fn count_label(value: f64) -> String {
    let (scaled, unit) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(factor, _)| value.abs() >= *factor)
        .map_or((value, ""), |(factor, unit)| (value / factor, unit));
    let text = format!("{scaled:.2}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

fn chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[Curves],
    options: &PlotOptions,
) -> std::result::Result<(), String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let (kind, x_axis) = (options.series, options.x_axis);
    let with_val = kind == Series::Loss;
    let window = window(runs, options.smoothing);
    let names: Vec<Cow<'_, str>> = runs.iter().map(|r| shown(&r.name)).collect();
    let title = options.title.as_deref().map_or_else(
        || format!("{} · {}", kind.name(), names.join(", ")),
        |title| shown(title).into_owned(),
    );
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            let val: &[(f64, f64)] = if with_val { &r.val } else { &[] };
            r.points(kind).iter().chain(val)
        })
        .map(|p| p.1)
        .collect();
    let y_axis = ValueAxis::new(values.iter().copied(), options.log_scale);
    let scale = y_axis.scale;
    let drawn: Vec<Drawn> = runs
        .iter()
        .map(|run| {
            let points = run.points(kind);
            Drawn {
                raw: run.against(x_axis, &scale.place_all(points)),
                smoothed: (kind != Series::LearningRate).then(|| {
                    let applied = smooth::applied_window(window, points);
                    let smoothed = scale.smoothed(points, window as f64);
                    (applied, run.against(x_axis, &smoothed))
                }),
                val: if with_val {
                    run.against(x_axis, &scale.place_all(&run.val))
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let last_x = drawn
        .iter()
        .flat_map(|d| d.raw.iter().chain(&d.val))
        .map(|p| p.0)
        .filter(|s| s.is_finite())
        .fold(1.0, f64::max);
    let x_label = move |x: &f64| match x_axis {
        XAxis::Steps => step_label(x),
        XAxis::Tokens => count_label(x.max(0.0)),
        XAxis::Time => trainui_protocol::lines::duration(x.max(0.0)),
    };
    let x_range = 0.0..last_x;
    // Fewer ticks where labels are long (`18,446,744,073,709,551,615`).
    let label_chars = x_label(&last_x).chars().count();
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
        format!("{} (log scale)", kind.name())
    } else {
        kind.name().to_owned()
    };
    let x_desc = match x_axis {
        XAxis::Steps => "step",
        XAxis::Tokens if runs.iter().any(|r| r.tokens_estimated) => {
            "tokens seen (estimated from tokens/s where not recorded)"
        }
        XAxis::Tokens => "tokens seen",
        XAxis::Time => "wall-clock time",
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
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| y_axis.label(*v))
        .light_line_style(BLACK.mix(0.04))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| error(&e))?;
    series(&mut chart, &drawn, &names, kind, window)?;
    root.present().map_err(|e| error(&e))
}

/// Steps on the axis: whole, with thousands separators (plotters hands
/// the value by reference).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn step_label(step: &f64) -> String {
    trainui_protocol::lines::thousands(step.max(0.0).round() as u64)
}

/// Each run's raw, smoothed and validation curves, and the legend
/// (`names`: the runs' names as shown; `window`: the smoothing chosen).
fn series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    drawn: &[Drawn],
    names: &[Cow<'_, str>],
    kind: Series,
    window: u64,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let error = |e: &dyn std::fmt::Display| e.to_string();
    for (index, (run, name)) in drawn.iter().zip(names).enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let raw = thin(&run.raw, MAX_POINTS);
        // Unsmoothed series are drawn solid.
        let faint = if run.smoothed.is_some() {
            color.mix(0.25)
        } else {
            color.mix(1.0)
        };
        let raw_label = if run.smoothed.is_some() {
            format!("{name} raw")
        } else {
            format!("{name} {}", kind.name())
        };
        chart
            .draw_series(LineSeries::new(raw, faint.stroke_width(1)))
            .map_err(|e| error(&e))?
            .label(raw_label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], faint.stroke_width(2)));
        if let Some((applied, smoothed)) = &run.smoothed {
            let smoothed = thin(smoothed, MAX_POINTS);
            chart
                .draw_series(LineSeries::new(smoothed, color.stroke_width(2)))
                .map_err(|e| error(&e))?
                .label(format!("{name} {}", smooth::label(window, *applied)))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        if !run.val.is_empty() {
            let val = thin(&run.val, MAX_POINTS);
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
    use trainui_protocol::events::StepMetrics;

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

    /// A run of 400 steps that counted 1,000 tokens a step (`counted`) or
    /// only reported 2,000 tokens/s over 0.5 s a step.
    fn sweep_run(counted: bool) -> Curves {
        let mut count = TokenCount::default();
        let mut curves = Curves {
            name: "lr-3e-4".into(),
            max_steps: 400,
            ..Curves::default()
        };
        for step in 1..=400u64 {
            let s = step as f64;
            let m = StepMetrics {
                step,
                max_steps: 400,
                loss: 2.0 + 3.0 * (-s / 50.0).exp(),
                learning_rate: 3e-4 * (s / 40.0).min(1.0),
                tokens_per_sec: 2000.0,
                elapsed_secs: s * 0.5,
                eta_secs: 0.0,
                grad_norm: Some(1.0 + (-s / 30.0).exp()),
                tokens_seen: counted.then_some(step * 1000),
            };
            curves.train.push((s, m.loss));
            curves.learning_rate.push((s, m.learning_rate));
            curves.grad_norm.push((s, m.grad_norm.unwrap()));
            curves.tokens_per_sec.push((s, m.tokens_per_sec));
            curves.tokens.push((s, count.step(&m)));
            curves.clock.push((s, m.elapsed_secs));
        }
        curves.tokens_estimated = count.estimated;
        curves
    }

    fn svg_of(runs: &[Curves], series: &str, x: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p.svg");
        let options = PlotOptions {
            runs: Vec::new(),
            out: out.clone(),
            width: 900,
            height: 500,
            log_scale: false,
            smoothing: None,
            title: None,
            series: series_named(series),
            x_axis: x_axis_named(x),
        };
        draw(runs, &options).unwrap();
        std::fs::read_to_string(out).unwrap()
    }

    #[test]
    fn series_and_x_axes_are_drawn_and_named() {
        let run = [sweep_run(true)];
        let lr = svg_of(&run, "lr", "tokens");
        for text in [
            "learning rate · lr-3e-4",
            "tokens seen",
            "lr-3e-4 learning rate",
            "400k",
        ] {
            assert!(lr.contains(text), "{text} in {lr}");
        }
        // The learning rate is not smoothed.
        assert!(!lr.contains("ema"), "{lr}");
        let norm = svg_of(&run, "grad_norm", "time");
        for text in [
            "grad norm",
            "wall-clock time",
            "lr-3e-4 ema 10 steps",
            "0:03:20",
        ] {
            assert!(norm.contains(text), "{text} in {norm}");
        }
        let speed = svg_of(&run, "tokens_per_sec", "steps");
        assert!(speed.contains("tokens/s · lr-3e-4"), "{speed}");
        let loss = svg_of(&run, "loss", "steps");
        assert!(loss.contains(">step<") || loss.contains("step"), "{loss}");
        assert!(loss.contains("loss · lr-3e-4"), "{loss}");
    }

    #[test]
    fn tokens_are_estimated_for_runs_that_do_not_count_them() {
        let estimated = sweep_run(false);
        assert!(estimated.tokens_estimated);
        // 2,000 tokens/s for 0.5 s a step: 1,000 a step, as counted.
        let counted = sweep_run(true);
        assert_eq!(estimated.tokens.last(), counted.tokens.last());
        let picture = svg_of(&[estimated], "loss", "tokens");
        assert!(picture.contains("estimated from tokens/s"), "{picture}");
        // A resume adds the count it kept.
        let mut count = TokenCount::default();
        count.resume(5000.0);
        let m = StepMetrics {
            tokens_seen: Some(300),
            ..match trainui_protocol::events::examples::step(3, 10, 1.0) {
                Event::Step(m) => m,
                _ => unreachable!(),
            }
        };
        assert!((count.step(&m) - 5300.0).abs() < 1e-9);
    }

    #[test]
    fn count_labels_are_short() {
        assert_eq!(count_label(950.0), "950");
        assert_eq!(count_label(12_500.0), "12.5k");
        assert_eq!(count_label(3_000_000.0), "3M");
        assert_eq!(count_label(3_072_000.0), "3.07M");
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
