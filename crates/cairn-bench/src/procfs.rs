//! Memory figures of a process from `/proc/<pid>/status` (Linux).

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let prefix = format!("{field}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status has no {field}"))?;
    let value = line[prefix.len()..]
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("empty {field} in /proc/{pid}/status"))?;
    Ok(value.parse()?)
}

/// Resident set size now, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Peak resident set size (high-water mark), KiB.
pub fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Resets the peak resident set size (`VmHWM`) of `pid` to its current RSS (Linux
/// `clear_refs` value 5), so the next reading is the peak of what follows. Needs permission
/// to write `/proc/<pid>/clear_refs` (the owner or root).
pub fn reset_hwm(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5")?;
    Ok(())
}
