//! One sample, whole: prompt, golden and model output wrapped in full,
//! its outcome and figures, and where the output first differs from the
//! golden answer (marked in the text by colour and underline).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use unicode_width::UnicodeWidthChar;

use super::app::App;
use super::eval::outcome;
use super::header::loss;
use super::run_data::Difference;
use super::theme::{dim, fg, pane, sep};
use super::view_state::Detail;
use trainui_protocol::events::GenerationOutcome;
use trainui_protocol::text::escape;

pub fn render(frame: &mut Frame, area: Rect, app: &App, detail: &Detail) {
    let area = Rect {
        x: area.x + 1,
        y: area.y + 1,
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    };
    frame.render_widget(Clear, area);
    let s = &detail.sample.result;
    let (label, color) = outcome(s);
    let block = pane(
        app,
        format!(
            " sample {}/{} of the evaluation at step {} ",
            s.sample, s.of, s.step
        ),
        true,
    );
    let inner = block.inner(area);
    let width = usize::from(inner.width.max(1));
    let lines = lines(app, detail, label, color, width);
    let rows = usize::from(inner.height);
    let top = detail.scroll.min(lines.len().saturating_sub(rows));
    let mut geometry = app.view.geometry.get();
    geometry.detail_lines = lines.len();
    geometry.detail_rows = inner.height;
    app.view.geometry.set(geometry);
    let position = format!(
        " {}-{}/{} · Esc closes ",
        top + 1,
        (top + rows).min(lines.len()),
        lines.len()
    );
    let block = block.title_bottom(Line::from(position).right_aligned());
    let shown: Vec<Line> = lines.into_iter().skip(top).take(rows).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

fn lines(
    app: &App,
    detail: &Detail,
    label: &str,
    color: Color,
    width: usize,
) -> Vec<Line<'static>> {
    let s = &detail.sample.result;
    let sep = sep(app);
    let mut out = vec![
        Line::from(vec![
            Span::styled(
                label.to_owned(),
                fg(app, color).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "{sep}{}{sep}example {}{sep}loss {}",
                s.origin,
                s.example,
                s.loss.map_or_else(|| "-".to_owned(), loss)
            )),
        ]),
        Line::from(format!(
            "{} tokens (golden {}){sep}{:.3}s of {}s{sep}{:.0} tok/s",
            s.output_tokens, s.golden_tokens, s.elapsed_secs, s.timeout_secs, s.tokens_per_sec
        )),
    ];
    // The difference was found in the texts as written (the figures say
    // their characters); the mark goes where it falls in the texts shown.
    let difference = detail.sample.difference;
    let quoted = |c: Option<char>| format!("'{}'", escape(&c.unwrap_or_default().to_string()));
    let verdict = match (&s.outcome, difference) {
        (GenerationOutcome::Error { message }, _) => format!("error: {message}"),
        (_, None) => "the output is the golden answer".to_owned(),
        (_, Some(_)) if s.exact_match => {
            "the output is the golden answer once surrounding whitespace is trimmed".to_owned()
        }
        (
            _,
            Some(Difference {
                at,
                output: None,
                golden_len,
                ..
            }),
        ) => format!(
            "the output stops after {at} characters; the golden answer goes on for {}",
            golden_len - at
        ),
        (
            _,
            Some(Difference {
                at, golden: None, ..
            }),
        ) => {
            format!("the output goes on past the golden answer's {at} characters")
        }
        (_, Some(d)) => format!(
            "first difference at character {}: golden {}, output {}",
            d.at + 1,
            quoted(d.golden),
            quoted(d.output)
        ),
    };
    out.push(Line::from(Span::styled(
        verdict,
        fg(app, Color::Yellow).add_modifier(Modifier::BOLD),
    )));
    let marked = fg(app, Color::Red).add_modifier(Modifier::UNDERLINED | Modifier::BOLD);
    let difference = difference.map(|d| d.shown_at);
    for (title, text, mark) in [
        ("PROMPT", &s.prompt, None),
        ("GOLDEN", &s.golden, difference),
        ("OUTPUT", &s.output, difference),
    ] {
        out.push(Line::from(""));
        out.push(Line::from(Span::styled(title, dim(app))));
        out.extend(marked_text(text, width, mark, marked));
    }
    out
}

/// `text` cut into lines of `width` characters (exactly as written, so
/// spaces and offsets stay), from character `mark` on in `marked`.
fn marked_text(text: &str, width: usize, mark: Option<usize>, marked: Style) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for paragraph in text.split('\n') {
        // The text is escaped (only newlines stay); should a tab or a
        // control character be left, it takes one cell, as a space or `?`.
        let chars: Vec<char> = paragraph
            .chars()
            .map(|c| match c {
                '\t' => ' ',
                c if c.is_control() => '?',
                c => c,
            })
            .collect();
        // Pieces at most `width` cells wide (a wide character takes two).
        let mut pieces: Vec<&[char]> = Vec::new();
        let (mut start, mut cells) = (0, 0);
        for (at, c) in chars.iter().enumerate() {
            let w = c.width().unwrap_or(0);
            if cells + w > width && at > start {
                pieces.push(&chars[start..at]);
                (start, cells) = (at, 0);
            }
            cells += w;
        }
        pieces.push(&chars[start..]);
        for piece in pieces {
            let cut = mark.map_or(piece.len(), |m| m.saturating_sub(offset).min(piece.len()));
            let (plain, rest) = piece.split_at(cut);
            lines.push(Line::from(vec![
                Span::raw(plain.iter().collect::<String>()),
                Span::styled(rest.iter().collect::<String>(), marked),
            ]));
            offset += piece.len();
        }
        offset += 1;
    }
    if mark == Some(text.chars().count()) {
        // The difference is past the end: mark where it would be.
        lines.push(Line::from(Span::styled("(ends here)", marked)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_starts_at_the_difference_across_wrapped_lines() {
        let lines = marked_text("abcdefgh", 3, Some(4), Style::new().bold());
        let pieces: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.to_string()).collect())
            .collect();
        assert_eq!(pieces, [vec!["abc", ""], vec!["d", "ef"], vec!["", "gh"]]);
    }
}
