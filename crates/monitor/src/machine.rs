//! What this machine has: its memory, and its GPUs' memory (through NVML,
//! loaded at run time). Read to refuse a run that cannot fit before it is
//! built, rather than let an allocation abort the process.

/// The memory this process may use, in bytes: the machine's (MemTotal of
/// /proc/meminfo), or its control group's limit when that is lower (a
/// container is killed well below the machine's memory).
#[must_use]
pub fn memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = kib_field(&meminfo, "MemTotal:")?;
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    })
    .min();
    Some(limit.map_or(total, |limit| limit.min(total)))
}

/// The memory of GPU `index` in bytes, when NVML can say.
#[must_use]
pub fn gpu_memory(index: usize) -> Option<u64> {
    let nvml = nvml_wrapper::Nvml::init().ok()?;
    let device = nvml.device_by_index(u32::try_from(index).ok()?).ok()?;
    device.memory_info().ok().map(|m| m.total)
}

/// A `NAME: N kB` field of a /proc file, in bytes.
#[must_use]
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let meminfo = "MemTotal:       16384 kB\nMemAvailable:    4096 kB\n";
        assert_eq!(kib_field(meminfo, "MemTotal:"), Some(16384 * 1024));
        assert_eq!(kib_field(meminfo, "Missing:"), None);
        assert!(memory().is_some_and(|bytes| bytes > 0));
    }
}
