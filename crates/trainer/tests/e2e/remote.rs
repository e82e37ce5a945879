//! Runs on another machine, reached over the user's ssh: `trainui watch`,
//! `status` and `ctl` on `host:PATH`, against a real OpenSSH server on
//! 127.0.0.1 (the `Sshd` fixture). The far side is the `trainui` built
//! here, named by TRAINUI_REMOTE_PROGRAM since sshd gives a session a
//! minimal PATH.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{
    SpawnForTest, Spawned, events_of, events_so_far, program, status, tiny_run_std, trainui,
    wait_exit, wait_for, wait_for_event,
};
use crate::sshd::Sshd;

/// Generous: the machine may be busy with other tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server, and a folder of this test's own for runs, scripts and the
/// near side's copies.
struct Remote {
    sshd: Sshd,
    dir: tempfile::TempDir,
}

impl Remote {
    fn start() -> Self {
        Self {
            sshd: Sshd::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the near side keeps its copies (TRAINUI_REMOTE_CACHE).
    fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// The near side's copy of the run at the absolute path `run`.
    fn copy_of(&self, run: &Path) -> PathBuf {
        self.cache()
            .join(self.sshd.host())
            .join(run.strip_prefix("/").unwrap())
    }

    /// `trainui-test:/abs/path`.
    fn remote(&self, run: &Path) -> String {
        format!("{}:{}", self.sshd.host(), run.display())
    }

    /// The variables that point trainui at this server and at the far
    /// program, with `ssh_command` as TRAINUI_SSH_COMMAND.
    fn env_with(&self, ssh_command: &str, far_program: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("TRAINUI_SSH_COMMAND", ssh_command.to_owned()),
            (
                "TRAINUI_REMOTE_PROGRAM",
                far_program.to_string_lossy().into_owned(),
            ),
            (
                "TRAINUI_REMOTE_CACHE",
                self.cache().to_string_lossy().into_owned(),
            ),
        ]
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        self.env_with(&self.sshd.ssh_command(), &program("trainui"))
    }

    /// `trainui ARGS` with this server's variables.
    fn trainui(&self, args: &[&str]) -> Output {
        trainui_with(&self.env(), args)
    }

    /// A far program that is `trainui` with TRAINUI_TEST_FAR set to this
    /// test's folder, so that [`Remote::kill_far_side`] finds the far
    /// sides of this test alone.
    fn marked_far_program(&self) -> PathBuf {
        let script = self.path("far-trainui");
        write_script(
            &script,
            &format!(
                "#!/bin/sh\nTRAINUI_TEST_FAR={} exec {} \"$@\"\n",
                quote(&self.dir.path().to_string_lossy()),
                quote(&program("trainui").to_string_lossy())
            ),
        );
        script
    }

    /// The pids of this test's far sides (`serve --stdio` started through
    /// [`Remote::marked_far_program`]).
    fn far_sides(&self) -> Vec<u32> {
        let marker = format!("TRAINUI_TEST_FAR={}", self.dir.path().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&b"serve".as_slice())
                    && args.contains(&b"--stdio".as_slice())
                    && environ
                        .split(|b| *b == 0)
                        .any(|var| var == marker.as_bytes())
            })
            .filter(|pid| !crate::common::gone(*pid))
            .collect()
    }

    /// Kills this test's far sides with SIGKILL; their pids.
    fn kill_far_side(&self) -> Vec<u32> {
        let pids = self.far_sides();
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        pids
    }
}

/// `trainui ARGS` with the variables `env`.
fn trainui_with(env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut command = trainui();
    command.args(args).timeout(Duration::from_mins(2));
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// A shell command line that runs `trainui ARGS` with the variables
/// `env`, for tmux.
fn shell_line(env: &[(&'static str, String)], args: &[String]) -> String {
    let mut line = String::from("env");
    for (key, value) in env {
        line.push(' ');
        line.push_str(&quote(&format!("{key}={value}")));
    }
    line.push(' ');
    line.push_str(&quote(&program("trainui").to_string_lossy()));
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

/// `s` as one word for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A tiny run that goes on until it is stopped.
fn endless_run(run: &Path) -> Spawned {
    tiny_run_std(
        run,
        &[
            "train.max_steps=1000000",
            "eval.eval_steps=0",
            "eval.samples=1",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test()
}

/// A tiny run of `steps` steps, finished.
fn finished_run(run: &Path, steps: u32) {
    let output = tiny_run_std(
        run,
        &[&format!("train.max_steps={steps}"), "eval.eval_steps=0"],
    )
    .output()
    .unwrap();
    crate::common::assert_success(&output);
}

/// Stops a run with a local `ctl stop` and waits for it to end cleanly.
fn stop(run: &Path, job: &mut Spawned) {
    let output = trainui().arg("ctl").arg(run).arg("stop").output().unwrap();
    crate::common::assert_success(&output);
    assert_eq!(wait_exit(job, Duration::from_mins(1)).code(), Some(0));
}

fn stdout(output: &Output) -> String {
    crate::common::assert_success(output);
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The control events a run recorded for `command` (its ctl word).
fn controls(run: &Path, command: &str) -> Vec<serde_json::Value> {
    events_of(run, "control")
        .into_iter()
        .filter(|e| e["command"] == command)
        .collect()
}

fn acks(run: &Path, command: &str) -> Vec<serde_json::Value> {
    events_of(run, "command_ack")
        .into_iter()
        .filter(|e| e["command"] == command)
        .collect()
}

/// The step the header shows (`step 5500/1000000`).
fn shown_step(screen: &str) -> Option<u64> {
    let at = screen.find(" step ")? + " step ".len();
    let digits: String = screen[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Waits until the copy's events.jsonl is the run's, byte for byte.
fn wait_for_identical_copy(run: &Path, copy: &Path) {
    let read = |dir: &Path| std::fs::read(dir.join("events.jsonl")).unwrap_or_default();
    let caught_up = wait_until(DEADLINE, || read(run) == read(copy));
    if !caught_up {
        let (ours, theirs) = (read(copy), read(run));
        let same = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        panic!(
            "the copy {} is not the run's events.jsonl: {} bytes against {}, the same up to byte \
             {same}; there the copy has {:?} and the run {:?}",
            copy.display(),
            ours.len(),
            theirs.len(),
            String::from_utf8_lossy(&ours[same..(same + 200).min(ours.len())]),
            String::from_utf8_lossy(&theirs[same..(same + 200).min(theirs.len())]),
        );
    }
}

/// Polls `ready` every 50 ms for `timeout`; whether it held.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A tmux server of this test's own running one command in a 100x30 pane.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, command: &str) -> Self {
        let tmux = Self {
            socket: format!("trainui-remote-{tag}-{}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (./dev test installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tui"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "tui", keys]);
    }

    /// Waits `timeout` for the screen to pass `ready`; fails showing the
    /// last screen.
    fn wait_within(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        // A trainui that ended says so (`echo WATCH_EXIT=$?`): no use waiting.
        wait_until(timeout, || {
            screen = self.screen();
            ready(&screen) || screen.contains("WATCH_EXIT=")
        });
        assert!(ready(&screen), "no {what} on the screen:\n{screen}");
        screen
    }

    fn wait_for_screen(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.wait_within(what, DEADLINE, ready)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn the_test_sshd_runs_a_command_on_loopback() {
    let sshd = Sshd::start();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {} 'echo ok; echo $SSH_CONNECTION'",
            sshd.ssh_command(),
            sshd.host()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ok"), "{text}");
    // The session came over the loopback to the fixture's port.
    let connection: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(connection[0], "127.0.0.1", "{text}");
    assert_eq!(connection[2], "127.0.0.1", "{text}");
    assert_eq!(connection[3], sshd.port().to_string(), "{text}");

    // The far side can run the trainui built here, by its absolute path.
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {} {} --version",
            sshd.ssh_command(),
            sshd.host(),
            quote(&program("trainui").to_string_lossy())
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let version = stdout(&output);
    assert!(version.starts_with("trainui "), "{version}");
}

#[test]
fn watch_shows_a_remote_run_and_its_keys_steer_it() {
    let remote = Remote::start();
    let run = remote.path("run");
    let mut job = endless_run(&run);
    wait_for_event(&run, "step");
    let command = format!(
        "{}; echo WATCH_EXIT=$?; sleep 120",
        shell_line(&remote.env(), &["watch".into(), remote.remote(&run)])
    );
    let tmux = Tmux::start("watch", &command);

    // The run, its steps advancing.
    let screen = tmux.wait_for_screen("the remote run training", |s| {
        s.contains("TRAINING") && shown_step(s).is_some()
    });
    let first = shown_step(&screen).unwrap();
    tmux.wait_for_screen("its steps advancing", |s| {
        shown_step(s).is_some_and(|step| step > first)
    });

    // `p` pauses the run itself: its own events.jsonl answers the command.
    tmux.keys("p");
    wait_for("the run's pause", DEADLINE, || {
        !acks(&run, "pause").is_empty()
    });
    let paused = controls(&run, "pause");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["accepted"], true, "{paused:?}");
    wait_for("the paused status", DEADLINE, || {
        status(&run)["state"] == "paused"
    });
    tmux.wait_for_screen("the run paused", |s| s.contains("PAUSED"));

    // `p` again resumes it.
    tmux.keys("p");
    wait_for("the run's resume", DEADLINE, || {
        !acks(&run, "resume").is_empty()
    });
    assert_eq!(controls(&run, "resume").len(), 1);
    tmux.wait_for_screen("the run training again", |s| s.contains("TRAINING"));

    // Quitting watch leaves the run alone.
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
    assert!(job.try_wait().unwrap().is_none(), "the run goes on");
    assert_eq!(
        controls(&run, "pause").len(),
        1,
        "one pause, delivered once"
    );
    stop(&run, &mut job);
}

#[test]
fn ctl_and_status_reach_a_remote_run() {
    let remote = Remote::start();
    let run = remote.path("run");
    let mut job = endless_run(&run);
    wait_for_event(&run, "step");
    let far = remote.remote(&run);

    // `status` says the run lives, and where it is.
    let said = stdout(&remote.trainui(&["status", &far]));
    assert!(
        said.contains(&format!("(pid {}, running)", job.id())),
        "{said}"
    );
    assert!(said.contains("state      training"), "{said}");

    // `ctl pause` is answered by the run itself.
    let answer = stdout(&remote.trainui(&["ctl", &far, "pause", "--timeout", "30"]));
    assert!(answer.starts_with("pause: paused at step"), "{answer}");
    let paused = controls(&run, "pause");
    assert_eq!(
        paused.len(),
        1,
        "one command file, delivered once: {paused:?}"
    );
    assert_eq!(paused[0]["accepted"], true);
    let id = paused[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(acks(&run, "pause").len(), 1);
    wait_for("the paused status", DEADLINE, || {
        status(&run)["state"] == "paused"
    });
    // The answer ctl read came from its copy of the run's events.
    let copied = controls(&remote.copy_of(&run), "pause");
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0]["id"], id.as_str());

    // Paused, the remote status is the local one.
    let local = stdout(&trainui().arg("status").arg(&run).output().unwrap());
    let said = stdout(&remote.trainui(&["status", &far]));
    for field in ["state", "step", "loss", "checkpoint", "last"] {
        let line = |text: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(field))
                .map(str::to_owned)
        };
        assert_eq!(line(&said), line(&local), "{field}: {said}\n{local}");
    }
    assert!(said.contains("state      paused"), "{said}");

    // Resume and stop, from here too.
    let answer = stdout(&remote.trainui(&["ctl", &far, "resume", "--timeout", "30"]));
    assert!(answer.starts_with("resume: resumed at step"), "{answer}");
    let answer = stdout(&remote.trainui(&["ctl", &far, "stop", "--timeout", "30"]));
    assert!(answer.starts_with("stop: stopping at step"), "{answer}");
    assert_eq!(wait_exit(&mut job, Duration::from_mins(1)).code(), Some(0));
    assert_eq!(controls(&run, "pause").len(), 1);
    assert_eq!(controls(&run, "resume").len(), 1);
    assert_eq!(controls(&run, "stop").len(), 1);
    let said = stdout(&remote.trainui(&["status", &far]));
    assert!(said.contains("state      stopped"), "{said}");
}

#[test]
fn watch_compares_a_remote_run_and_a_local_one() {
    let remote = Remote::start();
    let (far_run, near_run) = (remote.path("far-run"), remote.path("near-run"));
    finished_run(&far_run, 30);
    finished_run(&near_run, 40);
    let command = format!(
        "{}; echo WATCH_EXIT=$?; sleep 120",
        shell_line(
            &remote.env(),
            &[
                "watch".into(),
                remote.remote(&far_run),
                near_run.to_string_lossy().into_owned(),
            ]
        )
    );
    let tmux = Tmux::start("compare", &command);

    // One table row per run, each with its own final step.
    let row = |screen: &str, name: &str| {
        screen
            .lines()
            .find(|l| l.starts_with('│') && l.contains(name) && l.contains("FINISHED"))
            .map(str::to_owned)
    };
    let screen = tmux.wait_for_screen("both runs in the table", |s| {
        s.contains("2 of 2 runs") && row(s, "far-run").is_some() && row(s, "near-run").is_some()
    });
    assert!(
        row(&screen, "far-run").unwrap().contains("30/30"),
        "{screen}"
    );
    assert!(
        row(&screen, "near-run").unwrap().contains("40/40"),
        "{screen}"
    );
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
}

#[test]
fn a_dropped_connection_reconnects_with_no_event_lost_or_doubled() {
    let remote = Remote::start();
    let run = remote.path("run");
    let mut job = endless_run(&run);
    wait_for_event(&run, "step");
    let env = remote.env_with(&remote.sshd.ssh_command(), &remote.marked_far_program());
    let command = format!(
        "{}; echo WATCH_EXIT=$?; sleep 120",
        shell_line(&env, &["watch".into(), remote.remote(&run)])
    );
    let tmux = Tmux::start("reconnect", &command);
    let screen = tmux.wait_for_screen("the remote run training", |s| {
        s.contains("TRAINING") && shown_step(s).is_some()
    });
    let before = shown_step(&screen).unwrap();

    // The far side dies while the run writes on.
    let killed = remote.kill_far_side();
    assert_eq!(killed.len(), 1, "one far side for the host: {killed:?}");
    tmux.wait_within("the lost connection", Duration::from_secs(10), |s| {
        s.contains("connection lost, reconnecting")
    });

    // A new far side, and the run again, further on.
    wait_for("a new far side", DEADLINE, || {
        remote.far_sides().iter().any(|pid| !killed.contains(pid))
    });
    tmux.wait_for_screen("the run again", |s| {
        !s.contains("connection lost")
            && s.contains("TRAINING")
            && shown_step(s).is_some_and(|step| step > before)
    });

    // The run ends; its copy holds every event once.
    stop(&run, &mut job);
    wait_for_identical_copy(&run, &remote.copy_of(&run));
    tmux.wait_for_screen("the run stopped", |s| s.contains("STOPPED"));
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
}

/// Passes the near side's lines to `ssh ARGS`; once a line delivering a
/// `pause` went through, passes none of the far side's answers back, waits
/// until the run's events.jsonl (EVENTS) answers that command (half a
/// second if the line names none), then kills ssh and ends: a connection
/// lost after the far side placed the command and before its answer came
/// back. The line it cut at is written to CUT_FILE.
const CUTTING_FILTER: &str = r#"
import json, os, subprocess, sys, threading, time

cut_file, events, command = sys.argv[1], sys.argv[2], sys.argv[3:]
ssh = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
cut = threading.Event()

def answers():
    while True:
        data = os.read(ssh.stdout.fileno(), 65536)
        if not data:
            break
        if not cut.is_set():
            os.write(1, data)

def answered(line):
    try:
        name = json.loads(line)["deliver"]["name"]
    except (ValueError, KeyError, TypeError):
        time.sleep(0.5)
        return
    needle = ('"id":"%s"' % name[: -len(".json")]).encode()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with open(events, "rb") as f:
                if needle in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)

threading.Thread(target=answers, daemon=True).start()
for line in iter(sys.stdin.buffer.readline, b""):
    cutting = b'"deliver"' in line and b"pause" in line
    if cutting:
        cut.set()
    ssh.stdin.write(line)
    ssh.stdin.flush()
    if cutting:
        with open(cut_file, "wb") as f:
            f.write(line)
        answered(line)
        ssh.kill()
        ssh.wait()
        os._exit(0)
ssh.stdin.close()
sys.exit(ssh.wait())
"#;

#[test]
fn a_command_in_flight_when_the_connection_drops_is_applied_exactly_once() {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "python3 is missing (apt-get install python3)"
    );
    let remote = Remote::start();
    let run = remote.path("run");
    let mut job = endless_run(&run);
    wait_for_event(&run, "step");

    // ssh, whose connections are cut after a `pause` until one was.
    let (filter, cut, calls) = (
        remote.path("filter.py"),
        remote.path("cut"),
        remote.path("ssh-calls"),
    );
    std::fs::write(&filter, CUTTING_FILTER).unwrap();
    let config = quote(&remote.sshd.config().to_string_lossy());
    let wrapper = remote.path("ssh");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\nif [ -e {cut} ]; then exec ssh -F {config} \"$@\"; fi\n\
             exec {python} {filter} {cut} {events} ssh -F {config} \"$@\"\n",
            calls = quote(&calls.to_string_lossy()),
            cut = quote(&cut.to_string_lossy()),
            events = quote(&run.join("events.jsonl").to_string_lossy()),
            python = python.display(),
            filter = quote(&filter.to_string_lossy()),
        ),
    );
    let env = remote.env_with(&wrapper.to_string_lossy(), &program("trainui"));

    let output = trainui_with(
        &env,
        &["ctl", &remote.remote(&run), "pause", "--timeout", "30"],
    );
    let answer = stdout(&output);
    assert!(answer.starts_with("pause: paused at step"), "{answer}");
    let cut_line = std::fs::read_to_string(&cut).unwrap_or_else(|_| {
        panic!(
            "no line delivering the pause went over ssh; ssh was started with: {:?}",
            std::fs::read_to_string(&calls)
        )
    });
    let connections = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert!(
        connections >= 2,
        "the answer came after a reconnect: {connections} connections"
    );

    // One command file, one control event, one pause.
    let paused = controls(&run, "pause");
    assert_eq!(paused.len(), 1, "{paused:?}");
    let id = paused[0]["id"].as_str().unwrap();
    assert!(
        cut_line.contains(id),
        "the cut command is the one applied: {cut_line}"
    );
    assert_eq!(paused[0]["accepted"], true);
    assert_eq!(acks(&run, "pause").len(), 1);
    wait_for("the paused status", DEADLINE, || {
        status(&run)["state"] == "paused"
    });

    // Still once, a while later: nothing was written to the spool again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(controls(&run, "pause").len(), 1);
    assert!(
        events_so_far(&run)
            .iter()
            .filter(|e| e["type"] == "control")
            .all(|e| e["id"] == id),
        "no other command reached the run"
    );
    stop(&run, &mut job);
}

#[test]
fn a_version_mismatch_is_said_naming_both_versions() {
    let remote = Remote::start();
    let run = remote.path("run");
    finished_run(&run, 10);
    // A far side of another version: it answers any hello with its own.
    let far = remote.path("other-trainui");
    write_script(
        &far,
        "#!/bin/sh\n\
         echo '{\"hello\":{\"wire\":77,\"version\":\"9.8.7\",\"protocol\":66}}'\n\
         exec cat > /dev/null\n",
    );
    let env = remote.env_with(&remote.sshd.ssh_command(), &far);
    let ours = stdout(&trainui().arg("--version").output().unwrap());
    let ours = ours.split_whitespace().nth(1).unwrap();
    for args in [
        vec!["status".to_owned(), remote.remote(&run)],
        vec![
            "ctl".to_owned(),
            remote.remote(&run),
            "pause".to_owned(),
            "--timeout".to_owned(),
            "30".to_owned(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = trainui_with(&env, &args);
        crate::common::assert_runtime_error(&output, &["9.8.7", ours]);
    }
    assert!(
        !run.join("control").exists()
            || std::fs::read_dir(run.join("control")).unwrap().count() == 0,
        "nothing was delivered"
    );
}

/// A rank's heartbeat file as a rank on `host` writes it, its last beat
/// `age` seconds ago.
fn rank_file(run: &Path, rank: u32, host: &str, step: u64, age: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let beat = serde_json::json!({
        "v": trainui_protocol::events::SCHEMA_VERSION,
        "rank": rank,
        "world_size": 2,
        "local_rank": 0,
        "host": host,
        "pid": 4000 + rank,
        "phase": "training",
        "step": step,
        "state": "training",
        "beat": humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_secs_f64(now - age)
        )
        .to_string(),
        "beat_unix": now - age,
        "written_unix": now - age,
    });
    let dir = run.join("ranks");
    std::fs::create_dir_all(&dir).unwrap();
    let temp = dir.join(format!(".rank-{rank}.tmp"));
    std::fs::write(&temp, beat.to_string()).unwrap();
    std::fs::rename(temp, dir.join(format!("rank-{rank}.json"))).unwrap();
}

#[test]
fn as_one_shows_a_job_across_two_nodes_whole_and_the_rank_that_fell_silent() {
    let remote = Remote::start();
    // Node 1 holds the run's events and status and rank 0's file; node 2,
    // which shares no filesystem with it, only rank 1's.
    let (node1, node2) = (remote.path("node1/run"), remote.path("node2/run"));
    let mut job = endless_run(&node1);
    wait_for_event(&node1, "step");
    rank_file(&node2, 1, "node2", 7, 600.0);
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heart = {
        let (beating, node1) = (std::sync::Arc::clone(&beating), node1.clone());
        std::thread::spawn(move || {
            while beating.load(std::sync::atomic::Ordering::Relaxed) {
                rank_file(&node1, 0, "node1", 50, 0.0);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // Two destinations (two logins of one test server) stand for the
    // two nodes: one connection each.
    let node2_path = format!("root@{}:{}", remote.sshd.host(), node2.display());
    let command = format!(
        "{}; echo WATCH_EXIT=$?; sleep 120",
        shell_line(
            &remote.env(),
            &[
                "watch".into(),
                remote.remote(&node1),
                node2_path,
                "--as-one".into()
            ]
        )
    );
    let tmux = Tmux::start("as-one", &command);
    let screen = tmux.wait_for_screen("both nodes' ranks, rank 1 silent", |s| {
        s.contains("r0 node1:4000 training @50")
            && s.contains("r1 node2:4001 training @7 SILENT")
            && s.contains("TRAINING")
    });
    // The header names the rank that went silent first.
    assert!(screen.contains("RANK 1 SILENT since"), "{screen}");
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
    beating.store(false, std::sync::atomic::Ordering::Relaxed);
    heart.join().unwrap();
    stop(&node1, &mut job);
    // One path alone is refused, as is a local one.
    let output = remote.trainui(&["watch", "--as-one", &remote.remote(&node1)]);
    crate::common::assert_user_error(&output, &["--as-one takes the run on two machines"]);
}

#[test]
fn a_host_that_cannot_be_reached_is_shown_so_and_the_other_runs_stay_live() {
    let remote = Remote::start();
    let run = remote.path("run");
    let mut job = endless_run(&run);
    wait_for_event(&run, "step");
    // Port 1 of the test host: nothing listens there.
    let nowhere = format!(
        "ssh://{}:1/{}",
        remote.sshd.host(),
        remote.path("far").display()
    );
    let command = format!(
        "{}; echo WATCH_EXIT=$?; sleep 120",
        shell_line(
            &remote.env(),
            &["watch".into(), nowhere, run.to_string_lossy().into_owned()]
        )
    );
    let tmux = Tmux::start("unreachable", &command);
    let screen = tmux.wait_for_screen("the unreachable host", |s| {
        s.contains("cannot connect, trying again")
    });
    let row = |screen: &str| {
        screen
            .lines()
            .find(|l| l.starts_with('│') && l.contains(" run ") && l.contains("training"))
            .map(str::to_owned)
    };
    let first = row(&screen).unwrap_or_else(|| panic!("the local run's row:\n{screen}"));
    // The local run goes on being followed: its row changes.
    tmux.wait_for_screen("the local run moving on", |s| {
        row(s).is_some_and(|now| now != first)
    });
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
    stop(&run, &mut job);
}

#[test]
fn runs_diff_query_and_plot_read_runs_on_another_machine() {
    let remote = Remote::start();
    let folder = remote.path("sweep");
    for (name, rate) in [("lr-a", "0.001"), ("lr-b", "0.003")] {
        let output = tiny_run_std(
            &folder.join(name),
            &[
                "train.max_steps=20",
                "eval.eval_steps=0",
                &format!("train.learning_rate={rate}"),
            ],
        )
        .output()
        .unwrap();
        crate::common::assert_success(&output);
    }
    let far = |name: &str| remote.remote(&folder.join(name));
    let listed = stdout(&remote.trainui(&["runs", &remote.remote(&folder)]));
    for name in ["lr-a", "lr-b"] {
        let line = listed
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} listed:\n{listed}"));
        assert!(line.contains("20/20"), "{listed}");
        assert!(line.ends_with(&far(name)), "the remote path: {listed}");
    }
    assert!(listed.contains("train.learning_rate"), "{listed}");
    let diff = stdout(&remote.trainui(&["diff", &far("lr-a"), &far("lr-b")]));
    assert!(diff.contains("train.learning_rate"), "{diff}");
    assert!(diff.contains("0.001") && diff.contains("0.003"), "{diff}");
    // The whole history, line for line, as a local query prints it.
    let remote_csv = stdout(&remote.trainui(&["query", &far("lr-a"), "--csv"]));
    let local_csv = stdout(
        &trainui()
            .arg("query")
            .arg(folder.join("lr-a"))
            .arg("--csv")
            .output()
            .unwrap(),
    );
    assert_eq!(remote_csv, local_csv);
    assert_eq!(
        remote_csv.lines().count(),
        5,
        "a header and 4 logged steps: {remote_csv}"
    );
    let picture = remote.path("sweep.svg");
    let plotted = remote.trainui(&[
        "plot",
        &remote.remote(&folder),
        "--out",
        picture.to_str().unwrap(),
    ]);
    crate::common::assert_success(&plotted);
    let svg = std::fs::read_to_string(&picture).unwrap();
    assert!(
        svg.contains("lr-a") && svg.contains("lr-b"),
        "both runs drawn"
    );
    // A folder that is not there is named as the user wrote it.
    let missing = remote.path("missing");
    let output = remote.trainui(&["status", &remote.remote(&missing)]);
    crate::common::assert_user_error(
        &output,
        &[&format!(
            "{}: no such run directory",
            remote.remote(&missing)
        )],
    );
}

#[test]
fn a_far_side_without_trainui_says_how_to_name_it() {
    let remote = Remote::start();
    let env = remote.env_with(
        &remote.sshd.ssh_command(),
        &remote.path("no-such-dir/trainui"),
    );
    let output = trainui_with(&env, &["status", &remote.remote(&remote.path("run"))]);
    crate::common::assert_runtime_error(
        &output,
        &["on the far side's PATH", "TRAINUI_REMOTE_PROGRAM"],
    );
}
