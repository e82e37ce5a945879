//! The machine's load as the system pane shows it, folded from the
//! sampler's readings (`sampler.rs`): each GPU's latest reading with its
//! recent utilisation, the host's, and the CPU's recent load. It belongs to
//! the machine, not to a run: a run that starts over keeps it, and several
//! runs on one screen get the same readings.

use std::collections::VecDeque;

use super::run_data::SPARKLINE_POINTS;
use super::sampler::{GpuSample, HostSample, SystemSample};

/// A GPU's latest reading with its recent utilisation.
#[derive(Debug, Clone)]
pub struct GpuView {
    pub latest: GpuSample,
    pub utilization: VecDeque<u64>,
}

/// The machine's load, as last read.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub gpus: Vec<GpuView>,
    pub host: HostSample,
    pub cpu_history: VecDeque<u64>,
    /// Why there are no GPU readings, shown quietly (e.g. "no GPU").
    pub note: Option<String>,
}

impl Load {
    /// Folds one reading in.
    pub fn apply(&mut self, sample: SystemSample) {
        fn push(history: &mut VecDeque<u64>, value: u64) {
            if history.len() == SPARKLINE_POINTS {
                history.pop_front();
            }
            history.push_back(value);
        }
        self.gpus.truncate(sample.gpus.len());
        for (index, gpu) in sample.gpus.into_iter().enumerate() {
            if index == self.gpus.len() {
                self.gpus.push(GpuView {
                    latest: gpu.clone(),
                    utilization: VecDeque::new(),
                });
            }
            let view = &mut self.gpus[index];
            push(&mut view.utilization, u64::from(gpu.utilization));
            view.latest = gpu;
        }
        if let Some(cpu) = sample.host.cpu {
            push(&mut self.cpu_history, cpu.round() as u64);
        }
        self.host = sample.host;
        self.note = sample.note;
    }
}
