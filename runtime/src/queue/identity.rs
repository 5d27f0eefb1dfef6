//! Executor identity: one live process per executor ID. Two processes that share
//! an ID recover each other's live workflows at launch and run them twice, so
//! launch refuses an ID that a live process holds, unless that process is this
//! one's previous life (a restart after a crash, which must take its work back).
//!
//! Each launch records its process as `{host}:{pid}:{start time}`. A holder on this
//! host is alive if that pid still runs with that start time (the pid may have been
//! reused). A holder elsewhere is alive if its heartbeat moves before the executor
//! timeout would declare it dead.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// The default executor ID: the host name (a pod's name in Kubernetes), stable
/// across restarts of the same process slot.
pub(crate) fn default_executor_id() -> String {
    host().unwrap_or_else(|| "local".to_owned())
}

fn host() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// This process, as recorded in `executors.process`.
pub(crate) fn this_process() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", host().unwrap_or_default(), start_time(pid).unwrap_or_default())
}

/// A running process's start time (clock ticks since boot), from `/proc`; `None`
/// if there is no such process or it has exited (a zombie not yet reaped).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Fails if a live process other than this one holds `executor`.
pub(crate) async fn check_free(store: &Store, executor: &str, timeout: Duration) -> Result<()> {
    let Some((age_ms, holder)) = store.executor_holder(executor).await? else { return Ok(()) };
    if age_ms as u128 >= timeout.as_millis() {
        return Ok(()); // silent past the timeout: declared dead, or about to be
    }
    let holder = holder.unwrap_or_default();
    let mine = this_process();
    let mut parts = holder.splitn(3, ':');
    let (host, pid, start) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let held = |how: String| {
        Err(Error::Config(format!(
            "executor ID `{executor}` is held by a live process ({how}): each process needs an executor ID of its own, kept across its restarts; set EXACTLY_EXECUTOR_ID or Runtime::builder().executor_id(..) (e.g. a StatefulSet pod's name, `%H-%i` in a systemd template unit, or the host name and a slot number)"
        )))
    };
    if holder == mine {
        return Ok(()); // this process, launching again after a shutdown
    }
    if !host.is_empty() && Some(host) == self::host().as_deref() {
        let alive = pid.parse::<u32>().ok().and_then(start_time).map(|t| t.to_string());
        return match alive {
            Some(t) if t == start => held(format!("pid {pid} on this host, heartbeat {age_ms} ms ago")),
            _ => Ok(()), // its previous life on this host has ended
        };
    }
    // Elsewhere: alive if its heartbeat moves before the timeout runs out.
    let watching = tokio::time::Instant::now();
    let deadline = watching + timeout.saturating_sub(Duration::from_millis(age_ms as u64));
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Without a new heartbeat its age grows by the time watched; a margin for clocks.
        let unmoved = age_ms + watching.elapsed().as_millis() as i64 - 100;
        match store.executor_holder(executor).await? {
            Some((newer, _)) if newer < unmoved => {
                return held(format!("{holder}, heartbeating"));
            }
            Some(_) => {}
            None => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_named_by_host_pid_and_start_time() {
        let me = this_process();
        let parts: Vec<&str> = me.splitn(3, ':').collect();
        assert_eq!(parts[1], std::process::id().to_string());
        assert!(parts[2].parse::<u64>().is_ok(), "{me}");
        assert_eq!(start_time(std::process::id()), parts[2].parse().ok());
        assert!(!default_executor_id().is_empty());
    }
}
