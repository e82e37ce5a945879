//! The ssh command line of a connection: the user's ssh (or
//! `$TRAINUI_SSH_COMMAND`), the destination, and the far side's program
//! (`$TRAINUI_REMOTE_PROGRAM`, else `trainui`) as one command for the far
//! shell.

use std::ffi::OsString;
use std::process::Command;

/// Where ssh connects: `[user@]host`, and a port (ssh:// paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub login: String,
    pub port: Option<u16>,
    /// As the user wrote it: `user@host` or `host:port`.
    pub shown: String,
}

/// How connections are made: the ssh command line and the far side's
/// program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A command line that replaces `ssh` (run by `sh -c`), if any.
    pub ssh_command: Option<String>,
    /// The far side's program.
    pub program: String,
}

impl Settings {
    /// `$TRAINUI_SSH_COMMAND`, else ssh; `$TRAINUI_REMOTE_PROGRAM`, else
    /// `trainui`.
    #[must_use]
    pub fn from_environment() -> Self {
        let set = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Self {
            ssh_command: set("TRAINUI_SSH_COMMAND"),
            program: set("TRAINUI_REMOTE_PROGRAM").unwrap_or_else(|| "trainui".into()),
        }
    }
}

/// `text` as one word of a POSIX shell (the far side's shell reads the
/// command ssh sends); a leading `~/` stays outside the quotes, so that
/// the shell makes it the home folder.
fn shell_word(text: &str) -> String {
    let (home, rest) = match text.strip_prefix("~/") {
        Some(rest) => ("~/", rest),
        None => ("", text),
    };
    format!("{home}'{}'", rest.replace('\'', r"'\''"))
}

/// The ssh command line of a connection to `destination`.
pub(super) fn ssh_command(destination: &Destination, settings: &Settings) -> Command {
    let mut args: Vec<OsString> = vec!["-T".into(), "-o".into(), "BatchMode=yes".into()];
    if let Some(port) = destination.port {
        args.extend(["-p".into(), port.to_string().into()]);
    }
    args.push("--".into());
    args.push(destination.login.clone().into());
    args.push(format!("{} serve --stdio", shell_word(&settings.program)).into());
    let mut command = if let Some(ssh) = &settings.ssh_command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{ssh} \"$@\""))
            .arg("trainui-ssh");
        command
    } else {
        Command::new("ssh")
    };
    command.args(args);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_far_command_is_one_shell_word_per_part() {
        assert_eq!(shell_word("trainui"), "'trainui'");
        assert_eq!(shell_word("~/venv/bin/trainui"), "~/'venv/bin/trainui'");
        assert_eq!(shell_word("a'b; rm -rf x"), r"'a'\''b; rm -rf x'");
    }
}
