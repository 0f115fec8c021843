//! Operating system limits a run must fit in: open files (`RLIMIT_NOFILE`, raised to the hard
//! limit) and ephemeral ports per source address. Fails early with advice instead of midway.

use anyhow::bail;

/// File descriptors kept aside for the runtime, HTTP pool, /proc reads and stdio.
const FD_RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the resulting soft limit.
pub fn raise_nofile() -> u64 {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < hard => {
            match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
                Ok(()) => hard,
                Err(_) => soft,
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Checks that `sockets` WebSocket connections plus `other` sockets (publish requests) fit in
/// the open file limit of this process.
pub fn check_fds(sockets: usize, other: usize, soft_limit: u64) -> anyhow::Result<()> {
    let reserve = FD_RESERVE + other as u64;
    let needed = sockets as u64 + reserve;
    if needed > soft_limit {
        let per_process = soft_limit.saturating_sub(reserve).max(1);
        let processes = (sockets as u64).div_ceil(per_process);
        bail!(
            "{sockets} connections need about {needed} open files but this process may open at \
             most {soft_limit} (hard limit of RLIMIT_NOFILE); spread the run over {processes} or \
             more processes of at most {per_process} connections each (several herald-loadtest \
             instances with different --source-addrs), or raise the hard limit"
        );
    }
    Ok(())
}

/// Number of local ports available per source address (`ip_local_port_range`).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            Some(hi.saturating_sub(lo) + 1)
        })
        .unwrap_or(28_232)
}

/// Checks that `sockets` simultaneous connections to one server address fit in the ephemeral
/// ports of `addresses` source addresses.
pub fn check_ports(sockets: usize, addresses: usize, ports_per_address: u64) -> anyhow::Result<()> {
    let capacity = ports_per_address * addresses.max(1) as u64;
    // Keep a margin for sockets in TIME_WAIT and other users of the same addresses.
    if sockets as u64 > capacity * 9 / 10 {
        let need = (sockets as u64 * 10 / 9).div_ceil(ports_per_address.max(1));
        bail!(
            "{sockets} connections do not fit in the {ports_per_address} ephemeral ports of \
             {addresses} source address(es); pass --source-addrs with at least {need} addresses, \
             e.g. --source-addrs 127.0.0.2-127.0.0.{}",
            need + 1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_check_suggests_several_processes() {
        assert!(check_fds(15_000, 256, 20_000).is_ok());
        let e = check_fds(50_000, 256, 20_000).unwrap_err().to_string();
        assert!(e.contains("spread the run over 3"), "{e}");
    }

    #[test]
    fn port_check_counts_addresses() {
        assert!(check_ports(20_000, 1, 28_232).is_ok());
        assert!(check_ports(30_000, 1, 28_232).is_err());
        assert!(check_ports(100_000, 19, 28_232).is_ok());
    }
}
