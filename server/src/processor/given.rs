//! The time the machine has *given* a tool, as opposed to the time that has passed.
//!
//! ffmpeg runs in the idle CPU class (`SCHED_IDLE`, [`super::confine`]): while the dashboard,
//! the database or anything else wants the cores, it waits. Its time limit and its stall
//! watchdog must not count that wait against the job, or a busy machine would fail healthy
//! jobs as "stalled" or "over the time limit". So both count given time: the wall time since
//! the tool started less the longest time any one of its threads has been held back, runnable
//! but waiting for a CPU. The longest, not the sum: threads wait side by side, and the one that
//! waited most bounds how long the tool was held back.
//!
//! A thread's finished waits are in `/proc/<pid>/task/<tid>/schedstat` (its second field), but
//! Linux adds a wait there only when the thread gets the CPU again, so a thread starved right
//! now shows none of its current wait. The clock therefore samples: a thread that is runnable
//! (`R`) and has had no CPU time since an earlier sample has been waiting at least since that
//! sample. Each [`GivenClock::elapsed`] is one sample; the run loop takes one per progress
//! tick, so the error is at most a tick, towards counting the wait as given (the limits then
//! fire no later than they did on wall time). Where `/proc` cannot be read (another OS, the tool
//! gone) nothing is held back and given time is wall time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Counts a tool's given time from its start.
#[derive(Debug)]
pub struct GivenClock {
    pid: Option<u32>,
    started: Instant,
    /// Each live thread's CPU time at the last sample, and since when it has had none while
    /// runnable.
    threads: HashMap<u32, Seen>,
    /// The longest hold-back seen so far (kept when its thread exits).
    held: Duration,
    /// The last [`GivenClock::elapsed`].
    last: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    ran_ns: u64,
    since: Instant,
}

impl GivenClock {
    /// Starts counting for the process `pid` (just spawned).
    pub fn start(pid: Option<u32>) -> GivenClock {
        GivenClock {
            pid,
            started: Instant::now(),
            threads: HashMap::new(),
            held: Duration::ZERO,
            last: Duration::ZERO,
        }
    }

    /// Samples the tool's threads: wall time since the start, less the time it was held back.
    pub fn elapsed(&mut self) -> Duration {
        let now = Instant::now();
        if let Some(pid) = self.pid {
            let held = self.held_back(pid, now);
            self.held = self.held.max(held);
        }
        self.last = now.duration_since(self.started).saturating_sub(self.held);
        self.last
    }

    /// The given time at the last sample, without sampling.
    pub fn last(&self) -> Duration {
        self.last
    }

    /// The longest any live thread of `pid` has been held back: its finished waits, and the
    /// current one if it is runnable and has had no CPU since an earlier sample.
    fn held_back(&mut self, pid: u32, now: Instant) -> Duration {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Duration::ZERO;
        };
        let mut seen = HashMap::with_capacity(self.threads.len());
        let mut longest = Duration::ZERO;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let path = task.path();
            let Some((ran_ns, waited)) = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|stat| schedstat(&stat))
            else {
                continue;
            };
            let runnable = std::fs::read_to_string(path.join("stat"))
                .is_ok_and(|stat| state(&stat) == Some('R'));
            let now_seen = match self.threads.get(&tid) {
                Some(before) if runnable && before.ran_ns == ran_ns => *before,
                _ => Seen { ran_ns, since: now },
            };
            let waiting = if runnable {
                now.duration_since(now_seen.since)
            } else {
                Duration::ZERO
            };
            longest = longest.max(waited + waiting);
            seen.insert(tid, now_seen);
        }
        self.threads = seen;
        longest
    }
}

/// CPU time and finished run-queue waits in a `schedstat` line: "<on-cpu ns> <waiting ns>
/// <timeslices>".
fn schedstat(line: &str) -> Option<(u64, Duration)> {
    let mut fields = line.split_whitespace();
    let ran = fields.next()?.parse().ok()?;
    let waited = fields.next()?.parse().ok()?;
    Some((ran, Duration::from_nanos(waited)))
}

/// The state letter in a `/proc/.../stat` line ("1234 (name) R …"); the name may hold spaces
/// and parentheses, so it is read after the last `)`.
fn state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// Kills the child when dropped, so a failed assertion leaves no spinner behind.
    struct Spawned(Child);
    impl Drop for Spawned {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn(program: &str, args: &[&str]) -> Spawned {
        Spawned(Command::new(program).args(args).spawn().unwrap())
    }

    const SPIN: &str = "while :; do :; done";

    #[test]
    fn proc_lines_are_read() {
        assert_eq!(
            schedstat("225591148 415923367 624\n"),
            Some((225_591_148, Duration::from_nanos(415_923_367)))
        );
        assert_eq!(schedstat("garbage"), None);
        assert_eq!(state("42 (a (b) c) R 1 42 42 0"), Some('R'));
        assert_eq!(state("42 (sleep) S 1"), Some('S'));
    }

    /// Samples `clock` every 100 ms for `secs` seconds, as the run loop does each tick.
    fn sample_for(clock: &mut GivenClock, secs: u64) -> Duration {
        for _ in 0..secs * 10 {
            std::thread::sleep(Duration::from_millis(100));
            clock.elapsed();
        }
        clock.elapsed()
    }

    #[test]
    fn a_tool_that_gets_the_cpu_it_wants_is_given_all_its_time() {
        // Sleeping is not waiting for a CPU.
        let tool = spawn("sleep", &["5"]);
        let mut clock = GivenClock::start(Some(tool.0.id()));
        let given = sample_for(&mut clock, 2);
        assert!(given >= Duration::from_millis(1900), "{given:?}");
        assert_eq!(clock.last(), given);
    }

    #[test]
    fn an_idle_class_tool_behind_a_busy_core_is_given_little() {
        // On one core, an idle-class spinner beside an ordinary one gets almost nothing.
        let busy = spawn("taskset", &["-c", "0", "sh", "-c", SPIN]);
        let idle = spawn(
            "taskset",
            &["-c", "0", "chrt", "--idle", "0", "sh", "-c", SPIN],
        );
        let mut clock = GivenClock::start(Some(idle.0.id()));
        let given = sample_for(&mut clock, 2);
        drop(busy);
        assert!(given <= Duration::from_millis(1000), "{given:?}");
    }
}
