//! GPU utilisation, memory, temperature and power; or CPU and memory use.

use std::fmt::Write;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::app::App;
use super::theme::{bar, dim, fg, pane};
use trainui_protocol::ranks::Verdict;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / GIB)
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let gpus = &app.load.gpus;
    // Many GPUs of one kind: their name once, in the title.
    let title = match gpus.first() {
        Some(first)
            if gpus.len() > 2 && gpus.iter().all(|g| g.latest.name == first.latest.name) =>
        {
            format!(
                " system · {} x {} ",
                gpus.len(),
                first.latest.name.trim_start_matches("NVIDIA ")
            )
        }
        _ => " system ".to_owned(),
    };
    let block = pane(app, title, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // The ranks of a multi-process job, below the machine's readings.
    let shown = (app.process.ranks.len() as u16).min(inner.height.saturating_sub(3));
    let [inner, ranks_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(shown)]).areas(inner);
    render_ranks(frame, ranks_area, app);
    if gpus.is_empty() {
        render_host(frame, inner, app);
        return;
    }
    if usize::from(inner.height) < 2 * gpus.len() {
        render_compact(frame, inner, app);
        return;
    }
    // Two rows for each GPU: its readings and a utilisation sparkline.
    let rows = Layout::vertical(gpus.iter().map(|_| Constraint::Length(2))).split(inner);
    for (gpu, row) in gpus.iter().zip(rows.iter()) {
        let g = &gpu.latest;
        let mut text = format!(
            "{} {:>3}% {:.0}/{:.0}G",
            g.name.trim_start_matches("NVIDIA "),
            g.utilization,
            g.memory_used as f64 / GIB,
            g.memory_total as f64 / GIB,
        );
        if let Some(t) = g.temperature {
            let _ = write!(text, " {t}{}", if app.view.ascii { "C" } else { "°C" });
        }
        if let Some(p) = g.power {
            let _ = write!(text, " {p:.0}W");
        }
        let [line_area, spark_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(*row);
        frame.render_widget(Paragraph::new(text), line_area);
        let data: Vec<u64> = gpu.utilization.iter().copied().collect();
        let spark = Sparkline::default()
            .data(&data)
            .max(100)
            .style(fg(app, Color::Green));
        frame.render_widget(spark, spark_area);
    }
}

/// One line per GPU, as many GPUs as there are rows: its number, a bar and
/// its utilisation, memory, temperature and power. When they do not all
/// fit, the busiest are shown and the last line counts the others.
fn render_compact(frame: &mut Frame, area: Rect, app: &App) {
    let rows = usize::from(area.height);
    if rows == 0 {
        return;
    }
    let gpus = &app.load.gpus;
    let mut order: Vec<usize> = (0..gpus.len()).collect();
    let hidden = gpus.len().saturating_sub(rows);
    let shown = if hidden > 0 {
        // The busiest first (then by number), and a line for the rest.
        order.sort_by_key(|&i| (std::cmp::Reverse(gpus[i].latest.utilization), i));
        rows - 1
    } else {
        gpus.len()
    };
    let number_width = (gpus.len() - 1).to_string().len();
    let mut lines: Vec<Line> = order[..shown]
        .iter()
        .map(|&index| {
            let g = &gpus[index].latest;
            let mut spans = vec![Span::raw(format!("{index:>number_width$} "))];
            spans.extend(bar(app, f64::from(g.utilization) / 100.0, 6, Color::Green));
            let mut text = format!(
                " {:>3}% {:>3.0}/{:.0}G",
                g.utilization,
                g.memory_used as f64 / GIB,
                g.memory_total as f64 / GIB,
            );
            if let Some(t) = g.temperature {
                let _ = write!(text, " {t:>2}{}", if app.view.ascii { "C" } else { "°C" });
            }
            if let Some(p) = g.power {
                let _ = write!(text, " {p:>3.0}W");
            }
            spans.push(Span::raw(text));
            Line::from(spans)
        })
        .collect();
    if hidden > 0 {
        let rest = &order[shown..];
        let busiest = rest
            .iter()
            .map(|&i| gpus[i].latest.utilization)
            .max()
            .unwrap_or(0);
        lines.push(Line::styled(
            format!("+{} more, at most {busiest}% busy", rest.len()),
            dim(app),
        ));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_host(frame: &mut Frame, area: Rect, app: &App) {
    let host = &app.load.host;
    let cpu = host
        .cpu
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%"));
    let process = host
        .process_memory
        .map_or_else(|| "-".to_owned(), |m| format!("{} GiB", gib(m)));
    let memory = match (host.memory_used, host.memory_total) {
        (Some(used), Some(total)) => format!("{}/{} GiB", gib(used), gib(total)),
        _ => "-".to_owned(),
    };
    let lines = vec![
        Line::from(format!("cpu {cpu:>4}   trainui {process}")),
        Line::from(format!("memory {memory}")),
        Line::from(app.load.note.clone().unwrap_or_default()).style(fg(app, Color::DarkGray)),
    ];
    let [text_area, spark_area, _] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(lines), text_area);
    let data: Vec<u64> = app.load.cpu_history.iter().copied().collect();
    let spark = Sparkline::default()
        .data(&data)
        .max(100)
        .style(fg(app, Color::Green));
    frame.render_widget(spark, spark_area);
}

/// One line a rank: `r1 generating @340 vm:4242 2s`, red when it is silent
/// or gone, grey when it is done.
fn render_ranks(frame: &mut Frame, area: Rect, app: &App) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let lines: Vec<Line> = app
        .process
        .ranks
        .iter()
        .take(area.height as usize)
        .map(|view| {
            let beat = &view.beat;
            let text = format!(
                "r{} {} @{} {}:{} {}",
                beat.rank,
                beat.phase.as_str(),
                beat.step,
                beat.host,
                beat.pid,
                match view.verdict {
                    Verdict::Done | Verdict::Failed => view.verdict.as_str().to_owned(),
                    Verdict::Gone => "GONE".to_owned(),
                    Verdict::Alive | Verdict::Silent => {
                        format!("{:.0}s", (now - beat.beat_unix).max(0.0))
                    }
                }
            );
            let look = match view.verdict {
                Verdict::Alive => fg(app, Color::Reset),
                Verdict::Done => fg(app, Color::DarkGray),
                Verdict::Silent | Verdict::Gone | Verdict::Failed => fg(app, Color::Red),
            };
            Line::from(text).style(look)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}
