//! A real OpenSSH server on 127.0.0.1 for the tests of remote runs: Debian's
//! `sshd` in the foreground on a free port, with throwaway keys, accepting
//! the current user's key only, and an `ssh_config` naming it
//! `trainui-test`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// The host name the client config gives the server.
pub const HOST: &str = "trainui-test";

/// An sshd of this test's own, killed when it drops.
pub struct Sshd {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

impl Sshd {
    /// Starts the server and waits (20 s at most) until `ssh trainui-test
    /// true` logs in.
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: `./dev test` installs openssh-server (apt-get install openssh-server)"
        );
        privilege_separation_dir();
        let dir = tempfile::Builder::new()
            .prefix("trainui-sshd-")
            .tempdir()
            .unwrap();
        keygen(&dir.path().join("host"));
        keygen(&dir.path().join("client"));
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        // A port freed just before sshd binds it may be taken meanwhile by
        // a test beside this one: a server that exits at once is started
        // again on another port.
        for _ in 0..5 {
            let port = free_port();
            let mut server = server_command(dir.path(), port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("sshd.log")).unwrap())
                .spawn()
                .expect("sshd starts");
            write_client_config(dir.path(), port);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(exit) = server.try_wait().unwrap() {
                    eprintln!("sshd on port {port} exited ({exit}): {}", log(dir.path()));
                    break;
                }
                let login = Command::new("ssh")
                    .arg("-F")
                    .arg(dir.path().join("ssh_config"))
                    .args([HOST, "true"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("ssh is installed (openssh-client)");
                if login.status.success() {
                    return Self { dir, server, port };
                }
                if Instant::now() > deadline {
                    let _ = server.kill();
                    let _ = server.wait();
                    panic!(
                        "ssh to the test sshd on 127.0.0.1:{port} failed for 20 s: {}\nsshd's log:\n{}",
                        String::from_utf8_lossy(&login.stderr),
                        log(dir.path())
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("sshd did not start: {}", log(dir.path()));
    }

    /// The value for `TRAINUI_SSH_COMMAND`: `ssh` with this server's client
    /// config.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.config().display())
    }

    /// The client config, `Host trainui-test`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The host name to write in a remote path: `trainui-test:PATH`.
    #[allow(clippy::unused_self)] // every server is named alike, in its own config
    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// sshd refuses to start without its privilege separation folder, which
/// `./dev test` creates; made here where the tests may (as root).
fn privilege_separation_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        let _ = std::fs::create_dir_all(dir);
    }
    assert!(
        dir.is_dir(),
        "/run/sshd is missing, and sshd needs it: `./dev test` creates it (sudo mkdir -p /run/sshd)"
    );
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "trainui-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen is installed (openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        // Many tests beside each other each open several connections.
        "MaxStartups=100".into(),
        "MaxSessions=100".into(),
    ] {
        command.arg("-o").arg(option);
    }
    command
}

fn write_client_config(dir: &Path, port: u16) {
    let user = current_user();
    let config = format!(
        "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {}\n  \
         IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
         BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
        dir.join("client").display()
    );
    std::fs::write(dir.join("ssh_config"), config).unwrap();
}

/// The login name of the user running the tests (root in a container).
fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id runs");
    assert!(output.status.success(), "id -un failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
}
