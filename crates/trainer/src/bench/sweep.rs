//! A sweep's folder of runs, as trainui's trainer leaves them: each run
//! directory written by the run directory's own writer (config.json, the
//! status file, events.jsonl, the log file), its learning rate and seed
//! varied, most runs finished, some stopped and some failed.

use std::path::Path;

use trainui_protocol::config::{Config, live_settings};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{
    EvalSummary, Event, GenerationCounters, RunInfo, RunState, RunStatus, StepMetrics, Summary,
};
use trainui_protocol::rundir::RunDir;

/// Writes `count` run directories `lr-N` under `dir`, each of `steps`
/// steps (a step event each, and an evaluation at the end).
pub fn write_runs(dir: &Path, count: u64, steps: u64) -> Result<()> {
    for n in 0..count {
        let name = format!("lr-{n:04}");
        let mut config = Config::default();
        config.train.learning_rate = 1e-4 * (1.0 + (n % 10) as f64);
        config.train.max_steps = steps;
        config.seed = n;
        let root = dir.join(&name);
        root.clone_into(&mut config.run_dir);
        let mut run = RunDir::open(&root, &config, RunStatus::new(name.clone(), steps))?;
        let mut record = |event: &Event| {
            run.record(event)
                .map_err(Error::io("cannot write the run directory", &root))
        };
        record(&Event::Started(Box::new(RunInfo {
            settings: Some(live_settings(&config)),
            ..RunInfo::new(name.clone(), steps)
        })))?;
        record(&Event::State {
            step: 0,
            state: RunState::Training,
        })?;
        for step in 1..=steps {
            record(&Event::Step(StepMetrics {
                step,
                max_steps: steps,
                loss: 4.0 / (step as f64 + config.train.learning_rate * 1e3),
                learning_rate: config.train.learning_rate,
                tokens_per_sec: 15_000.0,
                elapsed_secs: step as f64,
                eta_secs: (steps - step) as f64,
                grad_norm: Some(1.0),
                tokens_seen: Some(step * 15_000),
            }))?;
        }
        for event in super::ui_cost::evaluation_events(steps) {
            record(&event)?;
        }
        record(&Event::EvalFinished(EvalSummary {
            step: steps,
            eval: 1,
            val_loss: Some(0.31),
            train_loss: Some(0.3),
            gap: Some(0.01),
            samples: 8,
            matches: 6,
            exact_match: 0.75,
            counters: GenerationCounters {
                generations: 8,
                completed: 7,
                timed_out: 1,
                aborted: 0,
                errors: 0,
            },
        }))?;
        let end = match n % 10 {
            0 => Event::Failed {
                step: steps,
                message: "CUDA out of memory".into(),
            },
            state => Event::Finished(Summary {
                step: steps,
                max_steps: steps,
                state: if state == 1 {
                    RunState::Stopped
                } else {
                    RunState::Finished
                },
                loss: Some(0.5),
                elapsed_secs: steps as f64,
            }),
        };
        record(&end)?;
    }
    Ok(())
}
