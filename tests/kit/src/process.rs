//! Processes, seen through /proc: liveness, children, signals, and running a command with a
//! deadline.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::thread;
use std::time::{Duration, Instant};

/// (state, ppid) from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live (non-zombie) process.
///
/// The daemonized nginx master is reparented to PID 1, which in containers often never reaps,
/// so an exited master can linger as a zombie: that counts as gone.
pub fn process_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if is_live_state(state))
}

fn is_live_state(state: char) -> bool {
    state != 'Z' && state != 'X'
}

/// Live child processes of `ppid`, sorted.
pub fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((state, pp)) if pp == ppid && is_live_state(state))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Session id of `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Live helper processes (`comm` "status-alert") in the session of `pid`: the module's helper
/// is double-forked, so it is nobody's child in nginx, but it stays in nginx's session.
pub fn helper_processes(pid: u32) -> Vec<u32> {
    let Some(session) = session_of(pid) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| process_alive(p) && session_of(p) == Some(session))
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "status-alert")
        })
        .collect();
    pids.sort_unstable();
    pids
}

pub(crate) fn is_nginx_process(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("nginx"))
        .unwrap_or(false)
}

/// Sends signal `sig` ("HUP", "SIGHUP" or "1") to `pid`; false if the name is unknown or
/// kill(2) failed. Never signals a process group: pid 0 is refused.
pub fn send_signal(pid: u32, sig: &str) -> bool {
    let name = sig.strip_prefix("SIG").unwrap_or(sig);
    let signal = match name.parse::<i32>() {
        Ok(n) => Signal::try_from(n),
        Err(_) => Signal::from_str(&format!("SIG{name}")),
    };
    match (signal, i32::try_from(pid)) {
        (Ok(signal), Ok(pid)) if pid > 0 => kill(Pid::from_raw(pid), signal).is_ok(),
        _ => false,
    }
}

pub(crate) struct CommandOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` with stdout/stderr sent to files in `dir` rather than pipes: a daemonizing nginx
/// hands its descriptors to the background master, and reading a pipe to EOF would then block
/// for as long as that master lives.
pub(crate) fn run_with_timeout(
    cmd: &mut Command,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> Result<CommandOutput, String> {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let out = fs::File::create(&out_path).map_err(|e| format!("create {out_path:?}: {e}"))?;
    let err = fs::File::create(&err_path).map_err(|e| format!("create {err_path:?}: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not exit within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Ok(CommandOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}
