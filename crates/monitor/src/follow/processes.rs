//! The job's processes on this machine: its ranks (their pids from their
//! rank files) and, under `trainui run`, every process the job started
//! (the descendants of this process), each with its CPU use and resident
//! memory from /proc, and the GPU memory it holds from NVML where there is
//! a driver. Every file read is bounded in size; /proc's `stat` and
//! `status` files are read, never `cmdline` or `environ` (whose reads wait
//! on a process stuck in the kernel).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use crate::machine::kib_field;
use crate::tui::process::JobProcess;

/// Clock ticks a second in /proc's CPU times (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick).
const TICKS_PER_SEC: f64 = 100.0;
/// Most bytes read from one /proc file (`stat` and `status` are a few KiB).
const PROC_FILE_LIMIT: u64 = 64 << 10;
/// Most /proc entries looked at when finding the job's processes.
const MOST_ENTRIES: usize = 1 << 16;
/// Most processes read a time: a job with more is shown by its first ones.
const MOST_PROCESSES: usize = 256;

/// Reads the job's processes; keeps each one's CPU time between readings.
pub struct ProcessMeter {
    /// CPU ticks of each process at the previous reading, and when.
    previous: HashMap<u32, (u64, Instant)>,
    nvml: Option<nvml_wrapper::Nvml>,
}

impl ProcessMeter {
    /// A meter; NVML is loaded once, when the machine has a driver.
    #[must_use]
    pub fn new() -> Self {
        Self {
            previous: HashMap::new(),
            nvml: nvml_wrapper::Nvml::init().ok(),
        }
    }

    /// The processes `pids` (the ranks on this machine) and the descendants
    /// of `root` (the job, when this process started it), by pid; those
    /// that are gone or zombies are left out.
    pub fn read(&mut self, pids: &[u32], root: Option<u32>) -> Vec<JobProcess> {
        let mut wanted: Vec<u32> = pids.to_vec();
        if let Some(root) = root {
            wanted.extend(descendants(Path::new("/proc"), root));
        }
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(MOST_PROCESSES);
        let gpu = self.gpu_memory();
        let now = Instant::now();
        let mut seen = HashMap::new();
        let processes: Vec<JobProcess> = wanted
            .into_iter()
            .filter_map(|pid| {
                let stat = read_stat(Path::new("/proc"), pid)?;
                let cpu = self.previous.get(&pid).and_then(|&(ticks, at)| {
                    let secs = now.duration_since(at).as_secs_f64();
                    (secs > 0.0 && stat.ticks >= ticks)
                        .then(|| 100.0 * (stat.ticks - ticks) as f64 / TICKS_PER_SEC / secs)
                });
                seen.insert(pid, (stat.ticks, now));
                let status = read_proc(&Path::new("/proc").join(pid.to_string()).join("status"))
                    .unwrap_or_default();
                Some(JobProcess {
                    pid,
                    name: stat.name,
                    cpu,
                    memory: kib_field(&status, "VmRSS:"),
                    gpu_memory: gpu.get(&pid).cloned().unwrap_or_default(),
                })
            })
            .collect();
        self.previous = seen;
        processes
    }

    /// GPU memory held by each process, on each GPU, as NVML says.
    fn gpu_memory(&self) -> HashMap<u32, Vec<(u32, u64)>> {
        let mut held: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
        let Some(nvml) = &self.nvml else {
            return held;
        };
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            for process in device.running_compute_processes().unwrap_or_default() {
                if let nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) =
                    process.used_gpu_memory
                {
                    held.entry(process.pid).or_default().push((index, bytes));
                }
            }
        }
        held
    }
}

impl Default for ProcessMeter {
    fn default() -> Self {
        Self::new()
    }
}

/// What a process's `stat` file says of it.
#[derive(Debug, PartialEq)]
struct Stat {
    name: String,
    parent: u32,
    /// User and system CPU time, in ticks.
    ticks: u64,
}

/// At most [`PROC_FILE_LIMIT`] bytes of a /proc file, as text. (The run
/// directory's readers refuse the kernel's files; these are the job's own
/// `stat` and `status`, which the kernel writes without waiting.)
fn read_proc(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(PROC_FILE_LIMIT)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `/proc/PID/stat` of a living process (none for a zombie).
fn read_stat(proc_root: &Path, pid: u32) -> Option<Stat> {
    parse_stat(&read_proc(&proc_root.join(pid.to_string()).join("stat"))?)
}

/// `pid (name) state ppid ... utime stime ...`: the name may hold anything,
/// spaces and parentheses included, so the fields are counted from its
/// last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X")) | None) {
        return None;
    }
    let number = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        name,
        parent: u32::try_from(number(1)?).ok()?,
        ticks: number(11)? + number(12)?,
    })
}

/// Every living process under `root` in the process tree (its children,
/// theirs, and so on), from the `stat` files of `proc_root`.
fn descendants(proc_root: &Path, root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in entries.filter_map(Result::ok).take(MOST_ENTRIES) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(proc_root, pid) {
            children.entry(stat.parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for &child in children.get(&parent).map_or(&[][..], Vec::as_slice) {
            if seen.insert(child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_whatever_the_name_holds() {
        let stat = "4242 (py (rank 1) x) S 4000 4000 4000 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 \
                    3 0 100 1000 200";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                name: "py (rank 1) x".into(),
                parent: 4000,
                ticks: 300,
            })
        );
        assert_eq!(parse_stat("7 (gone) Z 1 7 7 0 -1 0 0 0 0 0 1 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_processes_a_job_started_are_read_with_their_memory_and_cpu() {
        // A shell that starts a busy child: both are descendants of this
        // test, the child a grandchild.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & wait"])
            .spawn()
            .unwrap();
        let mut meter = ProcessMeter::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut busy = None;
        while busy.is_none() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let processes = meter.read(&[], Some(std::process::id()));
            assert!(
                processes.iter().any(|p| p.pid == shell.id()),
                "the started process is read: {processes:?}"
            );
            busy = processes
                .into_iter()
                .find(|p| p.pid != shell.id() && p.cpu.is_some_and(|cpu| cpu > 10.0));
        }
        for pid in descendants(Path::new("/proc"), shell.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = shell.kill();
        let _ = shell.wait();
        let busy = busy.expect("the busy grandchild is read with its CPU use");
        assert_eq!(busy.name, "sh");
        assert!(busy.memory.is_some_and(|m| m > 0), "{busy:?}");
        // A pid given (a rank's) is read too; one that is not there is not.
        let mine = meter.read(&[std::process::id(), u32::MAX - 1], None);
        assert_eq!(
            mine.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [std::process::id()]
        );
    }
}
