//! One connection to one host: the user's ssh running `trainui serve
//! --stdio` there, on a thread of its own that keeps the copies of that
//! host's runs in step, forwards the command files dropped into them, and
//! when the connection drops or goes quiet makes it again, with backoff,
//! from where each copy stands (no gap, no line twice).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::mirror::Mirror;
use super::ssh::{self, Destination, Settings};
use super::wire::{self, Depth, ToFar, ToNear, WIRE_VERSION};
use trainui_protocol::control::REQUEST_VERSION;
use trainui_protocol::events::SCHEMA_VERSION;

/// The far side is taken for gone after this long without a word (it
/// beats every second).
pub const QUIET: Duration = Duration::from_secs(5);
/// How long ssh may take to start the far side and answer the hello.
const HELLO_WAIT: Duration = Duration::from_secs(30);
/// Waits between attempts: doubling from the first, at most the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MOST: Duration = Duration::from_secs(15);
/// How often the near side says it is there when it has nothing to ask.
const BEAT: Duration = Duration::from_secs(1);
/// How often the copies' spools are looked at for commands to forward.
const SPOOL_EVERY: Duration = Duration::from_millis(200);
/// How much of ssh's own output is kept, to say why it failed.
const STDERR_KEPT: usize = 4096;

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// Starting ssh, for the first time.
    Connecting,
    Connected,
    /// It dropped, went quiet or could not be made: why, the attempt
    /// that comes next, and whether it ever served.
    Lost {
        why: String,
        attempt: u32,
        served: bool,
    },
    /// The far side cannot serve this trainui (another version): no
    /// attempt is made again.
    Refused(String),
}

/// One run followed through the connection.
pub struct Followed {
    pub path: String,
    pub depth: Depth,
    pub mirror: Mirror,
    /// Everything there was when it was first asked for has arrived.
    pub synced: bool,
    pub alive: Option<bool>,
    pub problem: Option<String>,
    /// Asked for on the current connection.
    asked: bool,
    /// Command files sent and not yet answered, by name: their text and
    /// the connection they were last sent on.
    in_flight: BTreeMap<String, (String, u64)>,
    /// Command files the far side could not place, and why.
    pub refused: BTreeMap<String, String>,
}

/// A listing asked for: the folder, how deep, whether this connection
/// asked, and the answer once it came.
type Listing = (String, usize, bool, Option<Result<Vec<String>, String>>);

/// What the near side's commands and the connection's thread share.
pub struct State {
    pub connection: Connection,
    pub runs: Vec<Followed>,
    /// Listings asked for, by id: None until answered.
    lists: BTreeMap<u32, Listing>,
    /// The far side's version, once it said.
    pub far_version: Option<String>,
    stop: bool,
}

pub struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `done` holds of the state, or `timeout` passes; the
    /// state either way.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state
    }
}

/// Why a listing did not come.
#[derive(Debug)]
pub enum Unlisted {
    /// The far side answered: the folder cannot be listed.
    Far(String),
    /// No answer: the host cannot be reached (now).
    Unreachable(String),
}

/// A connection to one host and its thread.
pub struct Link {
    pub destination: Destination,
    pub shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Link {
    #[must_use]
    pub fn start(destination: Destination, settings: Settings) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                connection: Connection::Connecting,
                runs: Vec::new(),
                lists: BTreeMap::new(),
                far_version: None,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let destination = destination.clone();
            thread::Builder::new()
                .name("remote-link".into())
                .spawn(move || keep_connected(&destination, &settings, &shared))
                .ok()
        };
        Self {
            destination,
            shared,
            thread,
        }
    }

    /// Follows the run at `path` there into `mirror`; its number.
    #[must_use]
    pub fn follow(&self, path: &str, depth: Depth, mirror: Mirror) -> usize {
        let mut state = self.shared.lock();
        state.runs.push(Followed {
            path: path.to_owned(),
            depth,
            mirror,
            synced: false,
            alive: None,
            problem: None,
            asked: false,
            in_flight: BTreeMap::new(),
            refused: BTreeMap::new(),
        });
        state.runs.len() - 1
    }

    /// The run directories at most `depth` folders below `path` there (the
    /// path itself if it is a run), waiting at most `timeout`.
    pub fn list(
        &self,
        path: &str,
        depth: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, Unlisted> {
        let id = {
            let mut state = self.shared.lock();
            let id = u32::try_from(state.lists.len()).unwrap_or(u32::MAX);
            state
                .lists
                .insert(id, (path.to_owned(), depth, false, None));
            id
        };
        let state = self.shared.wait_for(timeout, |state| {
            state.lists.get(&id).is_some_and(|list| list.3.is_some())
                || !matches!(
                    state.connection,
                    Connection::Connecting | Connection::Connected
                )
        });
        match state.lists.get(&id).and_then(|list| list.3.clone()) {
            Some(Ok(found)) => Ok(found),
            Some(Err(why)) => Err(Unlisted::Far(why)),
            None => Err(Unlisted::Unreachable(self.trouble(&state))),
        }
    }

    /// Why the connection is not serving: for a command that gave up.
    #[must_use]
    pub fn trouble(&self, state: &State) -> String {
        let host = &self.destination.shown;
        match &state.connection {
            Connection::Connecting => format!("{host}: no answer yet (ssh still connecting)"),
            Connection::Connected => {
                format!("{host}: connected, but the run did not arrive in time")
            }
            Connection::Lost { why, served, .. } => {
                let lost = if *served {
                    "connection lost"
                } else {
                    "cannot connect"
                };
                format!("{host}: {lost}: {why}")
            }
            Connection::Refused(why) => why.clone(),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The connection's thread: connect, serve, and after a drop connect
/// again, until stopped or refused.
fn keep_connected(destination: &Destination, settings: &Settings, shared: &Shared) {
    let mut attempt: u32 = 0;
    let mut connection_id: u64 = 0;
    let mut served = false;
    loop {
        if shared.lock().stop {
            return;
        }
        connection_id += 1;
        let why = match connect(destination, settings, shared, connection_id) {
            Ended::Stopped => return,
            Ended::Refused(why) => {
                shared.lock().connection = Connection::Refused(why);
                shared.changed.notify_all();
                return;
            }
            Ended::Served(why) => {
                attempt = 0;
                served = true;
                why
            }
            Ended::Failed(why) => why,
        };
        attempt += 1;
        shared.lock().connection = Connection::Lost {
            why: why.clone(),
            attempt,
            served,
        };
        shared.changed.notify_all();
        let wait = BACKOFF_FIRST
            .saturating_mul(1 << (attempt - 1).min(4))
            .min(BACKOFF_MOST);
        let state = shared.wait_for(wait, |state| state.stop);
        if state.stop {
            return;
        }
    }
}

enum Ended {
    Stopped,
    Refused(String),
    /// It served, then dropped or went quiet.
    Served(String),
    /// It could not be made.
    Failed(String),
}

/// The ssh process of one connection, killed when dropped.
struct Ssh {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The far side's program, as named.
    program: String,
}

impl Drop for Ssh {
    fn drop(&mut self) {
        // Its process group: a TRAINUI_SSH_COMMAND run by `sh -c` may
        // have started ssh as a child of its own.
        let _ = trainui_protocol::process::signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ssh {
    /// What ssh said of its failure, its last line, escaped.
    fn said(&mut self) -> String {
        // Its output closed: it ends in a moment (or is taken for hung).
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut status = self.child.try_wait().ok().flatten();
        while status.is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            status = self.child.try_wait().ok().flatten();
        }
        // Give its error output a moment to arrive after it ended.
        thread::sleep(Duration::from_millis(50));
        let text = self
            .stderr
            .lock()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(|line| trainui_protocol::text::escape(line.trim()).into_owned());
        match (status.and_then(|s| s.code()), last) {
            (Some(127), _) => format!(
                "no `{}` on the far side's PATH: install trainui there, or set \
                 TRAINUI_REMOTE_PROGRAM to its path there",
                trainui_protocol::text::escape(&self.program)
            ),
            (_, Some(last)) => format!("ssh: {last}"),
            (Some(code), None) => format!("ssh exited with status {code}"),
            (None, None) => "the connection ended".into(),
        }
    }
}

fn spawn_ssh(
    destination: &Destination,
    settings: &Settings,
) -> std::io::Result<(Ssh, ChildStdin, Receiver<ToNear>)> {
    let mut command = ssh::ssh_command(destination, settings);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let kept = Arc::new(Mutex::new(Vec::new()));
    {
        let kept = Arc::clone(&kept);
        let _ = thread::Builder::new()
            .name("remote-stderr".into())
            .spawn(move || {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = stderr.read(&mut buffer) {
                    if read == 0 {
                        return;
                    }
                    if let Ok(mut kept) = kept.lock() {
                        kept.extend_from_slice(&buffer[..read]);
                        let over = kept.len().saturating_sub(STDERR_KEPT);
                        kept.drain(..over);
                    }
                }
            });
    }
    let received = wire::read::<ToNear>(stdout, "remote-read");
    Ok((
        Ssh {
            child,
            stderr: kept,
            program: settings.program.clone(),
        },
        stdin,
        received,
    ))
}

/// Lines to the far side, written on a thread of their own: a connection
/// that hangs must not hang the one that watches it.
fn writer(mut stdin: ChildStdin) -> Sender<String> {
    let (lines, received) = mpsc::channel::<String>();
    let _ = thread::Builder::new()
        .name("remote-write".into())
        .spawn(move || {
            for line in received {
                if stdin
                    .write_all(line.as_bytes())
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    lines
}

fn send(lines: &Sender<String>, message: &ToFar) {
    let mut line = wire::line(message);
    line.push('\n');
    let _ = lines.send(line);
}

/// One connection, from ssh's start to its end.
fn connect(
    destination: &Destination,
    settings: &Settings,
    shared: &Shared,
    connection_id: u64,
) -> Ended {
    let (mut ssh, stdin, messages) = match spawn_ssh(destination, settings) {
        Ok(started) => started,
        Err(err) => return Ended::Failed(format!("cannot run ssh: {err}")),
    };
    let lines = writer(stdin);
    send(
        &lines,
        &ToFar::Hello {
            wire: WIRE_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: SCHEMA_VERSION,
        },
    );
    let deadline = Instant::now() + HELLO_WAIT;
    let far = loop {
        if shared.lock().stop {
            return Ended::Stopped;
        }
        match messages.recv_timeout(Duration::from_millis(100)) {
            Ok(ToNear::Hello {
                wire,
                version,
                protocol,
            }) => break (wire, version, protocol),
            Ok(_) => return Ended::Failed("the far side did not say hello".into()),
            Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(RecvTimeoutError::Timeout) => {
                return Ended::Failed(format!(
                    "no answer from trainui on {} in {} s",
                    destination.shown,
                    HELLO_WAIT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => return Ended::Failed(ssh.said()),
        }
    };
    let (wire, version, protocol) = far;
    if wire != WIRE_VERSION || protocol != SCHEMA_VERSION {
        return Ended::Refused(format!(
            "{}: trainui there is {} (protocol {protocol}, wire {wire}); this one is {} \
             (protocol {SCHEMA_VERSION}, commands {REQUEST_VERSION}, wire {WIRE_VERSION}): \
             install the same trainui there, or set TRAINUI_REMOTE_PROGRAM to one",
            destination.shown,
            trainui_protocol::text::escape(&version),
            env!("CARGO_PKG_VERSION"),
        ));
    }
    {
        let mut state = shared.lock();
        state.far_version = Some(version);
        state.connection = Connection::Connected;
        for run in &mut state.runs {
            run.asked = false;
        }
        for list in state.lists.values_mut() {
            list.2 = false;
        }
    }
    shared.changed.notify_all();
    let mut heard = Instant::now();
    let mut beat = Instant::now();
    let mut spool_read: Option<Instant> = None;
    loop {
        {
            let mut state = shared.lock();
            if state.stop {
                return Ended::Stopped;
            }
            let read_spools = spool_read.is_none_or(|at| at.elapsed() >= SPOOL_EVERY);
            ask(&mut state, &lines, connection_id, read_spools);
            if read_spools {
                spool_read = Some(Instant::now());
            }
        }
        if beat.elapsed() >= BEAT {
            beat = Instant::now();
            send(&lines, &ToFar::Beat);
        }
        match messages.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => {
                heard = Instant::now();
                // What else has come too, a bounded batch, so that a long
                // catch-up still lets the connection be looked after.
                let mut batch = vec![message];
                batch.extend(messages.try_iter().take(64));
                let mut state = shared.lock();
                for message in batch {
                    take(&mut state, message);
                }
                drop(state);
                shared.changed.notify_all();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Ended::Served(ssh.said());
            }
        }
        if heard.elapsed() > QUIET {
            return Ended::Served(format!("no word for {} s", QUIET.as_secs()));
        }
    }
}

/// Asks for what this connection has not asked yet: runs to follow (from
/// where their copies stand), listings, and the command files dropped
/// into the copies (each until the far side answers it, on every
/// connection anew).
fn ask(state: &mut State, lines: &Sender<String>, connection_id: u64, read_spools: bool) {
    for (index, run) in state.runs.iter_mut().enumerate() {
        let number = u32::try_from(index).unwrap_or(u32::MAX);
        if !run.asked {
            run.asked = true;
            // Rank files are sent anew; those gone meanwhile go too.
            run.mirror.forget_ranks();
            send(
                lines,
                &ToFar::Follow {
                    run: number,
                    path: run.path.clone(),
                    depth: run.depth,
                    resume: run.mirror.resume,
                },
            );
        }
        if read_spools && run.depth != Depth::Ranks {
            let (commands, unreadable) = run.mirror.commands();
            for (name, body) in commands {
                run.in_flight.entry(name).or_insert((body, 0));
            }
            run.refused.extend(unreadable);
        }
        for (name, (body, sent_on)) in &mut run.in_flight {
            if *sent_on != connection_id {
                *sent_on = connection_id;
                send(
                    lines,
                    &ToFar::Deliver {
                        run: number,
                        name: name.clone(),
                        body: body.clone(),
                    },
                );
            }
        }
    }
    for (id, (path, depth, asked, answer)) in &mut state.lists {
        if !*asked && answer.is_none() {
            *asked = true;
            send(
                lines,
                &ToFar::List {
                    id: *id,
                    path: path.clone(),
                    depth: *depth,
                },
            );
        }
    }
}

/// Takes one message of the far side into the copies.
fn take(state: &mut State, message: ToNear) {
    fn run(state: &mut State, run: u32) -> Option<&mut Followed> {
        state.runs.get_mut(run as usize)
    }
    match message {
        ToNear::Hello { .. } | ToNear::Beat => {}
        ToNear::Events {
            run: number,
            from,
            to,
            file,
            start_over,
            lines,
        } => {
            if let Some(run) = run(state, number) {
                if !start_over && from != run.mirror.resume.events {
                    // Not where the copy stands: ask again from there.
                    run.asked = false;
                } else if let Err(problem) = run.mirror.events(to, file, start_over, &lines) {
                    run.problem = Some(problem);
                    run.asked = false;
                }
            }
        }
        ToNear::Output {
            run: number,
            to,
            file,
            start_over,
            text,
            ..
        } => {
            if let Some(run) = run(state, number)
                && let Err(problem) = run.mirror.output(to, file, start_over, &text)
            {
                run.problem = Some(problem);
                run.asked = false;
            }
        }
        ToNear::File {
            run: number,
            name,
            text,
        } => {
            if let Some(run) = run(state, number)
                && let Err(problem) = run.mirror.file(&name, text.as_deref())
            {
                run.problem = Some(problem);
            }
        }
        ToNear::Alive { run: number, alive } => {
            if let Some(run) = run(state, number) {
                run.alive = Some(alive);
            }
        }
        ToNear::Synced { run: number } => {
            if let Some(run) = run(state, number) {
                run.synced = true;
            }
        }
        ToNear::Problem {
            run: number,
            message,
        } => {
            if let Some(run) = run(state, number) {
                run.problem = (!message.is_empty()).then_some(message);
            }
        }
        ToNear::Listed { id, runs, error } => {
            if let Some(list) = state.lists.get_mut(&id) {
                list.3 = Some(match error {
                    Some(error) => Err(error),
                    None => Ok(runs),
                });
            }
        }
        ToNear::Delivered {
            run: number,
            name,
            error,
            ..
        } => {
            if let Some(run) = run(state, number) {
                run.in_flight.remove(&name);
                run.mirror.delivered(&name);
                if let Some(error) = error {
                    run.refused.insert(name, error);
                }
            }
        }
    }
}
