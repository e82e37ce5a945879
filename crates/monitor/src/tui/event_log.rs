//! The run's log (the events worth reading, and what this program says
//! about the run), bounded, and the full-screen log's view of it: the level
//! filter, the search being typed, the search in force and its current
//! match. The events pane (`log.rs`) and the full-screen log (`logview.rs`)
//! draw from here.

use std::collections::VecDeque;
use std::time::SystemTime;

use ratatui::crossterm::event::KeyCode;

use super::wrap::wrap;

/// Lines the log keeps; the oldest go first.
const LINES_KEPT: usize = 5000;

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One line of the log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: SystemTime,
    pub level: Level,
    pub text: String,
}

/// The log's lines, oldest first, at most `LINES_KEPT` of them.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    lines: VecDeque<LogLine>,
    /// Lines written since the start, those dropped included.
    written: u64,
}

impl EventLog {
    /// Adds `line`, dropping the oldest when the log is full.
    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == LINES_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.written += 1;
    }

    /// Lines written since the start (a mark for [`Self::since`]).
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The lines written after the mark `written`, oldest first (those
    /// still kept).
    pub fn since(&self, written: u64) -> impl Iterator<Item = &LogLine> {
        let new = usize::try_from(self.written - written).unwrap_or(usize::MAX);
        self.lines.iter().skip(self.lines.len().saturating_sub(new))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    #[must_use]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogLine> + ExactSizeIterator {
        self.lines.iter()
    }

    /// The newest line.
    #[must_use]
    pub fn back(&self) -> Option<&LogLine> {
        self.lines.back()
    }

    /// The log's lines at `width` (wrapped), at `filter` level and above:
    /// the index of each one's entry, and its text.
    #[must_use]
    pub fn lines(&self, width: u16, filter: Option<Level>) -> Vec<(usize, String)> {
        let width = usize::from(width.max(8));
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| filter.is_none_or(|f| line.level >= f))
            .flat_map(|(index, line)| {
                wrap(&line.text, width)
                    .into_iter()
                    .map(move |piece| (index, piece))
            })
            .collect()
    }

    /// The log's lines the last `rows` of which, `scroll` lines back from the
    /// newest, are in view: wrapped from the newest back only as far as the
    /// view reaches (a long log costs what the screen shows). Returns the
    /// lines, starting at an entry's first, and the range in view.
    #[must_use]
    pub fn window(
        &self,
        width: u16,
        filter: Option<Level>,
        scroll: usize,
        rows: usize,
    ) -> (Vec<(usize, String)>, std::ops::Range<usize>) {
        let want = scroll + rows;
        let mut lines: Vec<(usize, String)> = Vec::new();
        for (index, entry) in self.lines.iter().enumerate().rev() {
            if lines.len() >= want {
                break;
            }
            if filter.is_some_and(|f| entry.level < f) {
                continue;
            }
            let pieces = wrap(&entry.text, usize::from(width.max(8)));
            lines.extend(pieces.into_iter().rev().map(|piece| (index, piece)));
        }
        lines.reverse();
        let end = lines
            .len()
            .saturating_sub(scroll)
            .max(rows.min(lines.len()));
        let start = end.saturating_sub(rows);
        (lines, start..end)
    }
}

impl std::ops::Index<usize> for EventLog {
    type Output = LogLine;

    fn index(&self, index: usize) -> &LogLine {
        &self.lines[index]
    }
}

impl<'a> IntoIterator for &'a EventLog {
    type Item = &'a LogLine;
    type IntoIter = std::collections::vec_deque::Iter<'a, LogLine>;

    fn into_iter(self) -> Self::IntoIter {
        self.lines.iter()
    }
}

/// The full-screen log's view.
#[derive(Debug, Clone, Default)]
pub struct LogView {
    /// Lines scrolled back from the newest (0 follows new lines).
    pub scroll: usize,
    /// The lowest level shown.
    pub filter: Option<Level>,
    /// The search in force.
    pub query: String,
    /// The search being typed, while `/` is open.
    pub typing: Option<String>,
    /// The line of the match `n` and `N` move from.
    pub current: Option<usize>,
}

impl LogView {
    /// A key while a search is typed, in a view `width` wide and `rows`
    /// high; returns the answer to say, if any.
    pub fn type_key(
        &mut self,
        code: KeyCode,
        log: &EventLog,
        width: u16,
        rows: u16,
    ) -> Option<String> {
        let typing = self.typing.as_mut()?;
        match code {
            KeyCode::Enter => {
                self.query = self.typing.take().unwrap_or_default();
                self.current = None;
                Some(self.next_match(log, width, rows, true, true))
            }
            KeyCode::Esc => {
                self.typing = None;
                self.query.clear();
                Some("search cleared".into())
            }
            KeyCode::Backspace => {
                typing.pop();
                None
            }
            KeyCode::Char(c) => {
                typing.push(c);
                None
            }
            _ => Some("typing a search: Enter searches, Esc clears it".into()),
        }
    }

    /// Shows the next level up (all lines, warnings and errors, errors),
    /// from the newest; returns what it shows.
    pub fn cycle_filter(&mut self) -> &'static str {
        self.filter = match self.filter {
            None => Some(Level::Warning),
            Some(Level::Warning) => Some(Level::Error),
            Some(_) => None,
        };
        self.scroll = 0;
        self.current = None;
        match self.filter {
            None => "showing every line",
            Some(Level::Warning) => "showing warnings and errors",
            Some(_) => "showing errors",
        }
    }

    /// Scrolls to the next (or previous) line holding the search, from the
    /// line at the top of the view (`here`: including it), in a view
    /// `width` wide and `rows` high; returns the answer to say.
    pub fn next_match(
        &mut self,
        log: &EventLog,
        width: u16,
        rows: u16,
        forward: bool,
        here: bool,
    ) -> String {
        let query = self.query.to_ascii_lowercase();
        if query.is_empty() {
            return "no search: / starts one".into();
        }
        let lines = log.lines(width, self.filter);
        let rows = usize::from(rows.max(1));
        let total = lines.len();
        let max = total.saturating_sub(rows);
        // The view's top line, counted from the oldest.
        let top = max - self.scroll.min(max);
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, (_, text))| text.to_ascii_lowercase().contains(&query))
            .map(|(index, _)| index)
            .collect();
        let from = self.current.unwrap_or(top);
        let found = if forward {
            hits.iter()
                .find(|&&i| if here { i >= from } else { i > from })
                .or(hits.first())
        } else {
            hits.iter().rev().find(|&&i| i < from).or(hits.last())
        };
        match found {
            Some(&line) => {
                // The match at the top of the view (or as high as it goes).
                self.scroll = max - line.min(max);
                self.current = Some(line);
                let nth = hits.iter().position(|&h| h == line).unwrap_or(0) + 1;
                format!("match {nth} of {}", hits.len())
            }
            None => format!("no line holds \"{}\"", self.query),
        }
    }
}
