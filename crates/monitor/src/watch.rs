//! `trainui watch RUN_DIR...`: the TUI fed by run directories instead of
//! an in-process trainer. It replays each run's events.jsonl, then follows
//! what is appended (the follower is `follow.rs`); its keys write command
//! files to the followed run's control spool. Several runs share one
//! screen: their curves in one chart, their figures in a table. Quitting
//! never affects a run.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::WatchArgs;
use crate::follow::{self, BACKLOG, attached_app};
use crate::remote::{Depth, Remote};
use crate::run_filter::Filter;
use crate::run_list;
use crate::tui;
use crate::tui::app::App;
use crate::tui::board::Board;
use trainui_protocol::control;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, Event};

/// The most runs one screen compares: the table lists them all (it
/// scrolls) and the chart draws a few of them; each run costs two threads
/// and its reads.
const MAX_RUNS: usize = 256;

/// The run directories `paths` name, each once, in order, that pass every
/// filter (as `trainui runs --where` chooses them). A path that is not a
/// run itself but holds runs stands for them (those at most `depth`
/// folders below it, in path order). A lone path that is neither is a run
/// that has not started yet; among several (a glob), files and folders
/// that are no runs are left out.
pub fn targets(paths: &[PathBuf], depth: usize, filters: &[Filter]) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let lone = paths.len() == 1;
    for path in paths {
        if !path.is_dir() {
            if lone {
                return Err(Error::Usage(format!(
                    "{}: no such run directory",
                    path.display()
                )));
            }
            continue;
        }
        // A remote run is shown even while its host cannot be reached.
        let found = if run_list::is_run(path) || crate::remote::is_copy(path) {
            vec![path.clone()]
        } else {
            let inside = run_list::find(path, depth)?;
            if inside.is_empty() && lone {
                vec![path.clone()]
            } else {
                inside
            }
        };
        for dir in found {
            // `runs/a`, `./runs/a` and a link to it are one run.
            let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if !dirs.iter().any(|(_, seen)| *seen == real) {
                dirs.push((dir, real));
            }
        }
    }
    if dirs.is_empty() {
        return Err(Error::Usage(format!(
            "no run directory among the {} paths given (trainui runs DIR lists runs)",
            paths.len()
        )));
    }
    let found: Vec<PathBuf> = dirs.iter().map(|(dir, _)| dir.clone()).collect();
    let chosen = run_list::select(&found, filters);
    if chosen.is_empty() {
        let filters: Vec<String> = filters.iter().map(|f| format!("--where {f}")).collect();
        return Err(Error::Usage(format!(
            "none of the {} runs found passes {} (trainui runs DIR {} lists them)",
            found.len(),
            filters.join(" "),
            filters.join(" ")
        )));
    }
    dirs.retain(|(dir, _)| chosen.contains(dir));
    if dirs.len() > MAX_RUNS {
        return Err(Error::Usage(format!(
            "{} runs: watch compares at most {MAX_RUNS} at once; name the ones to compare \
             (trainui runs DIR lists them; --where chooses)",
            dirs.len()
        )));
    }
    Ok(dirs.into_iter().map(|(dir, _)| dir).collect())
}

/// Two runs of one name (runs/a/exp, runs/b/exp) go by their paths, which
/// their events replayed do not undo.
fn label_namesakes(apps: &mut [App], run_dirs: &[PathBuf]) {
    let names: Vec<String> = apps
        .iter()
        .map(|app| app.run.status.run_name.clone())
        .collect();
    for (app, run_dir) in apps.iter_mut().zip(run_dirs) {
        if names
            .iter()
            .filter(|&name| *name == app.run.status.run_name)
            .count()
            > 1
        {
            app.set_label(crate::remote::shown(run_dir));
        }
    }
}

/// Runs the attached TUI until `q`, for one run or several side by side;
/// its keys become command files in the followed run's control spool.
/// `plain` (or NO_COLOR) turns colours off.
pub fn run(args: &WatchArgs) -> Result<()> {
    let plain = args.plain;
    let as_one = if args.as_one {
        Some(as_one_targets(&args.run_dirs)?)
    } else {
        None
    };
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "watch needs a terminal; for scripts use `trainui status` or read events.jsonl".into(),
        ));
    }
    let (paths, remote) = if let Some(targets) = as_one {
        let mut remote = Remote::new()?;
        let copy = remote.follow_as_one(&targets, Depth::Thinned)?;
        (vec![copy], Some(remote))
    } else {
        crate::remote::localize_folders(&args.run_dirs, args.depth, Depth::Thinned)?
    };
    // Hosts that cannot be reached now are shown so, and tried again.
    let _ = remote.as_ref().map(Remote::troubles);
    let run_dirs =
        crate::remote::naming(remote.as_ref(), targets(&paths, args.depth, &args.filters))?;
    let color = trainui_protocol::lines::colors_wanted(plain);
    let mut followed = Vec::new();
    let mut apps = Vec::new();
    for run_dir in &run_dirs {
        let reads_ahead = if run_dirs.len() > 1 { 1 } else { BACKLOG };
        let events = follow::follow_ahead(run_dir, reads_ahead).map_err(|e| {
            Error::Failed(format!(
                "cannot read the events of {}: {e}",
                run_dir.display()
            ))
        })?;
        let liveness = follow::liveness::watch_liveness(run_dir).map_err(|e| {
            Error::Failed(format!(
                "cannot watch the process of {}: {e}",
                run_dir.display()
            ))
        })?;
        followed.push((events, liveness));
        let mut app = attached_app(run_dir, color);
        app.view.ascii = !trainui_protocol::lines::unicode_wanted(plain);
        app.resume = Some(
            trainui_protocol::text::escape(&crate::remote::resume_command(run_dir)).into_owned(),
        );
        apps.push(app);
    }
    label_namesakes(&mut apps, &run_dirs);
    let mut records: Vec<fn(&Event) -> Option<String>> = vec![|_| None; run_dirs.len()];
    let mut sends: Vec<_> = run_dirs
        .iter()
        .map(|run_dir| {
            move |command: Command| {
                control::send(run_dir, &command)
                    .err()
                    .map(|e| e.to_string())
            }
        })
        .collect();
    let mut feeds: Vec<tui::Feed> = followed
        .iter()
        .zip(records.iter_mut().zip(sends.iter_mut()))
        .map(|((events, liveness), (record, send))| tui::Feed {
            events,
            liveness: Some(liveness),
            record,
            send,
        })
        .collect();
    let mut board = Board::new(&mut apps);
    if run_dirs.len() > 1 {
        let settings: Vec<_> = run_dirs
            .iter()
            .map(|dir| run_list::entry(dir).settings())
            .collect();
        board.set_settings(&settings);
    }
    tui::in_terminal(|terminal| {
        let input = &mut tui::TerminalInput::default();
        tui::run_board_sampled(terminal, &mut board, input, &mut feeds)
    })?;
    for app in board.runs.iter() {
        trainui_protocol::process::say(app.farewell());
    }
    drop(remote);
    Ok(())
}

/// `--as-one`: the paths are one run on several machines, its events from
/// the first and the rank files from all.
fn as_one_targets(paths: &[PathBuf]) -> Result<Vec<crate::remote::Target>> {
    let targets: Vec<crate::remote::Target> = paths
        .iter()
        .map(|path| {
            crate::remote::target(path).ok_or_else(|| {
                Error::Usage(format!(
                    "--as-one takes the run on each machine as host:PATH; {} is a local path",
                    path.display()
                ))
            })
        })
        .collect::<Result<_>>()?;
    if targets.len() < 2 {
        return Err(Error::Usage(
            "--as-one takes the run on two machines or more (node1:RUN node2:RUN)".into(),
        ));
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::DEFAULT_DEPTH as DEPTH;
    use trainui_protocol::events::{RunState, RunStatus};
    use trainui_protocol::rundir;

    #[test]
    fn a_folder_of_runs_stands_for_its_runs_in_name_order_and_each_run_comes_once() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        for (name, file) in [
            ("b", rundir::EVENTS_FILE),
            ("a", rundir::STATUS_FILE),
            ("not-a-run", "notes.txt"),
        ] {
            let path = runs.join(name).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        std::fs::write(runs.join("notes.txt"), "").unwrap();
        let (a, b) = (runs.join("a"), runs.join("b"));
        let again = runs.join("b/../b");
        let got = targets(&[runs.clone(), again], DEPTH, &[]).unwrap();
        assert_eq!(got, [a.clone(), b.clone()], "b once, however named");
        // A glob's files and folders that are no runs are left out.
        let glob = [a.clone(), runs.join("not-a-run"), runs.join("notes.txt")];
        assert_eq!(targets(&glob, DEPTH, &[]).unwrap(), [a]);
        // A run directory stands for itself.
        assert_eq!(targets(std::slice::from_ref(&b), DEPTH, &[]).unwrap(), [b]);
        // A lone folder that holds no run is a run that has not started.
        let fresh = dir.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        assert_eq!(
            targets(std::slice::from_ref(&fresh), DEPTH, &[]).unwrap(),
            [fresh]
        );
        let missing = dir.path().join("missing");
        let err = targets(std::slice::from_ref(&missing), DEPTH, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{}: no such run directory", missing.display())),
            "{err}"
        );
        let err = targets(&[runs.join("notes.txt"), missing], DEPTH, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no run directory among the 2 paths"), "{err}");
    }

    #[test]
    fn runs_of_one_name_go_by_their_paths_through_their_replayed_starts() {
        let dir = tempfile::tempdir().unwrap();
        let run_dirs = ["a/exp", "b/exp", "c/other"].map(|name| dir.path().join(name));
        let mut apps: Vec<App> = run_dirs
            .iter()
            .map(|run_dir| {
                std::fs::create_dir_all(run_dir).unwrap();
                attached_app(run_dir, false)
            })
            .collect();
        label_namesakes(&mut apps, &run_dirs);
        for app in &mut apps {
            // A run's events name it by its folder.
            app.apply(&trainui_protocol::events::examples::started("exp", 100));
        }
        let names: Vec<&str> = apps
            .iter()
            .map(|a| a.run.status.run_name.as_str())
            .collect();
        let (a, b) = (run_dirs[0].display(), run_dirs[1].display());
        assert_eq!(names, [a.to_string().as_str(), &b.to_string(), "exp"]);
    }

    #[test]
    fn the_filters_of_runs_choose_the_runs_found_below_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, state: RunState, learning_rate: f64| {
            let run = dir.path().join(name);
            std::fs::create_dir_all(run.join("status")).unwrap();
            let mut status = RunStatus::new(name.to_owned(), 100);
            status.state = state;
            let status = serde_json::to_vec(&status).unwrap();
            std::fs::write(run.join(rundir::STATUS_FILE), status).unwrap();
            let config = serde_json::json!({"train": {"learning_rate": learning_rate}});
            std::fs::write(run.join(rundir::CONFIG_FILE), config.to_string()).unwrap();
            run
        };
        let a = write("a", RunState::Training, 1e-3);
        write("b", RunState::Finished, 1e-3);
        let c = write("sweep/c", RunState::Training, 1e-4);
        // More runs than a screen holds, which the filters leave out.
        for index in 0..MAX_RUNS {
            write(&format!("old/run-{index:02}"), RunState::Failed, 1e-2);
        }
        let filter = |text: &str| text.parse::<Filter>().unwrap();
        let root = [dir.path().to_owned()];
        let training = [filter("state=training")];
        assert_eq!(targets(&root, DEPTH, &training).unwrap(), [a.clone(), c]);
        assert_eq!(targets(&root, 1, &training).unwrap(), [a]);
        let err = targets(&root, DEPTH, &[filter("train.learning_rate>1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "none of the {} runs found passes --where train.learning_rate>1",
                MAX_RUNS + 3
            )),
            "{err}"
        );
        let err = targets(&root, DEPTH, &[]).unwrap_err().to_string();
        assert!(err.contains("--where chooses"), "{err}");
    }

    #[test]
    fn more_runs_than_one_screen_tells_apart_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for index in 0..=MAX_RUNS {
            let run = dir.path().join(format!("run-{index:02}"));
            std::fs::create_dir(&run).unwrap();
            std::fs::write(run.join(rundir::EVENTS_FILE), "").unwrap();
        }
        let err = targets(&[dir.path().to_owned()], DEPTH, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{} runs: watch compares at most {MAX_RUNS}",
                MAX_RUNS + 1
            )),
            "{err}"
        );
    }
}
