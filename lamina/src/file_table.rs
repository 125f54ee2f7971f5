//! The process's file table, made ready before a node serves.
//!
//! Linux grows a process's table of file descriptors by doubling it when a new descriptor
//! does not fit, and the thread that opened it waits for an RCU grace period
//! (`synchronize_rcu` in `expand_files`) before it may free the old table. Under load on
//! two cores that wait took a runtime thread away for several milliseconds at each
//! doubling past 256 and 1,024 descriptors (an `accept` or an environment's `openat`),
//! stalling every request on that thread. Opening one descriptor at a high slot before
//! serving makes the kernel size the table once, while nothing waits on it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Slots made ready up front: every connection and environment (each holds a few
/// directory descriptors) of a busy node. The table costs 8 bytes a slot, in the kernel.
pub const READY_SLOTS: u64 = 16_384;

/// What [`prepare`] left the process with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The soft limit on open files, raised to the hard limit where it was lower.
    pub open_files_limit: u64,
    /// Descriptor slots the table now has room for without growing.
    pub ready_slots: u64,
}

/// Raises the soft limit on open files to the hard limit (as servers that hold many
/// connections do) and sizes the file table for `READY_SLOTS`, or the limit if lower.
pub fn prepare() -> std::io::Result<Prepared> {
    let mut limit = open_files_limit()?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        if set_open_files_limit(&raised).is_ok() {
            limit = raised;
        }
    }
    let ready_slots = READY_SLOTS.min(limit.rlim_cur);
    let null = std::fs::File::open("/dev/null")?;
    let highest = libc::c_int::try_from(ready_slots.saturating_sub(1)).unwrap_or(libc::c_int::MAX);
    drop(duplicate_at_or_above(&null, highest)?);
    Ok(Prepared {
        open_files_limit: limit.rlim_cur,
        ready_slots,
    })
}

#[allow(unsafe_code)]
fn open_files_limit() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live, owned value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

#[allow(unsafe_code)]
fn set_open_files_limit(limit: &libc::rlimit) -> std::io::Result<()> {
    // SAFETY: `setrlimit` only reads the `rlimit` it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A duplicate of `file` at the lowest free slot from `slot` up (never one in use).
#[allow(unsafe_code)]
fn duplicate_at_or_above(file: &impl AsRawFd, slot: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: `F_DUPFD_CLOEXEC` takes a descriptor that `file` keeps open for the call and
    // returns a new one that nothing else owns; it never closes or replaces another.
    let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, slot) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own account of the table: the `FDSize` line of /proc/self/status.
    fn table_slots() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_table_has_room_for_the_ready_slots_and_the_limit_is_the_hard_one() {
        let prepared = prepare().unwrap();
        let limit = open_files_limit().unwrap();
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(prepared.open_files_limit, limit.rlim_cur);
        assert_eq!(prepared.ready_slots, READY_SLOTS.min(limit.rlim_max));
        assert!(
            table_slots() >= prepared.ready_slots,
            "{} slots",
            table_slots()
        );
        // The descriptor that sized the table is closed again.
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap();
        assert!(
            highest < prepared.ready_slots - 1,
            "descriptor {highest} is open"
        );
    }
}
