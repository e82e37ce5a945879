//! The terminal front end: a ratatui app driven by the trainer's events and
//! the user's keys. The loop never waits on the trainer, answers a key on
//! screen at once, and otherwise redraws only when something changed (or the
//! clock's second did), at most [`MAX_FPS`] times a second.
//!
//! ```text
//! mod.rs         the loop: events and keys in, frames out
//! app.rs         one run's screen: its parts, changed only by `App::update`,
//!                which routes each message to the part it concerns
//! run_data.rs    the fold of a run's events into what the panes show
//! process.rs     what is known of the run's process (liveness notices)
//! load.rs        the machine's load, folded from the sampler's readings
//! view_state.rs  how the user set the screen up: chart, focus, selection,
//!                scrolling, the overlay open
//! event_log.rs   the run's log, and the full-screen log's filter and search
//! input.rs       keys to actions to changes (the keys' half of `update`)
//! intake.rs      texts from a run or a model escaped as the app takes them in
//! board.rs       several runs on one screen: which one the panes follow
//! keys.rs        every key: action, command, help line, footer word
//! render.rs      the layout and the overlays; one file per pane:
//!                header, loss, system, eval, counters, log (events), footer;
//!                per overlay: detail (a sample whole), logview (the log);
//!                output (the job's output: a pane, and full screen);
//!                for several runs: compare (their curves), table (their rows)
//! theme.rs       colours, borders and glyphs the panes share; the ASCII look
//! job_output.rs  the job's own output (job_output.log): its tail, escaped
//! wrap.rs        word wrapping by display width
//! history.rs     bounded loss curves
//! sampler.rs     the thread that reads GPU or CPU load
//! ```

pub mod app;
pub mod board;
mod compare;
mod counters;
mod detail;
mod eval;
pub mod event_log;
mod footer;
mod header;
pub mod history;
mod input;
mod intake;
pub mod job_output;
pub mod keys;
pub mod load;
mod log;
mod logview;
mod loss;
mod output;
pub mod process;
pub mod render;
pub mod run_data;
pub mod sampler;
mod system;
mod table;
mod theme;
pub mod view_state;
mod wrap;

use std::io;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as term_event, Event as TermEvent, KeyEvent};
use ratatui::{DefaultTerminal, Terminal};

use crate::alerts::{self, Alert};
use app::{App, Msg};
use board::Board;
use process::Liveness;
use run_data::RunData;
use sampler::SystemSample;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, Event};

pub const MAX_FPS: u32 = 20;
/// Longest wait for a key when nothing else is happening.
const IDLE_POLL: Duration = Duration::from_millis(25);
/// How old a recorded event may be, at the start of the screen, and still
/// ring an alert (the file may lag its writer by a moment).
const LIVE_SLACK: Duration = Duration::from_secs(5);
/// Events folded in before the screen gets a chance to redraw and read keys.
const EVENTS_PER_TURN: usize = 10_000;

/// Input from the terminal.
pub enum Input {
    Key(KeyEvent),
    /// The terminal changed size (or needs a full redraw).
    Redraw,
}

/// Where keys come from, and where alerts go: the real terminal, or a
/// script in tests.
pub trait InputSource {
    /// The next input, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Input>>;

    /// Tells the person at the terminal (a bell and a notification); an
    /// off-screen terminal keeps quiet.
    fn alert(&mut self, _alert: &Alert) {}
}

/// Keys and resizes from the terminal (crossterm).
#[derive(Debug, Default)]
pub struct TerminalInput {
    /// The terminal's size when last looked at.
    size: Option<(u16, u16)>,
}

impl InputSource for TerminalInput {
    fn alert(&mut self, alert: &Alert) {
        use io::Write;
        let mut stdout = io::stdout();
        // A terminal that is gone hears nothing; that is no error.
        let _ = stdout
            .write_all(&alerts::terminal_bytes(alert, alerts::in_tmux()))
            .and_then(|()| stdout.flush());
    }

    fn next(&mut self, timeout: Duration) -> io::Result<Option<Input>> {
        use std::io::IsTerminal;
        use trainui_protocol::process::{Stdin, wait_stdin};
        if !std::io::stdin().is_terminal() {
            return read_key(timeout);
        }
        // On a terminal, wait here: crossterm spins for ever on a terminal
        // that hung up instead of saying so. It is asked only for the bytes
        // that are there; a resize is seen by the size changing.
        match wait_stdin(timeout) {
            Stdin::HungUp => Err(io::Error::other("the terminal hung up")),
            Stdin::Ready => read_key(Duration::ZERO),
            Stdin::Quiet => {
                let size = ratatui::crossterm::terminal::size().ok();
                let resized = self.size.is_some() && size != self.size;
                self.size = size;
                Ok(resized.then_some(Input::Redraw))
            }
        }
    }
}

/// The next key or resize crossterm has, waiting at most `timeout`.
fn read_key(timeout: Duration) -> io::Result<Option<Input>> {
    if !term_event::poll(timeout)? {
        return Ok(None);
    }
    Ok(match term_event::read()? {
        TermEvent::Key(key) => Some(Input::Key(key)),
        TermEvent::Resize(..) | TermEvent::FocusGained => Some(Input::Redraw),
        _ => None,
    })
}

/// Where the run's events come from, each with the time it happened when
/// that is known (read from events.jsonl), or none for "now".
pub trait EventSource {
    /// The next event, if one is waiting.
    fn try_next(&self) -> Option<(Event, Option<SystemTime>)>;

    /// What the source says before its next event, if anything. Asked
    /// before each event; [`Self::try_next`] gives none past an aside until
    /// it is taken, so that each falls between the right events.
    fn aside(&self) -> Option<Aside> {
        None
    }
}

/// What a source of events says between them (`watch` reading a file).
#[derive(Debug)]
pub enum Aside {
    /// The events start over here with another run's (its events.jsonl was
    /// replaced or cut shorter): what the screen knows of the run becomes
    /// this fresh fold, and what came before belongs to that other run.
    StartOver(Box<RunData>),
    /// Something about the source the user should know (the file cannot
    /// be read, lines were skipped), said once.
    Warning(String),
}

/// The trainer thread's events, as they happen.
impl EventSource for Receiver<Event> {
    fn try_next(&self) -> Option<(Event, Option<SystemTime>)> {
        self.try_recv().ok().map(|event| (event, None))
    }
}

/// The sources and sinks the loop works with, for one run.
pub struct Channels<'a> {
    pub events: &'a dyn EventSource,
    pub system: &'a Receiver<SystemSample>,
    /// For `watch`: whether the run's process is still there.
    pub liveness: Option<&'a Receiver<Liveness>>,
    /// Called with every trainer event before the app sees it (the run
    /// dir); a message it returns is shown as a warning.
    pub record: &'a mut dyn FnMut(&Event) -> Option<String>,
    /// Called with every command a key produced; a message it returns (the
    /// command could not be sent) is shown in the footer.
    pub send: &'a mut dyn FnMut(Command) -> Option<String>,
}

/// One run's sources and sinks, as in [`Channels`].
pub struct Feed<'a> {
    pub events: &'a dyn EventSource,
    pub liveness: Option<&'a Receiver<Liveness>>,
    pub record: &'a mut dyn FnMut(&Event) -> Option<String>,
    pub send: &'a mut dyn FnMut(Command) -> Option<String>,
}

/// Runs the app until it asks to exit.
pub fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    input: &mut dyn InputSource,
    channels: &mut Channels<'_>,
) -> io::Result<()>
where
    B::Error: std::fmt::Display,
{
    let mut feeds = [Feed {
        events: channels.events,
        liveness: channels.liveness,
        record: &mut *channels.record,
        send: &mut *channels.send,
    }];
    let mut board = Board::new(std::slice::from_mut(app));
    run_board(terminal, &mut board, input, channels.system, &mut feeds)
}

/// Runs the board until one of its runs asks to exit; `feeds` has one
/// feed per run, in the board's order. The machine's load goes to every
/// run; keys go to the board.
///
/// # Panics
///
/// When `feeds` and the board's runs differ in number.
pub fn run_board<B: Backend>(
    terminal: &mut Terminal<B>,
    board: &mut Board,
    input: &mut dyn InputSource,
    system: &Receiver<SystemSample>,
    feeds: &mut [Feed<'_>],
) -> io::Result<()>
where
    B::Error: std::fmt::Display,
{
    assert_eq!(feeds.len(), board.runs.len(), "one feed per run");
    let backend_error = |err: B::Error| io::Error::other(err.to_string());
    let frame_time = Duration::from_secs(1) / MAX_FPS;
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut answer_key = false;
    let mut second = 0;
    let shown_since = SystemTime::now();
    // However many runs, a turn folds in about as many events.
    let per_run = (EVENTS_PER_TURN / feeds.len().max(1)).max(1);
    while !board.exits() {
        // The clock: a redraw each new second keeps the ages honest.
        let now = SystemTime::now();
        board.update_all(&Msg::Tick(now));
        let this_second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if this_second != second {
            second = this_second;
            dirty = true;
        }
        let (mut backlog, mut arrived) = (false, false);
        for (app, feed) in board.runs.iter_mut().zip(feeds.iter_mut()) {
            let (more, some) = fold_events(app, feed, input, shown_since, per_run);
            backlog |= more;
            arrived |= some;
            while let Some(notice) = feed.liveness.and_then(|l| l.try_recv().ok()) {
                app.update(Msg::Liveness(notice));
                dirty = true;
            }
        }
        dirty |= arrived;
        while let Ok(sample) = system.try_recv() {
            board.update_all(&Msg::System(sample));
            dirty = true;
        }
        // A key is answered at once; only events wait for the frame cap.
        let since_draw = last_draw.map_or(frame_time, |t| t.elapsed());
        if dirty && (answer_key || since_draw >= frame_time) {
            terminal
                .draw(|frame| render::render_board(frame, board))
                .map_err(backend_error)?;
            last_draw = Some(Instant::now());
            dirty = false;
            answer_key = false;
        }
        if board.exits() {
            break;
        }
        // After events, more tend to follow (a reader between two reads):
        // a short look at the keys, not the idle wait.
        let wait = if backlog {
            Duration::ZERO
        } else if arrived {
            Duration::from_millis(1)
        } else if dirty {
            frame_time
                .saturating_sub(since_draw)
                .max(Duration::from_millis(1))
        } else {
            IDLE_POLL
        };
        match input.next(wait)? {
            Some(Input::Key(key)) => {
                board.update_all(&Msg::Tick(SystemTime::now()));
                let command = board.key(key);
                let send = &mut feeds[board.selected()].send;
                if let Some(problem) = command.and_then(&mut **send) {
                    board.followed_mut().say(problem);
                }
                dirty = true;
                answer_key = true;
            }
            Some(Input::Redraw) => {
                terminal.clear().map_err(backend_error)?;
                dirty = true;
            }
            None => {}
        }
    }
    // The last state is on screen when the loop ends.
    terminal
        .draw(|frame| render::render_board(frame, board))
        .map_err(backend_error)?;
    Ok(())
}

/// Folds up to `limit` of the feed's waiting events into `app`, ringing
/// for those that happen while the screen is up, and starts the app over
/// where its events do. Returns whether more are waiting (a full turn: a
/// history being read back) and whether any came.
pub(crate) fn fold_events(
    app: &mut App,
    feed: &mut Feed<'_>,
    input: &mut dyn InputSource,
    shown_since: SystemTime,
    limit: usize,
) -> (bool, bool) {
    let mut arrived = false;
    for _ in 0..limit {
        while let Some(aside) = feed.events.aside() {
            match aside {
                Aside::StartOver(fresh) => app.start_over(*fresh),
                Aside::Warning(text) => app.warn(text),
            }
            arrived = true;
        }
        let Some((event, at)) = feed.events.try_next() else {
            return (false, arrived);
        };
        arrived = true;
        // Only what happens while the screen is up rings: not the history
        // `watch` reads back.
        let live = at.is_none_or(|at| at + LIVE_SLACK >= shown_since);
        if live && let Some(alert) = alerts::of(&event, &app.run.status.run_name) {
            input.alert(&alert);
        }
        if let Some(message) = (feed.record)(&event) {
            app.apply(&Event::Warning {
                step: app.run.status.current_step,
                message,
            });
        }
        app.update(match at {
            Some(at) => Msg::Recorded(event, at),
            None => Msg::Trainer(event),
        });
    }
    (true, arrived)
}

/// Runs the app until it asks to exit, with the system sampler feeding it
/// a reading of the machine every second.
pub fn run_sampled<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    input: &mut dyn InputSource,
    events: &dyn EventSource,
    liveness: Option<&Receiver<Liveness>>,
    record: &mut dyn FnMut(&Event) -> Option<String>,
    send: &mut dyn FnMut(Command) -> Option<String>,
) -> Result<()>
where
    B::Error: std::fmt::Display,
{
    let mut feeds = [Feed {
        events,
        liveness,
        record,
        send,
    }];
    let mut board = Board::new(std::slice::from_mut(app));
    run_board_sampled(terminal, &mut board, input, &mut feeds)
}

/// Runs the board until a run asks to exit, with the system sampler
/// feeding it a reading of the machine every second.
pub fn run_board_sampled<B: Backend>(
    terminal: &mut Terminal<B>,
    board: &mut Board,
    input: &mut dyn InputSource,
    feeds: &mut [Feed<'_>],
) -> Result<()>
where
    B::Error: std::fmt::Display,
{
    let (system_sender, system) = std::sync::mpsc::channel();
    sampler::spawn(system_sender, Duration::from_secs(1))
        .map_err(|e| Error::Failed(format!("cannot start the system monitor: {e}")))?;
    run_board(terminal, board, input, &system, feeds)
        .map_err(|e| Error::Failed(format!("terminal: {e}")))
}

/// Takes over the terminal for `body` and gives it back, also on error and
/// on a panic of the UI thread. Giving it back never fails loudly: a
/// terminal that hung up (its window or SSH session closed) cannot be
/// restored, and saying so on its dead stderr would panic.
pub fn in_terminal<T>(body: impl FnOnce(&mut DefaultTerminal) -> Result<T>) -> Result<T> {
    use ratatui::crossterm::{execute, terminal};
    // Readable panic reports, behind a hook that restores the terminal
    // first (each process shows one TUI, so this runs once). A trainer
    // panic is not the UI's: it arrives as a `failed` event and the screen
    // stays up.
    color_eyre::install()
        .map_err(|e| Error::Failed(format!("cannot install panic reports: {e}")))?;
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("trainer") {
            restore();
            report(info);
        }
    }));
    let start = || -> io::Result<DefaultTerminal> {
        terminal::enable_raw_mode()?;
        execute!(io::stdout(), terminal::EnterAlternateScreen)?;
        Terminal::new(ratatui::backend::CrosstermBackend::new(io::stdout()))
    };
    let mut terminal = start().map_err(|e| {
        restore();
        Error::Failed(format!("cannot take over the terminal: {e}"))
    })?;
    let result = body(&mut terminal);
    // The cursor back, then the terminal forgotten rather than dropped: its
    // drop says on stderr when the cursor cannot be shown, which panics on
    // a terminal that hung up.
    let _ = terminal.show_cursor();
    std::mem::forget(terminal);
    restore();
    result
}

/// Gives the terminal back (main screen, cooked mode), quietly.
pub fn restore() {
    let _ = ratatui::try_restore();
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_charts;
#[cfg(test)]
mod tests_compare;
#[cfg(test)]
mod tests_panes;
#[cfg(test)]
mod tests_processes;
