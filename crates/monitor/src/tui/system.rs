//! GPU utilisation, memory, temperature and power; or CPU and memory use;
//! and below them the job's own processes: each rank (its pid, what it
//! does, its step, and its CPU, memory and GPU memory), or, for a job
//! without rank files, the processes it started.

use std::fmt::Write;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::app::{App, Owner};
use super::process::JobProcess;
use super::theme::{bar, dim, fg, pane, sep};
use trainui_protocol::ranks::{RankView, Verdict};

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
    // The job's processes (its ranks), below the machine's readings.
    let lines = process_lines(app, inner.width, inner.height.saturating_sub(3));
    let [inner, ranks_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(lines.len() as u16)])
            .areas(inner);
    frame.render_widget(Paragraph::new(lines), ranks_area);
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
    // trainui's own process is the run's only for its own trainer; a job's
    // are its processes, summed.
    let processes = &app.process.processes;
    let process = if app.owner == Owner::Trainer {
        let memory = host
            .process_memory
            .map_or_else(|| "-".to_owned(), |m| format!("{} GiB", gib(m)));
        format!("   trainui {memory}")
    } else if processes.is_empty() {
        String::new()
    } else {
        let memory: u64 = processes.iter().filter_map(|p| p.memory).sum();
        let cpu: f64 = processes.iter().filter_map(|p| p.cpu).sum();
        format!("   job {cpu:.0}% {} GiB", gib(memory))
    };
    let memory = match (host.memory_used, host.memory_total) {
        (Some(used), Some(total)) => format!("{}/{} GiB", gib(used), gib(total)),
        _ => "-".to_owned(),
    };
    let lines = vec![
        Line::from(format!("cpu {cpu:>4}{process}")),
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

/// The lines of the job's processes, at most `rows`: a line a rank,
/// `r1 pid 4242 generating @340 2s` (red when it is silent or gone, grey
/// once it has ended), with its readings on this machine on the line under
/// it, `   cpu 98% · 1.2 GiB · gpu0 3.1 GiB`, when there is room for both
/// (else after it); for a job without rank files, a line a process it
/// started, `pid 4242 python 98% 1.2 GiB`.
fn process_lines(app: &App, width: u16, rows: u16) -> Vec<Line<'static>> {
    let rows = usize::from(rows);
    let ranks = &app.process.ranks;
    if ranks.is_empty() {
        return app
            .process
            .processes
            .iter()
            .take(rows)
            .map(|process| {
                Line::from(format!(
                    "pid {} {} {}",
                    process.pid,
                    process.name,
                    readings(app, process)
                ))
            })
            .collect();
    }
    let host = trainui_protocol::ranks::this_host();
    let two_lines = rows >= 2 * ranks.len();
    let mut lines = Vec::new();
    for view in ranks {
        let look = match view.verdict {
            Verdict::Alive => fg(app, Color::Reset),
            Verdict::Done | Verdict::Stopped(_) => fg(app, Color::DarkGray),
            Verdict::Silent | Verdict::Gone | Verdict::Failed => fg(app, Color::Red),
        };
        let label = rank_label(app, view, host.as_deref());
        let reading = app
            .process
            .reading(view.beat.pid)
            .filter(|_| {
                host.as_deref() == Some(view.beat.host.as_str()) && !view.verdict.is_final()
            })
            .map(|process| readings(app, process));
        match reading {
            Some(reading) if two_lines => {
                lines.push(Line::from(label).style(look));
                lines.push(Line::from(format!("   {reading}")).style(dim(app)));
            }
            Some(reading) => {
                let room = usize::from(width).saturating_sub(label.chars().count() + 1);
                let mut line = Line::from(label).style(look);
                if room >= 8 {
                    line.push_span(Span::styled(format!(" {reading}"), dim(app)));
                }
                lines.push(line);
            }
            None => lines.push(Line::from(label).style(look)),
        }
    }
    lines.truncate(rows);
    lines
}

/// `r1 pid 4242 generating @340 2s`: the rank, its pid (and its host when
/// it is another machine), what it does at which step, and how long since
/// its last beat; once it has ended, how (`stopped by SIGTERM @39`,
/// `FAILED @40`), and `GONE` when its process ended without a word.
fn rank_label(app: &App, view: &RankView, host: Option<&str>) -> String {
    let beat = &view.beat;
    let here = host == Some(beat.host.as_str());
    let pid = if here {
        format!("pid {}", beat.pid)
    } else {
        format!("{}:{}", beat.host, beat.pid)
    };
    let doing = match view.verdict {
        Verdict::Done | Verdict::Stopped(_) | Verdict::Failed => view.verdict.words(),
        Verdict::Alive | Verdict::Silent | Verdict::Gone => beat.phase.as_str().to_owned(),
    };
    let age = match view.verdict {
        Verdict::Done | Verdict::Stopped(_) | Verdict::Failed => String::new(),
        // After the job's end a rank without a last word is only gone.
        Verdict::Gone => " GONE".to_owned(),
        Verdict::Silent => format!(" SILENT {:.0}s", silent_secs(view)),
        Verdict::Alive if !app.running() => String::new(),
        Verdict::Alive => format!(" {:.0}s", silent_secs(view)),
    };
    format!("r{} {pid} {doing} @{}{age}", beat.rank, beat.step)
}

/// Seconds since the rank's last beat, now.
fn silent_secs(view: &RankView) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (now - view.beat.beat_unix).max(0.0)
}

/// `cpu 98% · 1.2 GiB · gpu0 3.1 GiB`: a process's CPU use (100% is a
/// core), resident memory and GPU memory on each GPU it uses.
fn readings(app: &App, process: &JobProcess) -> String {
    let mut parts = vec![
        process
            .cpu
            .map_or_else(|| "cpu -".to_owned(), |cpu| format!("cpu {cpu:.0}%")),
    ];
    if let Some(memory) = process.memory {
        parts.push(format!("{} GiB", gib(memory)));
    }
    for (index, bytes) in &process.gpu_memory {
        parts.push(format!("gpu{index} {} GiB", gib(*bytes)));
    }
    parts.join(sep(app))
}
