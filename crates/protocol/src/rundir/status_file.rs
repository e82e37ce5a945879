//! Reading a run directory's status file, with the fields this trainui
//! cannot take named rather than fatal.

use std::path::Path;

use super::files::STATUS_FILE;
use crate::error::{Error, Result};
use crate::events::{RunStatus, SCHEMA_VERSION};
use crate::runfile;

/// Reads the status file of a run directory (see [`read_status_fields`]).
pub fn read_status(root: &Path) -> Result<RunStatus> {
    read_status_fields(root).map(|(status, _)| status)
}

/// A field of a status file whose value this trainui cannot take.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownField {
    /// The field's name, as the file spells it (`current_step`).
    pub name: String,
    /// What is wrong with it, at its place (`current_step: invalid value ...`).
    pub why: String,
}

/// Reads the status file of a run directory: a regular file of at most
/// [`runfile::STATUS_LIMIT`] bytes. A field whose value this trainui cannot
/// take (a step beyond 2^64, a word it does not know) is read as it is in
/// a status that knows nothing, and named in the list returned beside the
/// status, for its readers to show as unknown; the others are kept.
pub fn read_status_fields(root: &Path) -> Result<(RunStatus, Vec<UnknownField>)> {
    let path = root.join(STATUS_FILE);
    let bytes = runfile::read(&path, runfile::STATUS_LIMIT).map_err(|err| {
        Error::Usage(format!(
            "{}: cannot read the status file: {err}; is this a trainui run directory?",
            path.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
        Error::Input(format!(
            "{}: not a trainui status file: {err}",
            path.display()
        ))
    })?;
    if let Some(version) = value["schema_version"]
        .as_u64()
        .filter(|&v| v > u64::from(SCHEMA_VERSION))
    {
        return Err(Error::Input(format!(
            "{}: written by a newer trainui (protocol {version}); this one reads up to \
             protocol {SCHEMA_VERSION}: update trainui to read this run",
            path.display()
        )));
    }
    status_from_value(value).map_err(|err| {
        Error::Input(format!(
            "{}: not a trainui status file: {err}",
            path.display()
        ))
    })
}

/// A status from its JSON, each field that does not read replaced by its
/// value in a status that knows nothing (`pid` 0: no process), and named.
/// Missing fields and what is not an object are refused whole.
fn status_from_value(
    mut value: serde_json::Value,
) -> Result<(RunStatus, Vec<UnknownField>), String> {
    let mut unknown = RunStatus::new(String::new(), 0);
    unknown.pid = 0;
    let unknown = serde_json::to_value(unknown).expect("a status serialises");
    let mut bad = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, RunStatus>(&value) {
            Ok(status) => return Ok((status, bad)),
            Err(err) => err,
        };
        let field = err.path().iter().next().and_then(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let (Some(field), Some(fields)) = (field, value.as_object_mut()) else {
            return Err(err.into_inner().to_string());
        };
        let Some(replacement) = unknown.get(&field).cloned() else {
            return Err(err.into_inner().to_string());
        };
        if fields.get(&field) == Some(&replacement) {
            return Err(err.into_inner().to_string());
        }
        let at = err.path().to_string();
        let why = format!("{at}: {}", err.into_inner());
        fields.insert(field.clone(), replacement);
        bad.push(UnknownField { name: field, why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::rundir::{EVENTS_FILE, EventTail};
    use std::fs;

    fn step(step: u64) -> Event {
        crate::events::examples::step(step, 1_000_000, 1.0 / (step as f64 + 1.0))
    }

    #[test]
    fn a_run_from_a_newer_protocol_is_named_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("status")).unwrap();
        let mut status = serde_json::to_value(RunStatus::new("future".into(), 10)).unwrap();
        status["schema_version"] = 99.into();
        fs::write(root.join(STATUS_FILE), status.to_string()).unwrap();
        let error = read_status(root).unwrap_err().to_string();
        assert!(
            error.contains("training_status.json")
                && error.contains("newer trainui (protocol 99)")
                && error.contains("update trainui"),
            "{error}"
        );

        let now = serde_json::to_string(&step(1)).unwrap();
        let lines = [
            format!("{{\"v\":{SCHEMA_VERSION},{}", &now[1..]),
            format!("{{\"v\":4,{}", &now[1..]),
            // Not written by trainui's writers, whose lines start with "v".
            format!("{},\"v\":7}}", &now[..now.len() - 1]),
            r#"{"v":5,"type":"teleported"}"#.to_owned(),
        ];
        fs::write(root.join(EVENTS_FILE), lines.join("\n") + "\n").unwrap();
        let mut tail = EventTail::new(root, 0);
        assert_eq!(tail.read_new(1 << 20), [step(1)]);
        assert_eq!((tail.newer, tail.garbage), (Some(7), 0));
    }

    #[test]
    fn a_status_field_that_cannot_be_read_is_named_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("status")).unwrap();
        let mut status = serde_json::to_value(RunStatus::new("kept".into(), 10)).unwrap();
        status["loss"] = 1.25.into();
        let text = status.to_string().replace(
            "\"current_step\":0",
            "\"current_step\":100000000000000000000",
        );
        let text = text.replace(&format!("\"pid\":{}", std::process::id()), "\"pid\":-4");
        fs::write(root.join(STATUS_FILE), text).unwrap();
        let (read, bad) = read_status_fields(root).unwrap();
        assert_eq!((read.run_name.as_str(), read.loss), ("kept", Some(1.25)));
        assert_eq!(
            (read.current_step, read.pid),
            (0, 0),
            "unknown, not this process"
        );
        let names: Vec<&str> = bad.iter().map(|field| field.name.as_str()).collect();
        assert_eq!(names, ["current_step", "pid"], "{bad:?}");
        assert!(bad[0].why.starts_with("current_step: invalid"), "{bad:?}");

        // A file that is no status at all is still refused whole.
        fs::write(root.join(STATUS_FILE), "[1, 2]").unwrap();
        assert!(read_status(root).is_err());
        fs::write(root.join(STATUS_FILE), r#"{"run_name": "x"}"#).unwrap();
        let err = read_status(root).unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
    }
}
