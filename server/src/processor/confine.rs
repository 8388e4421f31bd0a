//! How ffmpeg and ffprobe are started: confined, bounded, and never outliving the server.
//!
//! The inputs are files strangers chose, so the tools that decode them run with as little as
//! the job needs (decision 007 has the threat model):
//! - **Their own process group**, so a stop reaches everything they started ([`Group`]
//!   signals the whole group, and kills it when dropped).
//! - **The parent-death signal** (`PR_SET_PDEATHSIG`, SIGKILL): if the server dies, even by
//!   `kill -9`, the kernel kills the tool too, as it already does for the embedded Postgres.
//!   It is set after the change of user below, since changing credentials clears it, and the
//!   child checks its parent is still the server (the server may have died in between).
//! - **Another user** when the server runs as root ([`RunAs`], `nobody` unless set), so a
//!   decoder bug cannot write the server's files or read the database's.
//! - **The idle CPU class** (`SCHED_IDLE`, unless switched off) **and a lower priority**
//!   (`nice`), so the dashboard stays responsive while every core transcodes: a niced ffmpeg
//!   still takes its weighted share of each core from the server (on two cores, a request
//!   waited up to 8x longer than on an idle machine), whereas an idle-class one runs only on CPU
//!   time nobody else wants. The server's own work is short bursts, so ffmpeg loses little
//!   (the processor bench measures both), and **a cap on address space** (`RLIMIT_AS`) with glibc's malloc arenas
//!   bounded, so one input cannot take the machine's memory. Threads are capped with
//!   ffmpeg's own `-threads` ([`Confinement::threads`]).

use std::io;
use std::process::Stdio;

use tokio::process::Command;

pub use crate::unix_user::{is_root, RunAs};

/// What the tools are confined to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confinement {
    /// Run as this user (set when the server runs as root).
    pub run_as: Option<RunAs>,
    /// The tools' nice value (0 leaves the server's).
    pub nice: i32,
    /// Run the tools in the idle scheduling class (`SCHED_IDLE`): they get the CPU only when
    /// nothing else wants it.
    pub idle_cpu: bool,
    /// The most address space one tool may map, in bytes.
    pub memory_bytes: Option<u64>,
    /// The most threads ffmpeg uses to decode, and to encode.
    pub threads: Option<usize>,
}

impl Confinement {
    /// Nothing confined: the tools run as the server does (tests of other things).
    pub const NONE: Confinement = Confinement {
        run_as: None,
        nice: 0,
        idle_cpu: false,
        memory_bytes: None,
        threads: None,
    };

    /// A command for `program`, confined as set, with no stdin, in its own process group,
    /// killed when its handle is dropped.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            // Bounded arenas keep the address space near what is really used.
            .env("MALLOC_ARENA_MAX", "2");
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let (nice, idle_cpu, memory) = (self.nice, self.idle_cpu, self.memory_bytes);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (sched_setscheduler, setpriority, setrlimit, prctl,
        // getppid: system calls); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if idle_cpu {
                    // Lowering one's own class needs no privilege.
                    let param = libc::sched_param { sched_priority: 0 };
                    if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if nice != 0 && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(bytes) = memory {
                    let limit = libc::rlimit {
                        rlim_cur: bytes as libc::rlim_t,
                        rlim_max: bytes as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The server died before the signal was armed.
                    return Err(io::Error::other("the server is gone"));
                }
                Ok(())
            });
        }
        command
    }

    /// `-threads` for ffmpeg's decoder and encoder: inserted before the input and before the
    /// output (the last argument).
    pub fn apply_threads(&self, args: &mut Vec<String>) {
        let Some(threads) = self.threads else { return };
        let threads = threads.to_string();
        let output = args.len().saturating_sub(1);
        args.splice(output..output, ["-threads".to_owned(), threads.clone()]);
        if let Some(input) = args.iter().position(|arg| arg == "-i") {
            args.splice(input..input, ["-threads".to_owned(), threads]);
        }
    }
}

/// A started tool's process group: [`Group::signal`] reaches every process in it, and dropping
/// it kills them all (ffmpeg may be stopped mid-job, or the job's future dropped).
pub struct Group(Option<libc::pid_t>);

impl Group {
    /// The group led by the child `pid` (from [`Confinement::command`], which makes each
    /// child lead its own group).
    pub fn of(pid: Option<u32>) -> Group {
        Group(pid.map(|pid| pid as libc::pid_t))
    }

    /// Send `signal` to every process in the group.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.0 {
            // SAFETY: killpg only sends a signal; a group that is gone answers ESRCH.
            unsafe { libc::killpg(pgid, signal) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_go_before_the_input_and_before_the_output() {
        let confine = Confinement {
            threads: Some(3),
            ..Confinement::NONE
        };
        let mut args: Vec<String> = ["-y", "-i", "in", "-c:v", "x", "out"]
            .map(String::from)
            .to_vec();
        confine.apply_threads(&mut args);
        assert_eq!(args.join(" "), "-y -threads 3 -i in -c:v x -threads 3 out");
        let mut unchanged = args.clone();
        Confinement::NONE.apply_threads(&mut unchanged);
        assert_eq!(unchanged, args);
    }

    #[tokio::test]
    async fn a_confined_tool_runs_idle_niced_in_its_own_group_with_its_memory_capped() {
        let confine = Confinement {
            nice: 7,
            idle_cpu: true,
            memory_bytes: Some(512 << 20),
            ..Confinement::NONE
        };
        // Field 5 of /proc/self/stat is the process group, 19 the nice value, 41 the
        // scheduling policy (5: SCHED_IDLE).
        let out = confine
            .command("sh")
            .args([
                "-c",
                "echo $$ $(cut -d' ' -f5,19,41 /proc/self/stat) $(ulimit -v)",
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{text}");
        assert_eq!(
            fields[1], fields[0],
            "the shell leads its own group: {text}"
        );
        assert_eq!(fields[2], "7", "niced: {text}");
        assert_eq!(fields[3], "5", "in the idle class: {text}");
        assert_eq!(fields[4], (512 * 1024).to_string(), "capped: {text}");
    }
}
