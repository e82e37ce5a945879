//! System load, sampled about once a second on its own thread: each NVIDIA
//! GPU through NVML (loaded at run time), or, without a GPU or driver, CPU
//! use and memory from /proc.

use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use crate::machine::kib_field;

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemSample {
    pub gpus: Vec<GpuSample>,
    pub host: HostSample,
    /// Why there are no GPU readings, shown quietly (e.g. "no GPU").
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub name: String,
    /// Percent.
    pub utilization: u32,
    pub memory_used: u64,
    pub memory_total: u64,
    /// Degrees Celsius.
    pub temperature: Option<u32>,
    /// Watts.
    pub power: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSample {
    /// Percent of all cores, since the previous reading.
    pub cpu: Option<f64>,
    /// Resident memory of this process, bytes.
    pub process_memory: Option<u64>,
    pub memory_used: Option<u64>,
    pub memory_total: Option<u64>,
}

impl SystemSample {
    /// The GPUs of this reading, as the status file has them.
    #[must_use]
    pub fn gpu_status(&self) -> Vec<trainui_protocol::events::GpuStatus> {
        self.gpus
            .iter()
            .enumerate()
            .map(|(index, gpu)| trainui_protocol::events::GpuStatus {
                index: index as u32,
                name: gpu.name.clone(),
                utilization: gpu.utilization,
                memory_used_bytes: gpu.memory_used,
                memory_total_bytes: gpu.memory_total,
                temperature: gpu.temperature,
                power_watts: gpu.power,
            })
            .collect()
    }
}

/// Starts the sampler; it stops when `samples` is closed.
pub fn spawn(samples: Sender<SystemSample>, every: Duration) -> std::io::Result<()> {
    thread::Builder::new()
        .name("system-monitor".into())
        .spawn(move || {
            let nvml = nvml_wrapper::Nvml::init();
            let mut cpu = CpuMeter::default();
            loop {
                let mut sample = SystemSample {
                    host: cpu.read(),
                    ..SystemSample::default()
                };
                match &nvml {
                    Ok(nvml) => match read_gpus(nvml) {
                        Ok(gpus) if !gpus.is_empty() => sample.gpus = gpus,
                        Ok(_) => sample.note = Some("no GPU".into()),
                        Err(err) => sample.note = Some(format!("no GPU readings ({err})")),
                    },
                    Err(_) => sample.note = Some("no GPU".into()),
                }
                if samples.send(sample).is_err() {
                    return;
                }
                thread::sleep(every);
            }
        })?;
    Ok(())
}

fn read_gpus(nvml: &nvml_wrapper::Nvml) -> Result<Vec<GpuSample>, nvml_wrapper::error::NvmlError> {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    (0..nvml.device_count()?)
        .map(|index| {
            let device = nvml.device_by_index(index)?;
            let memory = device.memory_info()?;
            Ok(GpuSample {
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                utilization: device.utilization_rates()?.gpu,
                memory_used: memory.used,
                memory_total: memory.total,
                temperature: device.temperature(TemperatureSensor::Gpu).ok(),
                power: device
                    .power_usage()
                    .ok()
                    .map(|milliwatts| f64::from(milliwatts) / 1000.0),
            })
        })
        .collect()
}

/// CPU use between two readings of /proc/stat.
#[derive(Default)]
struct CpuMeter {
    previous: Option<(u64, u64)>,
}

impl CpuMeter {
    fn read(&mut self) -> HostSample {
        let stat = std::fs::read_to_string("/proc/stat").ok();
        let times = stat.as_deref().and_then(cpu_times);
        let cpu = match (self.previous, times) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                Some(100.0 * (busy1 - busy0) as f64 / (total1 - total0) as f64)
            }
            _ => None,
        };
        self.previous = times.or(self.previous);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total = kib_field(&meminfo, "MemTotal:");
        let available = kib_field(&meminfo, "MemAvailable:");
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        HostSample {
            cpu,
            process_memory: kib_field(&status, "VmRSS:"),
            memory_used: total.zip(available).map(|(t, a)| t.saturating_sub(a)),
            memory_total: total,
        }
    }
}

/// Busy and total jiffies of all CPUs from /proc/stat.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are the fourth and fifth fields.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_times(stat), Some((150, 1000)));
    }

    #[test]
    fn without_a_gpu_the_host_is_sampled_quietly() {
        let (tx, rx) = std::sync::mpsc::channel();
        spawn(tx, Duration::from_millis(10)).unwrap();
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        assert!(first.host.memory_total.is_some_and(|m| m > 0));
        assert!(second.host.cpu.is_some(), "CPU use needs two readings");
        // This test machine has no NVIDIA driver; a GPU machine reports its GPUs.
        assert!(second.note.is_some() || !second.gpus.is_empty());
    }
}
