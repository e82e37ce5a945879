//! What the two sides of a remote connection say to each other: one JSON
//! object a line over ssh's standard input and output. The near side (the
//! `trainui` the user runs) asks; the far side (`trainui serve --stdio`,
//! started by ssh) streams the files of the run directories asked for.
//!
//! Every message is a [`ToFar`] or a [`ToNear`], externally tagged
//! (`{"follow": {...}}`). Text read from a run directory travels as JSON
//! strings (invalid UTF-8 replaced), so no byte of it can break a line.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver};
use std::thread;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of this wire format: both sides must speak the same.
pub const WIRE_VERSION: u32 = 1;

/// The longest line either side reads; anything longer ends the
/// connection. The far side's longest is a chunk of events (1 MiB of lines
/// and one more line of at most 1 MiB) or a status file (at most 4 MiB),
/// each up to six times longer as JSON (`\u0001`).
pub const MAX_MESSAGE: usize = 32 << 20;

/// What a followed run's copy should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// Everything, its events.jsonl line for line (`query`).
    Full,
    /// Everything, a long history's step events thinned on the first read
    /// (`watch`, `plot`).
    Thinned,
    /// The status file, config.json, the rank files and whether the run is
    /// alive (`runs`, `status`, `diff`).
    Small,
    /// The rank files only (the other nodes of a run seen `--as-one`).
    Ranks,
}

/// Where the near side's copy of a run stands: the far side sends what
/// comes after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Bytes of events.jsonl the copy holds (whole lines), and the file's
    /// identity (device, inode) they were read from.
    pub events: u64,
    pub events_file: Option<(u64, u64)>,
    /// Bytes of job_output.log read, and its identity.
    pub output: u64,
    pub output_file: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToFar {
    /// The first message: who asks.
    Hello {
        wire: u32,
        version: String,
        protocol: u32,
    },
    /// Stream the run directory at `path` (relative to the far side's home
    /// unless absolute) as run number `run` of this connection.
    Follow {
        run: u32,
        path: String,
        depth: Depth,
        resume: Resume,
    },
    /// The run directories at most `depth` folders below `path`.
    List { id: u32, path: String, depth: usize },
    /// Place a command file in run `run`'s control spool, once.
    Deliver {
        run: u32,
        name: String,
        body: String,
    },
    /// Nothing new; the near side is still there (every second: a far side
    /// that hears nothing for a while ends).
    Beat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToNear {
    /// The answer to [`ToFar::Hello`].
    Hello {
        wire: u32,
        version: String,
        protocol: u32,
    },
    /// Lines of events.jsonl: those from byte `from` to byte `to` of the
    /// far file (all of them, or the kept ones of a thinned first read).
    /// `start_over`: the file was replaced or truncated; the copy starts
    /// again with these.
    Events {
        run: u32,
        from: u64,
        to: u64,
        file: (u64, u64),
        start_over: bool,
        lines: String,
    },
    /// A small file of the run (its path inside the run directory), whole;
    /// None: it is gone.
    File {
        run: u32,
        name: String,
        text: Option<String>,
    },
    /// Bytes of job_output.log from `from` (the tail of a long one first).
    Output {
        run: u32,
        from: u64,
        to: u64,
        file: (u64, u64),
        start_over: bool,
        text: String,
    },
    /// Whether the run's process is alive on the far machine.
    Alive { run: u32, alive: bool },
    /// Everything there was when the run was asked for has been sent.
    Synced { run: u32 },
    /// Something about a run the near side should show (it cannot be
    /// read); an empty message when that is over.
    Problem { run: u32, message: String },
    /// The answer to [`ToFar::List`]: run directories, as paths given.
    Listed {
        id: u32,
        runs: Vec<String>,
        error: Option<String>,
    },
    /// The answer to [`ToFar::Deliver`]: placed now, placed before, or why
    /// not.
    Delivered {
        run: u32,
        name: String,
        placed: bool,
        error: Option<String>,
    },
    /// Nothing new; the connection is alive.
    Beat,
}

/// One message as its line (without the newline).
#[must_use]
pub fn line<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("wire messages serialise")
}

/// The messages of `input`, read on a thread of its own (named `name`);
/// the channel closes when the input ends, or holds a line longer than
/// [`MAX_MESSAGE`] or one that is no message.
pub fn read<T: DeserializeOwned + Send + 'static>(
    input: impl Read + Send + 'static,
    name: &str,
) -> Receiver<T> {
    let (messages, receiver) = mpsc::channel();
    let _ = thread::Builder::new().name(name.into()).spawn(move || {
        let mut input = BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut input)
                .take(MAX_MESSAGE as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let Ok(message) = serde_json::from_slice::<T>(&line) else {
                return;
            };
            if messages.send(message).is_err() {
                return;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_whatever_text_they_carry() {
        let message = ToNear::Events {
            run: 3,
            from: 0,
            to: 20,
            file: (1, 2),
            start_over: false,
            lines: "{\"a\":1}\n\u{1b}]0;x\u{7}\n".into(),
        };
        let text = line(&message);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(text.starts_with(r#"{"events":{"run":3,"#), "{text}");
        assert_eq!(serde_json::from_str::<ToNear>(&text).unwrap(), message);
        let ask = ToFar::Deliver {
            run: 1,
            name: "1-2-stop.json".into(),
            body: "{}".into(),
        };
        assert_eq!(serde_json::from_str::<ToFar>(&line(&ask)).unwrap(), ask);
    }
}
