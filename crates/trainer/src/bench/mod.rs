//! `trainui bench`: trainui's speed and responsiveness, measured side by side
//! with a plain-PyTorch peer in one run. The machine may be shared and noisy,
//! so trainui and the peer alternate, several rounds, and every figure is a
//! median (or a percentile) with the ratio trainui/peer beside it.
//!
//! Training and generation run the real trainer thread and the real decoder;
//! the UI figures come from the real app, renderer and run directory.

mod history;
mod peer;
mod plan;
mod remote;
pub mod report;
mod sshd;
mod sweep;
pub mod table;
mod ui_cost;
mod watch_cost;
mod watched;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use crate::data::{Example, TextTokenizer};
use crate::session::{Front, Options, Session};
use crate::trainer::{self, TrainSetup, measurements::BenchModel};
use plan::{NEW_TOKENS, PROMPT_LEN, TrainRun, WARMUP_STEPS};
use trainui::tui;
use trainui_protocol::channel::Wiring;
use trainui_protocol::config::{self, Config, Seconds};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, Event, GenerationOutcome, Phase};
use trainui_protocol::lines::Style;
use trainui_protocol::rundir::EventTail;
use trainui_protocol::watchdog::Heartbeat;

pub use history::HistoryFigures;
pub use report::Report;

/// What `trainui bench` was asked to do.
pub struct BenchOptions {
    pub config: PathBuf,
    pub overrides: Vec<String>,
    pub python: PathBuf,
    pub peer: PathBuf,
    pub rounds: u32,
    pub steps: u64,
    pub threads: u32,
    pub vocab_size: u32,
    pub abort_samples: u32,
    pub history_steps: u64,
}

/// Runs every measurement and returns the report. Progress goes to stderr.
pub fn run(options: &BenchOptions) -> Result<Report> {
    let started = Instant::now();
    let mut config = config::load(Some(&options.config), &options.overrides)?;
    if options.vocab_size < 2 {
        return Err(Error::Usage("--vocab must be at least 2".into()));
    }
    trainer::measurements::set_threads(options.threads);
    let device = trainer::measurements::device_label(config.device)?;
    let work = tempfile_dir()?;
    let bench_model = BenchModel {
        model: config.model.clone(),
        vocab_size: options.vocab_size,
        seed: config.seed,
        device: config.device,
    };
    config.train.max_steps = WARMUP_STEPS + options.steps;
    config.train.log_steps = 1;
    config.eval.eval_steps = 0;
    config.checkpoint.save_steps = 0;
    let examples = synthetic_examples(&config, options.vocab_size, 64, 1, 0);

    progress(&format!("matmul rates on {device}"));
    let matmul_gflops = trainer::measurements::matmul_gflops(config.device, 1024, 20)?;
    let model_matmul_gflops =
        trainer::measurements::model_matmul_gflops(&bench_model, config.train.batch_size, 10)?;

    let weights = work.path().join("weights.safetensors");
    let logits = work.path().join("logits.safetensors");
    let parameters = trainer::measurements::write_logits_check(&bench_model, &weights, &logits)?;
    let mut check = Some(peer::LogitsCheck { weights, logits });

    let mut figures = report::Raw::default();
    for round in 0..options.rounds {
        let peer_first = round % 2 == 1;
        for side in if peer_first { [1, 0] } else { [0, 1] } {
            if side == 0 {
                progress(&format!("round {}/{}: trainui", round + 1, options.rounds));
                let fronts = if peer_first {
                    [Front::Tui, Front::Headless]
                } else {
                    [Front::Headless, Front::Tui]
                };
                for front in fronts {
                    let dir = work.path().join(format!("run-{round}-{front:?}"));
                    let run = train_run(&config, &examples, options.vocab_size, front, &dir)?;
                    figures.add_train_run(front == Front::Tui, run);
                }
                let decode = trainer::measurements::decode_step_secs(
                    &bench_model,
                    PROMPT_LEN,
                    NEW_TOKENS,
                    2,
                )?;
                figures.decode.extend(decode);
            } else {
                progress(&format!(
                    "round {}/{}: PyTorch peer",
                    round + 1,
                    options.rounds
                ));
                let result = peer::run(
                    &options.python,
                    &options.peer,
                    &peer::PeerSpec {
                        config: &config,
                        device: &device,
                        vocab_size: options.vocab_size,
                        threads: options.threads,
                        train_steps: WARMUP_STEPS + options.steps,
                        prompt_len: PROMPT_LEN,
                        new_tokens: NEW_TOKENS,
                        gen_repeats: 2,
                        check: check.take(),
                    },
                    work.path(),
                )?;
                figures.add_peer_run(result);
            }
        }
    }

    progress("watch: a busy run, then the same run finished");
    figures.watch = match watch_cost(&config, &examples, options.vocab_size, work.path()) {
        Ok(watch) => Some(watch),
        Err(err) => {
            progress(&format!("watch not measured: {err}"));
            None
        }
    };

    progress("abort latency");
    let mut eval_config = config.clone();
    eval_config.train.max_steps = 1_000_000;
    eval_config.train.log_steps = 1000;
    eval_config.eval.samples = options.abort_samples;
    eval_config.eval.val_batches = 1;
    eval_config.eval.max_new_tokens = 1_000_000;
    eval_config.eval.min_new_tokens = 1_000_000;
    let val = synthetic_examples(
        &config,
        options.vocab_size,
        options.abort_samples as usize,
        PROMPT_LEN as usize,
        16,
    );
    eval_config.eval.eval_timeout_seconds = Seconds::try_from(600.0).map_err(Error::Failed)?;
    figures.abort_secs = generation_latencies(
        &eval_config,
        &examples,
        &val,
        options.vocab_size,
        &work.path().join("abort"),
        Ending::Abort,
    )?;
    progress("timeout overshoot");
    eval_config.eval.eval_timeout_seconds = Seconds::try_from(0.05).map_err(Error::Failed)?;
    figures.overshoot_secs = generation_latencies(
        &eval_config,
        &examples,
        &val,
        options.vocab_size,
        &work.path().join("timeout"),
        Ending::Timeout(Duration::from_millis(50)),
    )?;

    progress("TUI frames and memory");
    let ui = ui_cost::measure(options.history_steps, 300, &[(120, 40), (200, 60)]);
    figures.history = history_figures(options.history_steps, work.path());

    Ok(report::build(
        report::Setup {
            config: options.config.display().to_string(),
            device,
            threads: options.threads,
            vocab_size: options.vocab_size,
            model: config.model.clone(),
            batch_size: config.train.batch_size,
            rounds: options.rounds,
            steps_per_run: options.steps,
            parameters,
            matmul_gflops,
            model_matmul_gflops,
        },
        figures,
        ui,
        started.elapsed(),
    ))
}

/// Only the figures of a long history (`trainui bench --history-only`).
pub fn history_only(steps: u64) -> Result<HistoryFigures> {
    let work = tempfile_dir()?;
    progress(&format!(
        "watch, status and query on a history of {} steps; runs on {} runs; watch on {}",
        trainui_protocol::lines::thousands(steps),
        trainui_protocol::lines::thousands(history::SWEEP_RUNS),
        history::WATCH_SWEEP_RUNS
    ));
    long_history(steps, work.path())
}

/// The long history's figures, with those of the same over ssh (none,
/// said on stderr, where no sshd can be started).
fn long_history(steps: u64, dir: &Path) -> Result<HistoryFigures> {
    let mut figures = history::measure(steps, dir)?;
    progress(&format!(
        "remote: a run written every {} ms followed over ssh; watch on the history over ssh",
        remote::WRITE_EVERY.as_millis()
    ));
    let program = history::trainui_program()?;
    figures.remote = remote::measure(&program, &dir.join("week"), steps, &dir.join("remote"))
        .map_err(|err| progress(&format!("remote runs not measured: {err}")))
        .ok();
    Ok(figures)
}

/// The long-history figures, or none (said on stderr) when tmux is missing.
fn history_figures(steps: u64, work: &Path) -> Option<HistoryFigures> {
    progress(&format!(
        "watch, status and query on a history of {} steps; runs on {} runs; watch on {}",
        trainui_protocol::lines::thousands(steps),
        trainui_protocol::lines::thousands(history::SWEEP_RUNS),
        history::WATCH_SWEEP_RUNS
    ));
    long_history(steps, work)
        .map_err(|err| progress(&format!("long history not measured: {err}")))
        .ok()
}

fn progress(what: &str) {
    trainui_protocol::process::say(format!("bench: {what}"));
}

fn tempfile_dir() -> Result<TempDir> {
    let base = std::env::temp_dir().join(format!("trainui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(Error::io("cannot create the bench's folder", &base))?;
    Ok(TempDir(base))
}

/// A scratch folder removed when the bench ends.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `count` random examples of `prompt_len` prompt tokens followed by
/// completion tokens (the rest of the block when `completion_len` is 0).
fn synthetic_examples(
    config: &Config,
    vocab_size: u32,
    count: usize,
    prompt_len: usize,
    completion_len: usize,
) -> Vec<Example> {
    let block = config.model.block_size as usize;
    let len = if completion_len == 0 {
        block + 1
    } else {
        (prompt_len + completion_len + 1).min(block)
    };
    let mut state = config.seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next_token = move || {
        // xorshift64*: any spread of ids will do.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % (vocab_size - 1)
    };
    (0..count)
        .map(|i| Example {
            tokens: (0..len).map(|_| next_token()).collect(),
            prompt_len,
            origin: format!("synthetic:{i}"),
        })
        .collect()
}

/// Trains `config.train.max_steps` steps on `examples` through the same
/// session as `trainui train`, with the headless printer or the TUI (on an
/// off-screen 120x40 terminal) consuming events.
fn train_run(
    config: &Config,
    examples: &[Example],
    vocab_size: u32,
    front: Front,
    dir: &Path,
) -> Result<TrainRun> {
    let mut config = config.clone();
    dir.clone_into(&mut config.run_dir);
    let name = format!("bench-{front:?}");
    let max_steps = config.train.max_steps;
    let tokens_per_step = f64::from(config.train.batch_size) * f64::from(config.model.block_size);
    let setup = TrainSetup {
        config,
        run_name: name.clone(),
        tokenizer: TextTokenizer::numbered(vocab_size),
        train: examples.to_vec(),
        val: examples[..4].to_vec(),
        skipped_overlong: 0,
        resume_from: None,
        init_from: None,
    };
    let mut session = Session::start(
        setup,
        Options {
            front,
            owns_process: false,
        },
        None,
    )?;
    match front {
        Front::Headless => session.run_headless(Style::PLAIN, &mut std::io::sink()),
        Front::Tui => {
            let mut app = tui::app::App::new(name, max_steps, true);
            let mut terminal = Terminal::new(TestBackend::new(120, 40))
                .map_err(|e| Error::Failed(e.to_string()))?;
            let mut input = QuitWhenEnded(session.heartbeat());
            session.run_tui(&mut terminal, &mut input, &mut app)?;
        }
    }
    let record_secs = session.record_secs();
    session
        .finish(true)
        .map_err(|e| Error::Failed(format!("bench training run failed: {e}")))?;
    let step_secs = EventTail::new(dir, 0)
        .read_new(u64::MAX)
        .into_iter()
        .filter_map(|event| match event {
            Event::Step(m) if m.step > WARMUP_STEPS => Some(tokens_per_step / m.tokens_per_sec),
            _ => None,
        })
        .collect();
    Ok(TrainRun {
        step_secs,
        tokens_per_step,
        record_secs,
    })
}

/// Seconds `watch` is measured on the finished run.
const WATCH_IDLE: Duration = Duration::from_secs(5);

/// A real `trainui watch` on a headless training run: its CPU while the run
/// trains, and then while it watches the finished run.
fn watch_cost(
    config: &Config,
    examples: &[Example],
    vocab_size: u32,
    work: &Path,
) -> Result<watch_cost::WatchFigures> {
    let dir = work.join("watched");
    std::fs::create_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
    let watcher = watch_cost::Watcher::start(&dir)?;
    // Its start (loading libtorch, the first frame) is not watching.
    thread::sleep(Duration::from_secs(2));
    let (cpu, wall) = (watcher.cpu_secs()?, Instant::now());
    train_run(config, examples, vocab_size, Front::Headless, &dir)?;
    let busy_secs = wall.elapsed().as_secs_f64();
    let busy_cpu = watcher.cpu_secs()? - cpu;
    let busy_events = EventTail::new(&dir, 0).read_new(u64::MAX).len() as u64;
    // Let it catch up with the end of the run, then leave it idle.
    thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (watcher.cpu_secs()?, Instant::now());
    thread::sleep(WATCH_IDLE);
    let idle_cpu = watcher.cpu_secs()? - cpu;
    let idle_secs = wall.elapsed().as_secs_f64();
    // What the events cost beyond watching at all.
    let idle_cpu_share = idle_cpu / idle_secs;
    let for_events = (busy_cpu - idle_cpu_share * busy_secs).max(0.0);
    Ok(watch_cost::WatchFigures {
        busy_cpu_share: busy_cpu / busy_secs,
        busy_secs,
        busy_events,
        busy_ms_per_event: 1e3 * for_events / busy_events.max(1) as f64,
        idle_cpu_share,
        idle_secs,
    })
}

/// Input for the off-screen TUI: nothing while the trainer works, then `q`
/// (and `q` again, should the quit dialog come first).
struct QuitWhenEnded(Arc<Heartbeat>);

impl tui::InputSource for QuitWhenEnded {
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<tui::Input>> {
        if self.0.phase() == Phase::Done {
            return Ok(Some(tui::Input::Key(KeyEvent::from(KeyCode::Char('q')))));
        }
        thread::sleep(timeout);
        Ok(None)
    }
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Raise the abort flag a little after each generation starts.
    Abort,
    /// Let each generation run into its deadline.
    Timeout(Duration),
}

/// One evaluation of never-ending generations, each ended by an abort or by
/// its deadline. Returns, per generation, the seconds from the abort (or the
/// deadline) to its outcome arriving on the event stream.
fn generation_latencies(
    config: &Config,
    train: &[Example],
    val: &[Example],
    vocab_size: u32,
    dir: &Path,
    ending: Ending,
) -> Result<Vec<f64>> {
    let mut config = config.clone();
    dir.clone_into(&mut config.run_dir);
    let setup = TrainSetup {
        config,
        run_name: "bench-latency".into(),
        tokenizer: TextTokenizer::numbered(vocab_size),
        train: train.to_vec(),
        val: val.to_vec(),
        skipped_overlong: 0,
        resume_from: None,
        init_from: None,
    };
    let handle = trainer::spawn(setup, Wiring::default())?;
    let controller = handle.controller.clone();
    controller.send(Command::EvalNow);
    let mut latencies = Vec::new();
    let mut mark: Option<Instant> = None;
    loop {
        let event = match handle.events.recv_timeout(Duration::from_mins(2)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                controller.send(Command::Stop);
                return Err(Error::Failed(
                    "the latency run made no progress for 2 minutes".into(),
                ));
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::GenerationStarted(_) => {
                let began = Instant::now();
                mark = Some(match ending {
                    Ending::Abort => {
                        // 5 to 40 ms into the generation, varied.
                        let delay = 5 + (latencies.len() as u64 * 7) % 36;
                        thread::sleep(Duration::from_millis(delay));
                        let raised = Instant::now();
                        controller.send(Command::AbortGeneration);
                        raised
                    }
                    Ending::Timeout(timeout) => began + timeout,
                });
            }
            Event::Sample(sample) => {
                let arrived = Instant::now();
                let expected = match ending {
                    Ending::Abort => GenerationOutcome::Aborted,
                    Ending::Timeout(_) => GenerationOutcome::TimedOut,
                };
                if sample.outcome != expected {
                    controller.send(Command::Stop);
                    return Err(Error::Failed(format!(
                        "a bench generation ended {:?}, not {expected:?}",
                        sample.outcome
                    )));
                }
                if let Some(mark) = mark.take() {
                    latencies.push(arrived.saturating_duration_since(mark).as_secs_f64());
                }
            }
            Event::EvalFinished(_) => controller.send(Command::Stop),
            Event::Failed { message, .. } => {
                return Err(Error::Failed(format!("latency run failed: {message}")));
            }
            _ => {}
        }
    }
    let _ = handle.thread.join();
    Ok(latencies)
}
