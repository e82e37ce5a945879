//! `trainui plot`: real pictures of real curves, read back as a viewer
//! would (the PNG decoded, the SVG's text and colours).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use common::trainui;
use trainui::events::{Event, RunInfo, StepMetrics};
use trainui::plot::PALETTE;
use trainui::rundir;

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
