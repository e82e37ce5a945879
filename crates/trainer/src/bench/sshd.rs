//! A real OpenSSH server on 127.0.0.1 for the bench's remote figures:
//! Debian's `sshd` in the foreground on a free port, with throwaway keys,
//! accepting a key of its own only, and an `ssh_config` naming it
//! [`HOST`]. Everything it needs lives in a folder the bench removes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trainui_protocol::error::{Error, Result};

const SSHD: &str = "/usr/sbin/sshd";

/// The host name the client config gives the server.
pub const HOST: &str = "trainui-bench";

/// How long the server may take to let `ssh HOST true` in.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The bench's own sshd, ended when it drops.
pub struct Sshd {
    dir: PathBuf,
    server: Child,
}

impl Sshd {
    /// Starts the server with its files in `dir` and waits until a login
    /// works; an error saying why when sshd (or ssh) is missing or does
    /// not let the login in.
    pub fn start(dir: &Path) -> Result<Self> {
        if !Path::new(SSHD).exists() {
            return Err(Error::Failed(format!(
                "{SSHD} is missing (apt-get install openssh-server)"
            )));
        }
        privilege_separation_dir()?;
        std::fs::create_dir_all(dir).map_err(Error::io("cannot create", dir))?;
        keygen(&dir.join("host"))?;
        keygen(&dir.join("client"))?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client.pub"), &authorized)
            .map_err(Error::io("cannot write", &authorized))?;
        let user = current_user()?;
        let mut last_error = String::new();
        // A port freed just before sshd binds it may be taken meanwhile: a
        // server that exits at once is started again on another port.
        for _ in 0..5 {
            let port = free_port()?;
            let log = dir.join("sshd.log");
            let server = server_command(dir, port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).map_err(Error::io("cannot create", &log))?)
                .spawn()
                .map_err(|e| Error::Failed(format!("cannot run {SSHD}: {e}")))?;
            let mut sshd = Self {
                dir: dir.to_owned(),
                server,
            };
            sshd.write_client_config(port, &user)?;
            match sshd.wait_for_login() {
                Ok(()) => return Ok(sshd),
                Err(why) => last_error = why,
            }
        }
        Err(Error::Failed(format!("sshd did not start: {last_error}")))
    }

    /// Tries `ssh HOST true` until it works or the server exits or
    /// [`START_LIMIT`] passes; why not, with sshd's log.
    fn wait_for_login(&mut self) -> std::result::Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(exit)) = self.server.try_wait() {
                return Err(format!("sshd exited ({exit}): {}", self.log()));
            }
            let login = Command::new("ssh")
                .arg("-F")
                .arg(self.config())
                .args([HOST, "true"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ssh (openssh-client): {e}"))?;
            if login.status.success() {
                return Ok(());
            }
            if started.elapsed() > START_LIMIT {
                return Err(format!(
                    "ssh to it failed for {} s: {}; sshd's log: {}",
                    START_LIMIT.as_secs(),
                    String::from_utf8_lossy(&login.stderr).trim(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value for `TRAINUI_SSH_COMMAND`: `ssh` with this server's
    /// client config.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", quoted(&self.config().to_string_lossy()))
    }

    /// The server's process: every connection's processes descend from it.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    fn config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn write_client_config(&self, port: u16, user: &str) -> Result<()> {
        let text = format!(
            "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
             BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            self.dir.join("client").display()
        );
        let path = self.config();
        std::fs::write(&path, text).map_err(Error::io("cannot write", &path))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// sshd refuses to start without its privilege separation folder; made
/// here where the bench may (as root).
fn privilege_separation_dir() -> Result<()> {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        let _ = std::fs::create_dir_all(dir);
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::Failed(
            "/run/sshd is missing, and sshd needs it (sudo mkdir -p /run/sshd)".into(),
        ))
    }
}

fn keygen(path: &Path) -> Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", HOST, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| Error::Failed(format!("cannot run ssh-keygen (openssh-client): {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "ssh-keygen failed for {}",
            path.display()
        )))
    }
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| Error::Failed(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn server_command(dir: &Path, port: u16) -> Command {
    let mut command = Command::new(SSHD);
    command
        .args(["-f", "/dev/null", "-D", "-e", "-p", &port.to_string()])
        .args(["-o", "ListenAddress=127.0.0.1"]);
    for option in [
        format!("HostKey={}", dir.join("host").display()),
        format!(
            "AuthorizedKeysFile={}",
            dir.join("authorized_keys").display()
        ),
        "PasswordAuthentication=no".into(),
        "KbdInteractiveAuthentication=no".into(),
        "PermitRootLogin=prohibit-password".into(),
        "StrictModes=no".into(),
        format!("PidFile={}", dir.join("sshd.pid").display()),
        "UsePAM=no".into(),
    ] {
        command.arg("-o").arg(option);
    }
    command
}

/// The login name of the user running the bench.
fn current_user() -> Result<String> {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .map_err(|e| Error::Failed(format!("cannot run id: {e}")))?;
    if !output.status.success() {
        return Err(Error::Failed("id -un failed".into()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `text` in single quotes for sh.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
