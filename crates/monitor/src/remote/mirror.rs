//! The near side's copy of a remote run directory: what the far side
//! sends, written where the local readers (watch, status, runs, plot,
//! query) find it, as a run would have written it: events.jsonl and
//! job_output.log appended (or replaced whole when the far file was), the
//! small files replaced atomically. Names sent by the far side are checked
//! before anything is written: a copy never reaches outside its folder.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::wire::Resume;
use trainui_protocol::control::SPOOL_DIR;
use trainui_protocol::ranks::RANKS_DIR;
use trainui_protocol::rundir::{self, create_file};

/// A command file's name and its text (or why it is not sent).
pub type Named = (String, String);

/// One run's copy: its folder and where it stands against the far files.
#[derive(Debug)]
pub struct Mirror {
    pub dir: PathBuf,
    pub resume: Resume,
    /// The rank files this copy took (a run seen `--as-one` has the others'
    /// in the same folder).
    ranks: std::collections::BTreeSet<String>,
}

impl Mirror {
    /// Makes the copy's folder (owner-only, with an empty control spool
    /// that `ctl` and watch's keys write into).
    /// A copy kept from before (`TRAINUI_REMOTE_CACHE`) sends none of the
    /// command files left in it: they were meant for then.
    pub fn create(dir: PathBuf) -> std::io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(SPOOL_DIR))?;
        if let Ok(entries) = fs::read_dir(dir.join(SPOOL_DIR)) {
            for entry in entries.filter_map(Result::ok) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            resume: Resume::default(),
            ranks: std::collections::BTreeSet::new(),
        })
    }

    /// Lines of events.jsonl from the far side; where the copy stands moves
    /// on only once they are written.
    pub fn events(
        &mut self,
        to: u64,
        file: (u64, u64),
        start_over: bool,
        lines: &str,
    ) -> Result<(), String> {
        self.append(rundir::EVENTS_FILE, start_over, lines)?;
        self.resume.events = to;
        self.resume.events_file = Some(file);
        Ok(())
    }

    /// Bytes of job_output.log from the far side.
    pub fn output(
        &mut self,
        to: u64,
        file: (u64, u64),
        start_over: bool,
        text: &str,
    ) -> Result<(), String> {
        self.append(rundir::JOB_OUTPUT_FILE, start_over, text)?;
        self.resume.output = to;
        self.resume.output_file = Some(file);
        Ok(())
    }

    /// Appends `text` to the copy's `name`, or, for `start_over`, puts a
    /// new file with only `text` in its place (a new file, as a run's
    /// replaced events.jsonl is, so that readers start over).
    fn append(&self, name: &str, start_over: bool, text: &str) -> Result<(), String> {
        let path = self.dir.join(name);
        let written = if start_over {
            write_atomically(&path, text.as_bytes())
        } else if text.is_empty() {
            Ok(())
        } else {
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()))
        };
        written.map_err(|e| format!("cannot write the copy {}: {e}", path.display()))
    }

    /// A small file from the far side, whole (None: gone there). Only the
    /// names a run directory has are taken.
    pub fn file(&mut self, name: &str, text: Option<&str>) -> Result<(), String> {
        if !small_file(name) {
            return Err(format!(
                "the far side sent a file named {name:?}; not taken"
            ));
        }
        if name.starts_with(RANKS_DIR) {
            self.ranks.insert(name.to_owned());
        }
        let path = self.dir.join(name);
        let Some(text) = text else {
            let _ = fs::remove_file(&path);
            return Ok(());
        };
        if let Some(parent) = path.parent() {
            let _ = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent);
        }
        write_atomically(&path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Before following again: the rank files are sent anew, and those
    /// gone meanwhile must not linger (only this copy's own: another
    /// node's stay).
    pub fn forget_ranks(&mut self) {
        for name in std::mem::take(&mut self.ranks) {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// The command files `ctl` and watch's keys dropped into the copy's
    /// spool, by name, with their text (hidden files still being written
    /// passed over); and those that are no command file, removed, with why.
    #[must_use]
    pub fn commands(&self) -> (Vec<Named>, Vec<Named>) {
        let Ok(entries) = fs::read_dir(self.dir.join(SPOOL_DIR)) else {
            return (Vec::new(), Vec::new());
        };
        let mut found = Vec::new();
        let mut refused = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || Path::new(&name).extension().is_none_or(|ext| ext != "json")
            {
                continue;
            }
            let read = trainui_protocol::runfile::read(
                &entry.path(),
                trainui_protocol::control::MAX_REQUEST_BYTES,
            )
            .map_err(|err| err.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|err| err.to_string()));
            match read {
                Ok(text) => found.push((name, text)),
                Err(why) => {
                    let _ = fs::remove_file(entry.path());
                    refused.push((name, format!("not sent: {why}")));
                }
            }
        }
        found.sort();
        (found, refused)
    }

    /// A command file the far side has placed (or refused): gone here.
    pub fn delivered(&self, name: &str) {
        if !name.contains('/') {
            let _ = fs::remove_file(self.dir.join(SPOOL_DIR).join(name));
        }
    }
}

/// Puts a file holding exactly `contents` at `path` in one step (a
/// temporary file beside it, then a rename).
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let placed = create_file(&temp)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| fs::rename(&temp, path));
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    placed
}

/// The rank files of a copy kept from before: the far side sends those
/// there are now.
pub fn forget_old_ranks(dir: &Path) {
    let _ = fs::remove_dir_all(dir.join(RANKS_DIR));
}

/// The small files a copy holds: the status file, config.json and
/// `ranks/NAME.json`.
fn small_file(name: &str) -> bool {
    if name == rundir::STATUS_FILE || name == rundir::CONFIG_FILE {
        return true;
    }
    name.strip_prefix(RANKS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|file| file.strip_suffix(".json"))
        .is_some_and(|stem| {
            !stem.is_empty()
                && !stem.starts_with('.')
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// Where the copy of `path` on `host` lives below `root`: the far path's
/// parts, `..` and `.` spelt so that none leaves `root`, and a home-relative
/// path under `~`.
#[must_use]
pub fn place(root: &Path, host: &str, path: &str) -> PathBuf {
    let mut dir = root.join(safe_part(host));
    if !path.starts_with('/') {
        dir.push("~");
    }
    for part in path.trim_start_matches("~/").split('/') {
        match part {
            "" | "." => {}
            part => dir.push(safe_part(part)),
        }
    }
    dir
}

/// A path part that names a folder of its own below its parent.
fn safe_part(part: &str) -> String {
    match part {
        ".." => "%2E%2E".into(),
        "~" => "%7E".into(),
        part => part.replace('%', "%25"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_takes_only_the_files_of_a_run_directory_and_stays_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut mirror = Mirror::create(dir.path().join("copy")).unwrap();
        for name in [
            "../escape.json",
            "ranks/../../x.json",
            "control/1-2-stop.json",
            "ranks/.hidden.json",
            "/etc/passwd",
            "events.jsonl",
        ] {
            assert!(mirror.file(name, Some("{}")).is_err(), "{name}");
        }
        assert!(!dir.path().join("escape.json").exists());
        mirror.file("ranks/rank-1.json", Some("{}")).unwrap();
        mirror.file(rundir::STATUS_FILE, Some("{}")).unwrap();
        assert!(dir.path().join("copy/ranks/rank-1.json").is_file());
        assert_eq!(
            place(dir.path(), "me@gpu1", "/data/../runs/./a"),
            dir.path().join("me@gpu1/data/%2E%2E/runs/a")
        );
        assert_eq!(
            place(dir.path(), "gpu1", "~/runs/a"),
            dir.path().join("gpu1/~/runs/a")
        );
        assert_eq!(
            place(dir.path(), "gpu1", "runs/a"),
            dir.path().join("gpu1/~/runs/a")
        );
        assert_eq!(
            place(dir.path(), "..", "~/.."),
            dir.path().join("%2E%2E/~/%2E%2E")
        );
    }

    #[test]
    fn appends_follow_and_a_start_over_is_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut mirror = Mirror::create(dir.path().join("copy")).unwrap();
        mirror.events(4, (1, 2), true, "a\nb\n").unwrap();
        mirror.events(6, (1, 2), false, "c\n").unwrap();
        let path = dir.path().join("copy/events.jsonl");
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        assert_eq!(mirror.resume.events, 6);
        let before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        mirror.events(2, (1, 3), true, "d\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "d\n");
        let after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert_ne!(before, after);
        assert_eq!(mirror.resume.events_file, Some((1, 3)));
    }
}
