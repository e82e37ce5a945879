//! `trainui plot`: real pictures of real curves, read back as a viewer
//! would (the PNG decoded, the SVG's text and colours).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::common::{as_another_user, trainui};
use trainui::plot::PALETTE;
use trainui_protocol::events::{Event, RunInfo, StepMetrics};
use trainui_protocol::{rundir, runfile};

/// A run directory of `steps` steps whose loss falls from `start`, with a
/// validation loss every 100 steps.
fn write_run(dir: &Path, steps: u64, start: f64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::File::create(dir.join(rundir::EVENTS_FILE)).unwrap();
    let mut write = |event: &Event| {
        let mut line = rundir::event_line(event, SystemTime::now());
        line.push(b'\n');
        file.write_all(&line).unwrap();
    };
    write(&Event::Started(Box::new(RunInfo {
        pid: 1,
        ..RunInfo::new("r", steps)
    })));
    for step in 1..=steps {
        let loss = 0.3 + start * (-(step as f64) / 60.0).exp() + 0.1 * (step as f64).sin();
        write(&Event::Step(StepMetrics {
            step,
            max_steps: steps,
            loss,
            learning_rate: 1e-3,
            tokens_per_sec: 1000.0,
            elapsed_secs: step as f64,
            eta_secs: 0.0,
            grad_norm: None,
            tokens_seen: None,
        }));
        if step % 100 == 0 {
            write(&Event::ValLoss {
                step,
                loss: Some(loss + 0.05),
                batches: 4,
                timed_out: false,
            });
        }
    }
}

/// Pixels of `image` (RGB rows) within a small distance of `color`.
fn pixels_near(rgb: &[u8], color: (u8, u8, u8)) -> usize {
    rgb.chunks_exact(3)
        .filter(|p| {
            let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).abs();
            d(p[0], color.0) + d(p[1], color.1) + d(p[2], color.2) < 30
        })
        .count()
}

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buffer.truncate(info.buffer_size());
    (info.width, info.height, buffer)
}

#[test]
fn a_png_of_two_runs_has_their_curves_in_their_colours() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("lr-a"), dir.path().join("lr-b"));
    write_run(&a, 300, 4.0);
    write_run(&b, 200, 2.0);
    let out = dir.path().join("loss.png");
    let output = trainui()
        .arg("plot")
        .args([&a, &b])
        .arg("--out")
        .arg(&out)
        .args(["--width", "640", "--height", "400"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("(2 runs)"));
    let (width, height, rgb) = decode(&out);
    assert_eq!((width, height), (640, 400));
    let color = |c: plotters::style::RGBColor| (c.0, c.1, c.2);
    let (blue, orange) = (color(PALETTE[0]), color(PALETTE[1]));
    // A white picture with both runs' curves drawn on it.
    assert!(pixels_near(&rgb, (255, 255, 255)) > 640 * 400 / 2);
    let (a_pixels, b_pixels) = (pixels_near(&rgb, blue), pixels_near(&rgb, orange));
    assert!(a_pixels > 300 && b_pixels > 200, "{a_pixels} {b_pixels}");

    // One run alone: its colour only.
    let alone = dir.path().join("alone.png");
    trainui()
        .arg("plot")
        .arg(&b)
        .arg("--out")
        .arg(&alone)
        .assert()
        .success();
    let (width, height, rgb) = decode(&alone);
    assert_eq!((width, height), (1200, 700), "the default size");
    assert!(pixels_near(&rgb, blue) > 300, "the first run is blue");
    assert_eq!(pixels_near(&rgb, orange), 0);
}

#[test]
fn an_svg_has_a_legend_axis_labels_the_tuis_smoothing_and_a_log_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("lr-a"), dir.path().join("lr-b"));
    write_run(&a, 300, 4.0);
    write_run(&b, 200, 2.0);
    let out = dir.path().join("loss.svg");
    trainui()
        .arg("plot")
        .args([&a, &b])
        .arg("--out")
        .arg(&out)
        .arg("--log")
        .assert()
        .success();
    let svg = std::fs::read_to_string(&out).unwrap();
    let window = trainui::tui::app::default_smoothing(300);
    for text in [
        "loss · lr-a, lr-b".to_owned(),
        "loss (log scale)".to_owned(),
        "step".to_owned(),
        "lr-a raw".to_owned(),
        format!("lr-a ema {window} steps"),
        "lr-b val".to_owned(),
    ] {
        assert!(svg.contains(&text), "{text} in the SVG");
    }
    for color in [PALETTE[0], PALETTE[1]] {
        let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
        assert!(svg.to_uppercase().contains(&hex), "{hex} in the SVG");
    }
    // A smoothing window of one's own.
    trainui()
        .arg("plot")
        .arg(&a)
        .arg("--out")
        .arg(&out)
        .args(["--smoothing", "25"])
        .assert()
        .success();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("lr-a ema 25 steps") && !svg.contains("log scale"));
}

#[test]
fn a_picture_of_another_kind_or_a_folder_without_events_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_run(&run, 10, 1.0);
    let out = trainui()
        .arg("plot")
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("loss.jpg"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("must end in .svg or .png"), "{stderr}");
    let out = trainui()
        .arg("plot")
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("loss.png"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("no events.jsonl here"), "{stderr}");
}

/// A run directory whose step events have `losses` and whose validation
/// events have `val` (`(step, loss)` each).
fn write_losses(dir: &Path, losses: &[(u64, f64)], val: &[(u64, f64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::File::create(dir.join(rundir::EVENTS_FILE)).unwrap();
    let max_steps = losses.iter().chain(val).map(|p| p.0).max().unwrap_or(1);
    let mut write = |event: &Event| {
        let mut line = rundir::event_line(event, SystemTime::now());
        line.push(b'\n');
        file.write_all(&line).unwrap();
    };
    write(&Event::Started(Box::new(RunInfo {
        pid: 1,
        ..RunInfo::new("r", max_steps)
    })));
    for &(step, loss) in losses {
        write(&Event::Step(StepMetrics {
            step,
            max_steps,
            loss,
            learning_rate: 1e-3,
            tokens_per_sec: 1000.0,
            elapsed_secs: 1.0,
            eta_secs: 0.0,
            grad_norm: None,
            tokens_seen: None,
        }));
    }
    for &(step, loss) in val {
        write(&Event::ValLoss {
            step,
            loss: Some(loss),
            batches: 1,
            timed_out: false,
        });
    }
}

/// `trainui plot ARGS`, killed if it has not ended after a minute (a
/// guard against hangs, far beyond the milliseconds it takes).
fn plot_within_a_minute(args: &[&std::ffi::OsStr]) -> std::process::Output {
    use crate::common::SpawnForTest as _;
    let mut child = std::process::Command::new(crate::common::program("trainui"))
        .arg("plot")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn_for_test();
    crate::common::wait_exit(&mut child, std::time::Duration::from_mins(1));
    let child = std::mem::replace(
        &mut *child,
        std::process::Command::new("true").spawn().unwrap(),
    );
    child.wait_with_output().unwrap()
}

/// The SVG at `path` parsed as XML (which refuses what XML 1.0 forbids),
/// and the texts it shows.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap();
    let document = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect()
}

#[test]
fn any_finite_losses_give_a_picture_at_once() {
    type Points = &'static [(u64, f64)];
    const NEAR_MAX: u64 = u64::MAX - 10;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Points, Points)] = &[
        ("near-the-top", &[(1, 1e308), (2, 1.7e308)], &[]),
        ("a-jump-to-the-top", &[(1, 0.2), (2, 1.7e308)], &[]),
        ("both-signs", &[(1, 1e308), (2, -1e308)], &[(2, 1e308)]),
        ("largest", &[(1, f64::MAX), (2, f64::MAX)], &[(2, f64::MAX)]),
        ("both-largest", &[(1, f64::MAX), (2, f64::MIN)], &[]),
        ("smallest-normal", &[(1, f64::MIN_POSITIVE)], &[]),
        ("subnormal", &[(1, 5e-324), (2, 1e-323), (3, 2.5e-320)], &[]),
        ("all-equal", &[(1, 3.0), (2, 3.0), (3, 3.0)], &[(3, 3.0)]),
        ("one-point", &[(7, 0.5)], &[]),
        ("zero", &[(1, 0.0), (2, 0.0)], &[]),
        ("negative", &[(1, -2.0), (2, -1e-300)], &[]),
        (
            "last-steps",
            &[(NEAR_MAX, 1.0), (u64::MAX, 2.0)],
            &[(u64::MAX, 1.5)],
        ),
        ("tiny-to-huge", &[(1, 1e-300), (2, 5e-324), (3, 1e300)], &[]),
    ];
    for (name, losses, val) in cases {
        let run = dir.path().join(name);
        write_losses(&run, losses, val);
        for picture in ["svg", "png"] {
            for log in [false, true] {
                let out = dir.path().join(format!(
                    "{name}-{}.{picture}",
                    if log { "log" } else { "linear" }
                ));
                let mut args = vec![run.as_os_str(), "--out".as_ref(), out.as_os_str()];
                if log {
                    args.push("--log".as_ref());
                }
                let output = plot_within_a_minute(&args);
                assert!(
                    output.status.success(),
                    "{name} {picture} log {log}: {output:?}"
                );
                if picture == "svg" {
                    let texts = svg_texts(&out);
                    assert!(
                        texts.iter().any(|t| t == &format!("{name} raw")),
                        "{texts:?}"
                    );
                    assert!(
                        !texts.iter().any(|t| t.contains("inf") || t.contains("NaN")),
                        "{name}: {texts:?}"
                    );
                } else {
                    assert_eq!(decode(&out).0, 1200, "{name}");
                }
            }
        }
    }
}

/// Run names that are markup, control sequences or bidirectional tricks,
/// with the text the picture must show for each.
const HOSTILE_NAMES: &[(&str, &str)] = &[
    ("<svg onload=\"x\">&amp;'", "<svg onload=\"x\">&amp;'"),
    ("cdata]]>end", "cdata]]>end"),
    ("title\x1b]0;owned\x07", "title\\x1b]0;owned\\x07"),
    ("red\x1b[31m", "red\\x1b[31m"),
    ("bell\x07", "bell\\x07"),
    ("vt\x0bff\x0c", "vt\\x0bff\\x0c"),
    ("rlo\u{202e}gnp.exe", "rlo\\u{202e}gnp.exe"),
    ("c1\u{85}\u{9b}2J", "c1\\u{85}\\u{9b}2J"),
    ("del\x7f", "del\\x7f"),
    ("two\nlines\r\t", "two\\nlines\\r\\t"),
    ("nonchar\u{fffe}\u{ffff}", "nonchar\\u{fffe}\\u{ffff}"),
];

#[test]
fn any_run_name_or_title_gives_well_formed_svg_showing_it_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = HOSTILE_NAMES
        .iter()
        .map(|(name, _)| {
            let run = dir.path().join(name);
            write_run(&run, 100, 1.0);
            run
        })
        .collect();
    let out = dir.path().join("names.svg");
    let mut args: Vec<&std::ffi::OsStr> = runs.iter().map(|r| r.as_os_str()).collect();
    args.extend(["--out".as_ref(), out.as_os_str()]);
    let output = plot_within_a_minute(&args);
    assert!(output.status.success(), "{output:?}");
    let texts = svg_texts(&out);
    let title = texts.iter().find(|t| t.starts_with("loss · ")).unwrap();
    for (name, shown) in HOSTILE_NAMES {
        assert!(title.contains(shown), "{name:?} as {shown:?} in {title:?}");
        for legend in [format!("{shown} raw"), format!("{shown} val")] {
            assert!(texts.contains(&legend), "{legend:?} in {texts:?}");
        }
    }
    for text in &texts {
        assert!(
            !text.chars().any(trainui_protocol::text::is_unsafe),
            "{text:?} has a control character"
        );
    }

    // A title of one's own is escaped alike; the PNG draws them too.
    for (name, shown) in HOSTILE_NAMES {
        let title = format!("t {name}");
        for svg in [true, false] {
            let out = dir.path().join(if svg { "names.svg" } else { "names.png" });
            let output = plot_within_a_minute(&[
                runs[0].as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--title".as_ref(),
                title.as_ref(),
            ]);
            assert!(output.status.success(), "{output:?}");
            if svg {
                let texts = svg_texts(&out);
                assert!(
                    texts.contains(&format!("t {shown}")),
                    "{shown:?} in {texts:?}"
                );
            } else {
                assert_eq!(decode(&out).0, 1200);
            }
        }
    }
}

/// A run directory with a run's events, whose events.jsonl is then
/// replaced by what `make` puts at its path.
fn events_replaced(dir: &Path, name: &str, make: impl FnOnce(&Path)) -> std::path::PathBuf {
    let run = dir.join(name);
    write_run(&run, 10, 1.0);
    let events = run.join(rundir::EVENTS_FILE);
    std::fs::remove_file(&events).unwrap();
    make(&events);
    run
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

#[test]
fn an_events_file_that_cannot_be_read_is_named_not_drawn_empty() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    write_run(&good, 10, 1.0);
    let cases = [
        (events_replaced(dir.path(), "fifo", mkfifo), "a FIFO"),
        (
            events_replaced(dir.path(), "zero", |p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap();
            }),
            "a character device",
        ),
        (
            events_replaced(dir.path(), "folder", |p| std::fs::create_dir(p).unwrap()),
            "a folder",
        ),
        (
            events_replaced(dir.path(), "dangling", |p| {
                std::os::unix::fs::symlink("/nonexistent/events.jsonl", p).unwrap();
            }),
            "/nonexistent/events.jsonl, which does not exist",
        ),
    ];
    for (run, reason) in &cases {
        let out = dir.path().join("loss.svg");
        // Beside a readable run too: never drawn as a run without losses.
        let output = plot_within_a_minute(&[
            good.as_os_str(),
            run.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{reason}: {stderr}");
        let events = run.join(rundir::EVENTS_FILE);
        assert!(
            stderr.contains(&events.display().to_string()) && stderr.contains(reason),
            "{reason}: {stderr}"
        );
        assert!(!out.exists(), "{reason}: no picture");
    }
}

#[test]
fn an_events_file_its_reader_may_not_read_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("private");
    write_run(&run, 10, 1.0);
    let events = run.join(rundir::EVENTS_FILE);
    let out = dir.path().join("pictures");
    std::fs::create_dir(&out).unwrap();
    let Some(mut plot) = as_another_user(dir.path(), &[&run, &out]) else {
        return;
    };
    std::fs::set_permissions(&events, PermissionsExt::from_mode(0o000)).unwrap();
    let output = plot
        .arg("plot")
        .arg(&run)
        .arg("--out")
        .arg(out.join("loss.svg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&events.display().to_string()) && stderr.contains("ermission denied"),
        "{stderr}"
    );
    assert!(!out.join("loss.svg").exists());
}

#[test]
fn over_long_and_foreign_lines_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_run(&run, 200, 1.0);
    let mut events = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join(rundir::EVENTS_FILE))
        .unwrap();
    let long = format!(
        "{{\"v\":3,\"type\":\"step\",\"pad\":\"{}\"}}\n",
        "x".repeat(runfile::MAX_EVENT_LINE + 10)
    );
    events.write_all(long.as_bytes()).unwrap();
    events.write_all(b"not an event\n").unwrap();
    let out = dir.path().join("loss.svg");
    let output = plot_within_a_minute(&[run.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipped 1 line longer than")
            && stderr.contains("skipped 1 line that is not a trainui event"),
        "{stderr}"
    );
    assert!(svg_texts(&out).contains(&"run raw".to_owned()));
}
