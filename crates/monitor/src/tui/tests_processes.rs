//! The job's processes and how a run's end reads: the system pane of a job
//! shows each rank's process (pid, what it does, CPU, memory, GPU), not
//! trainui's own; once the job has ended, the header, the title and the
//! ranks say how it ended; and the restart key says only what is true of
//! the kind of run on the screen.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Msg, Owner};
use super::keys::{Audience, PANES};
use super::process::{JobProcess, Liveness};
use super::render;
use trainui_protocol::events::{Event, Phase, Producer, RankBeat, RunInfo, RunState};
use trainui_protocol::ranks::{RankView, StopSignal, Verdict};

fn text(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render::render(frame, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// A two-rank Python job at step 120, as `trainui run` shows it.
fn job(owner: Owner) -> App {
    let mut app = App::new("job".into(), 1000, false);
    app.owner = owner;
    let Event::Started(info) = trainui_protocol::events::examples::started("job", 1000) else {
        unreachable!()
    };
    app.apply(&Event::Started(Box::new(RunInfo {
        producer: Some(Producer {
            name: "trainui-python".into(),
            version: "0.1.0".into(),
            framework: "pytorch".into(),
            world_size: 2,
        }),
        ..*info
    })));
    app.apply(&Event::State {
        step: 120,
        state: RunState::Training,
    });
    app
}

fn here() -> String {
    trainui_protocol::ranks::this_host().unwrap_or_default()
}

fn rank(rank: u32, phase: Phase, step: u64, verdict: Verdict) -> RankView {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    RankView {
        beat: RankBeat {
            v: 3,
            rank,
            world_size: 2,
            local_rank: rank,
            host: here(),
            pid: 4000 + rank,
            phase,
            step,
            state: RunState::Training,
            beat: "2026-11-29T15:00:01.000Z".into(),
            beat_unix: now - 1.0,
            written_unix: now,
            signal: None,
        },
        silent_secs: 1.0,
        verdict,
    }
}

fn reading(pid: u32, cpu: f64, gib_tenths: u64, gpu: Option<u64>) -> JobProcess {
    JobProcess {
        pid,
        name: "python".into(),
        cpu: Some(cpu),
        memory: Some(gib_tenths * (1 << 30) / 10),
        gpu_memory: gpu
            .map(|tenths| (0, tenths * (1 << 30) / 10))
            .into_iter()
            .collect(),
    }
}

#[test]
fn a_jobs_system_pane_shows_each_ranks_process_not_trainuis_own() {
    let mut app = job(Owner::Job);
    app.update(Msg::Liveness(Liveness::Ranks(vec![
        rank(0, Phase::Training, 120, Verdict::Alive),
        rank(1, Phase::Generating, 119, Verdict::Alive),
    ])));
    app.update(Msg::Liveness(Liveness::Processes(vec![
        reading(3999, 1.0, 3, None),
        reading(4000, 97.0, 12, Some(31)),
        reading(4001, 88.0, 11, None),
    ])));
    let shown = text(&app, 120, 40);
    assert!(!shown.contains("trainui 0.0 GiB"), "{shown}");
    for expected in [
        // The whole job, on the host line: its processes summed.
        "job 186% 2.6 GiB",
        "r0 pid 4000 training @120 1s",
        "cpu 97% · 1.2 GiB · gpu0 3.1 GiB",
        "r1 pid 4001 generating @119 1s",
        "cpu 88% · 1.1 GiB",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    // A job without rank files: the processes it started, each labelled.
    let mut plain = job(Owner::Job);
    plain.update(Msg::Liveness(Liveness::Processes(vec![reading(
        4242, 55.0, 7, None,
    )])));
    let shown = text(&plain, 120, 40);
    assert!(
        shown.contains("pid 4242 python cpu 55% · 0.7 GiB"),
        "{shown}"
    );
}

#[test]
fn after_the_job_ended_the_header_and_the_ranks_speak_of_its_end() {
    let mut app = job(Owner::Job);
    app.update(Msg::Liveness(Liveness::Ranks(vec![
        rank(
            0,
            Phase::Training,
            120,
            Verdict::Stopped(Some(StopSignal::Terminate)),
        ),
        rank(1, Phase::Training, 96, Verdict::Gone),
    ])));
    let running = text(&app, 120, 40);
    assert!(running.contains("the other ranks wait for it"), "{running}");
    app.update(Msg::Liveness(Liveness::JobEnded(1)));
    let shown = text(&app, 120, 40);
    for gone in ["wait for it", "TRAINING", " done", "eta"] {
        assert!(!shown.contains(gone), "{gone:?} after the end: {shown}");
    }
    for expected in [
        "EXITED 1",
        "the job exited with status 1 at step 120",
        "rank 1 ended without a word first",
        "r0 pid 4000 stopped by SIGTERM @120",
        "r1 pid 4001 training @96 GONE",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    // A failure says the failure, and still not what the ranks wait for.
    app.apply(&Event::Failed {
        step: 120,
        message: "rank 1 failed at step 96: boom".into(),
    });
    let shown = text(&app, 120, 40);
    assert!(
        shown.contains("FAILED: rank 1 failed at step 96: boom"),
        "{shown}"
    );
    assert!(!shown.contains("wait for it"), "{shown}");
}

#[test]
fn a_stall_and_r_promise_a_restart_only_where_one_comes() {
    let stall = Event::Stalled {
        step: 120,
        phase: Phase::Validating,
        silent_secs: 400.0,
        timeout_secs: 300.0,
    };
    let answer = |app: &mut App| {
        press(app, KeyCode::Char('r'));
        app.ack_text().unwrap_or_default().to_owned()
    };
    // trainui run without --restart-on-stall: nothing restarts the job.
    let mut plain = job(Owner::Job);
    plain.apply(&stall);
    let said = answer(&mut plain);
    let shown = text(&plain, 120, 40);
    for words in [&said, &shown] {
        assert!(!words.contains("supervisor"), "{words}");
    }
    assert!(said.contains("nothing restarts this job"), "{said}");
    assert!(
        shown.contains("nothing restarts this job; q stops it"),
        "{shown}"
    );
    // With it: trainui restarts it, and says so.
    let mut restarting = job(Owner::Job);
    restarting.restarts_on_stall = Some(2);
    restarting.apply(&stall);
    let said = answer(&mut restarting);
    assert!(said.contains("trainui restarts this job"), "{said}");
    assert!(
        text(&restarting, 120, 40).contains("trainui restarts the job"),
        "{}",
        text(&restarting, 120, 40)
    );
    // Watching a Python job: what started it, not a supervisor.
    let mut watching = job(Owner::Watcher);
    watching.apply(&stall);
    let said = answer(&mut watching);
    assert!(
        !said.contains("supervisor") && said.contains("--restart-on-stall"),
        "{said}"
    );
    // The help: the restart row only where r restarts, or trainui does.
    let restart_row = PANES
        .iter()
        .find(|b| b.label == "r")
        .expect("a restart row");
    assert_eq!(
        restart_row.help_for(Audience::Job { restarts: false }),
        None
    );
    assert!(
        restart_row
            .help_for(Audience::Job { restarts: true })
            .is_some_and(|h| h.contains("trainui restarts"))
    );
    assert_eq!(restart_row.help_for(Audience::Watcher), None);
    assert!(restart_row.help_for(Audience::Trainer).is_some());
    for owner in [Owner::Job, Owner::Watcher] {
        let mut app = job(owner);
        press(&mut app, KeyCode::Char('?'));
        let help = text(&app, 120, 60);
        assert!(!help.contains("supervisor"), "{owner:?}: {help}");
        assert!(!help.contains("restart a stalled run"), "{owner:?}: {help}");
    }
}

/// A job relaunched after a stall trains again: its new start clears the
/// stall from the screen, and the relaunch is told as news, not as a run
/// whose process is gone.
#[test]
fn a_relaunch_after_a_stall_clears_the_stall_and_says_what_it_does() {
    let mut app = App::new("job".into(), 100, false);
    app.owner = Owner::Job;
    app.restarts_on_stall = Some(1);
    app.apply(&trainui_protocol::events::examples::started("job", 100));
    app.apply(&Event::Stalled {
        step: 30,
        phase: Phase::Training,
        silent_secs: 5.0,
        timeout_secs: 5.0,
    });
    assert!(app.run.stall.is_some());
    // The stalled job's process ends (status 75) before the relaunch.
    app.update(Msg::Liveness(Liveness::Gone(super::process::GoneRun {
        pid: 7,
        since: "2026-12-07T03:44:08.000Z".into(),
        last_checkpoint: Some("ckpt-20".into()),
        resume: "the job's own command".into(),
    })));
    assert!(app.process.gone.is_none());
    app.update(Msg::Liveness(Liveness::Restarting(
        "the job stalled (exit status 75): restarting it (1 of 1) from ckpt-20".into(),
    )));
    let Event::Started(mut info) = trainui_protocol::events::examples::started("job", 100) else {
        unreachable!("examples::started is a start")
    };
    info.start_step = 20;
    info.resumed_from = Some("ckpt-20".into());
    app.apply(&Event::Started(info));
    assert!(app.run.stall.is_none(), "{:?}", app.run.stall);
    assert!(app.process.gone.is_none());
    let log: Vec<String> = app.run.log.iter().map(|line| line.text.clone()).collect();
    assert!(
        log.iter()
            .any(|line| line.contains("restarting it (1 of 1)")),
        "{log:?}"
    );
}
