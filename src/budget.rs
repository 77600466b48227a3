//! The CPU budget for judging one message: the second line of defence behind linear-time code.
//!
//! A message whose evaluation uses more CPU time than the budget (`cpu_budget_ms`, 2 s by
//! default) is not judged: it goes to the inbox unfiltered, with an `X-Backstop-Error` line, as
//! a message over `max_size` does. Two ways to watch, one outcome:
//! - [`run_within`], for a process that judges one message (`deliver`, `filter`, `check`):
//!   the calling thread evaluates, and a small watchdog thread files or prints the message
//!   unjudged and ends the process when the budget is gone.
//! - [`evaluate_within`] and [`evaluate_keeping_rules`], for commands that go on after the
//!   message (`explain`, several messages, `scan`, the milter): evaluation runs on a thread of
//!   its own, and the caller gets an unjudged evaluation; that thread is left to end. At most
//!   [`MAX_RUNAWAY`] such threads may run on in a process: while that many do, messages are
//!   not judged at all (no new thread starts), so that a stream of hostile messages cannot
//!   take every core of a daemon.
//!
//! CPU time, not wall time, is what counts: a loaded machine slows a message down but does not
//! make it hostile. Wall time bounds it from below (a thread cannot use more CPU than the time
//! that has passed), so the normal path reads no clock at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::config::Config;
use crate::message::EnvVars;
use crate::rules::RuleSet;
use crate::verdict::{Evaluation, evaluate};

/// The evaluating thread's stack: as deep as a main thread's usual 8 MiB limit, and more
/// (address space only; pages are used as they are touched).
const STACK: usize = 64 * 1024 * 1024;

/// The shortest wait between two looks at the evaluating thread's CPU time.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// The most evaluating threads that used up their budget and still run, in one process.
pub const MAX_RUNAWAY: usize = 4;

/// The process's count of evaluating threads left running past their budget.
static RUNAWAYS: Runaways = Runaways::new(MAX_RUNAWAY);

/// A count of evaluating threads left running past their budget, and its cap.
struct Runaways {
    count: AtomicUsize,
    max: usize,
}

impl Runaways {
    const fn new(max: usize) -> Runaways {
        Runaways {
            count: AtomicUsize::new(0),
            max,
        }
    }

    /// The unjudged evaluation to give instead of starting a thread, when the cap is reached.
    fn refuse(&self) -> Option<Evaluation> {
        let n = self.count.load(Ordering::SeqCst);
        (n >= self.max).then(|| {
            unjudged(&format!(
                "{n} earlier evaluations used up their CPU budget and still run (at most {} may)",
                self.max
            ))
        })
    }
}

/// The state of one evaluating thread, shared with its caller.
const EVAL_RUNNING: u8 = 0;
const EVAL_DONE: u8 = 1;
const EVAL_ABANDONED: u8 = 2;

/// Ends an evaluating thread's part (also when it panics): a thread its caller gave up on
/// leaves the count of runaways.
struct Ending {
    state: Arc<AtomicU8>,
    runaways: &'static Runaways,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if self
            .state
            .compare_exchange(EVAL_RUNNING, EVAL_DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.runaways.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What the evaluating thread sends: its thread id first, then the result.
enum Report {
    Started(i32),
    Done(Box<(Evaluation, RuleSet)>),
}

/// Evaluates `raw` as [`evaluate`] does, within the config's CPU budget. The rules move to the
/// evaluating thread (their regexes compile lazily, so they are not shared).
///
/// A panic in the evaluation is resumed on the calling thread, as if it had evaluated. When no
/// thread can be started, the message is not judged either.
pub fn evaluate_within(
    raw: &Arc<Vec<u8>>,
    config: &Arc<Config>,
    rules: RuleSet,
    env: &EnvVars,
) -> Evaluation {
    evaluate_keeping_rules(raw, config, rules, env).0
}

/// As [`evaluate_within`], and gives the rules back when the evaluation ended in time (for
/// `scan`, which judges one message after another with the same rules, compiled as needed).
pub fn evaluate_keeping_rules(
    raw: &Arc<Vec<u8>>,
    config: &Arc<Config>,
    rules: RuleSet,
    env: &EnvVars,
) -> (Evaluation, Option<RuleSet>) {
    if let Some(eval) = RUNAWAYS.refuse() {
        return (eval, Some(rules));
    }
    let budget = Duration::from_millis(config.cpu_budget_ms);
    let job = (raw.clone(), config.clone(), rules, env.clone());
    on_thread_within(budget, &RUNAWAYS, move || {
        let (raw, config, rules, env) = job;
        spin_fault();
        let eval = evaluate(&raw, &config, &rules, &env);
        (eval, rules)
    })
}

/// Runs `job` on a thread of its own within `budget` of its CPU time; past it, leaves the
/// thread to end and counts it in `runaways` until it does.
fn on_thread_within(
    budget: Duration,
    runaways: &'static Runaways,
    job: impl FnOnce() -> (Evaluation, RuleSet) + Send + 'static,
) -> (Evaluation, Option<RuleSet>) {
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(AtomicU8::new(EVAL_RUNNING));
    let ending = Ending {
        state: state.clone(),
        runaways,
    };
    // The thread starts on this CPU, where this one waits: see [`SameCpu`].
    let here = SameCpu::pin();
    let widen = here.0;
    let spawned = std::thread::Builder::new()
        .name("evaluate".into())
        .stack_size(STACK)
        .spawn(move || {
            SameCpu::widen(widen.as_ref());
            let _ending = ending;
            let _ = tx.send(Report::Started(
                rustix::thread::gettid().as_raw_nonzero().get(),
            ));
            let (eval, rules) = job();
            let _ = tx.send(Report::Done(Box::new((eval, rules))));
        });
    drop(here);
    let handle = match spawned {
        Ok(handle) => handle,
        Err(e) => return (unjudged(&format!("no thread to judge it in ({e})")), None),
    };
    let mut tid = None;
    let mut wait = budget;
    loop {
        match rx.recv_timeout(wait) {
            Ok(Report::Started(id)) => tid = Some(id),
            Ok(Report::Done(done)) => {
                let (eval, rules) = *done;
                return (eval, Some(rules));
            }
            Err(RecvTimeoutError::Disconnected) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => return (unjudged("the evaluation ended without a result"), None),
            },
            Err(RecvTimeoutError::Timeout) => {
                // Without /proc, the wall time waited stands for the CPU time used.
                let used = tid.and_then(thread_cpu_time).unwrap_or(budget);
                if used >= budget {
                    // Counted first, so that the thread's own uncounting comes after.
                    runaways.count.fetch_add(1, Ordering::SeqCst);
                    if state
                        .compare_exchange(
                            EVAL_RUNNING,
                            EVAL_ABANDONED,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_err()
                    {
                        // It ended just now: not a runaway.
                        runaways.count.fetch_sub(1, Ordering::SeqCst);
                    }
                    let why = format!(
                        "the evaluation used up its CPU budget ({} ms, cpu_budget_ms)",
                        budget.as_millis()
                    );
                    return (unjudged(&why), None);
                }
                wait = (budget - used).max(MIN_WAIT);
            }
        }
    }
}

/// The watchdog's stack: it only waits, reads a clock and, when the budget is gone, files or
/// prints one message.
const WATCHDOG_STACK: usize = 256 * 1024;

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const OVERRUN: u8 = 2;

/// Runs `work` (one message's evaluation) on the calling thread within `budget` of CPU time,
/// for the commands that judge one message per process (`deliver`, `filter`, `check`).
///
/// A watchdog thread with a small stack waits; only once `budget` of wall time has passed does
/// it read the process's CPU clock (a thread cannot use more CPU than the time that passed).
/// If `work` has used up the budget by then, the watchdog runs `overrun`, which files or prints
/// the message unjudged, and ends the process with the status `overrun` returns; `work`'s
/// result is never used. The evaluation itself stays on the calling thread, whose stack and
/// heap the process has already set up: a thread of its own costs a delivery 0.4 ms, most of a
/// clean delivery's decision (measured with `benches/process/cpuruns.rs`). `overrun` owns what
/// it needs, since the watchdog is not waited for.
pub fn run_within<T>(
    budget: Duration,
    work: impl FnOnce() -> T,
    overrun: impl FnOnce() -> u8 + Send + 'static,
) -> T {
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (done, wake) = mpsc::channel::<()>();
    let start = process_cpu_time();
    let watched = state.clone();
    // Not joined: waiting for the watchdog to wake and end would cost the delivery a wake-up
    // of another CPU (see [`SameCpu`]). Dropping `done` sends it on its way; the process may
    // end before it does.
    let watchdog = std::thread::Builder::new()
        .name("budget".into())
        .stack_size(WATCHDOG_STACK)
        .spawn(move || watch(budget, start, &wake, &watched, overrun));
    if watchdog.is_err() {
        // No thread to watch with: the message is judged without a budget.
        return work();
    }
    spin_fault();
    let result = work();
    if state
        .compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // The watchdog took over: it files the message and ends the process.
        loop {
            std::thread::park();
        }
    }
    drop(done);
    result
}

/// The watchdog of [`run_within`]: returns when `wake` says the work is done; else runs
/// `overrun` once the budget is used up and exits with its status.
fn watch(
    budget: Duration,
    start: Duration,
    wake: &mpsc::Receiver<()>,
    state: &AtomicU8,
    overrun: impl FnOnce() -> u8,
) {
    let mut wait = budget;
    loop {
        match wake.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let used = process_cpu_time().saturating_sub(start);
                if used < budget {
                    wait = (budget - used).max(MIN_WAIT);
                    continue;
                }
                if state
                    .compare_exchange(RUNNING, OVERRUN, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    return;
                }
                let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(overrun))
                    .unwrap_or(crate::exit::Exit::TempFail.code());
                std::process::exit(i32::from(status));
            }
        }
    }
}

/// The CPU time this process has used (all its threads; the watchdog's share is nil).
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The evaluation of a message whose judging used up `budget` (for [`run_within`]'s caller).
pub fn over_budget(budget: Duration) -> Evaluation {
    unjudged(&format!(
        "the evaluation used up its CPU budget ({} ms, cpu_budget_ms)",
        budget.as_millis()
    ))
}

/// Test-only: with `BACKSTOP_FAULT=spin` in a debug build, the evaluation never ends (it burns
/// CPU time), as a hostile message that found a slow path would.
fn spin_fault() {
    if cfg!(debug_assertions) && std::env::var("BACKSTOP_FAULT").is_ok_and(|v| v == "spin") {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

/// The evaluation of a message that was not judged.
fn unjudged(what: &str) -> Evaluation {
    let note = format!("{what}: not judged, goes to the inbox");
    let mut eval = Evaluation::unparsed(note.clone(), Default::default());
    eval.error = Some(note);
    eval
}

/// The CPU time a thread of this process has used: the first field of its `schedstat`
/// (nanoseconds on the CPU), else user plus system time from its `stat` (clock ticks).
fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let dir = format!("/proc/self/task/{tid}");
    if let Ok(text) = std::fs::read_to_string(format!("{dir}/schedstat"))
        && let Some(ns) = text.split_whitespace().next().and_then(|f| f.parse().ok())
    {
        return Some(Duration::from_nanos(ns));
    }
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses: utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Pins the calling thread to the CPU it runs on, until dropped, so that a thread it starts
/// meanwhile starts there too (threads inherit their creator's affinity).
///
/// The evaluating thread of [`on_thread_within`] is started and waited for at once: started on
/// the other CPU, it has to wake that CPU, and the waiting one has to be woken back when it
/// ends. On a virtual machine an idle CPU is halted, and each such wake-up costs from a tenth
/// of a millisecond to over one: `backstop check` on 600 corpus messages took 1.0 s with the
/// evaluation on the other CPU and 0.2 s on the same one, for the same 0.2 s of CPU time (`perf
/// stat`). The thread widens its affinity again as soon as it runs ([`SameCpu::widen`]), so that
/// it is pinned only for its start. Where the affinity cannot be read or set (a seccomp filter
/// that answers EPERM), nothing is pinned and the hand-off is only slower.
struct SameCpu(Option<rustix::thread::CpuSet>);

impl SameCpu {
    fn pin() -> SameCpu {
        let Ok(old) = rustix::thread::sched_getaffinity(None) else {
            return SameCpu(None);
        };
        let cpu = rustix::thread::sched_getcpu();
        if cpu >= rustix::thread::CpuSet::MAX_CPU || !old.is_set(cpu) {
            return SameCpu(None);
        }
        let mut one = rustix::thread::CpuSet::new();
        one.set(cpu);
        match rustix::thread::sched_setaffinity(None, &one) {
            Ok(()) => SameCpu(Some(old)),
            Err(_) => SameCpu(None),
        }
    }

    /// Gives the calling thread the CPUs `all` again (the set [`SameCpu::pin`] found).
    fn widen(all: Option<&rustix::thread::CpuSet>) {
        if let Some(all) = all {
            let _ = rustix::thread::sched_setaffinity(None, all);
        }
    }
}

impl Drop for SameCpu {
    fn drop(&mut self) {
        SameCpu::widen(self.0.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_threads_are_capped_and_judging_resumes_when_they_end() {
        static CAPPED: Runaways = Runaways::new(2);
        static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let spin = || {
            STARTED.fetch_add(1, Ordering::SeqCst);
            let mut x = 0u64;
            while !STOP.load(Ordering::SeqCst) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            (
                Evaluation::unparsed(String::new(), Default::default()),
                RuleSet::build(&[], "test").expect("rules"),
            )
        };
        let budget = Duration::from_millis(20);
        for _ in 0..2 {
            assert!(CAPPED.refuse().is_none());
            let (eval, rules) = on_thread_within(budget, &CAPPED, spin);
            assert!(rules.is_none());
            assert!(
                eval.error
                    .as_deref()
                    .is_some_and(|e| e.contains("CPU budget"))
            );
        }
        assert_eq!(CAPPED.count.load(Ordering::SeqCst), 2);
        let refused = CAPPED.refuse().expect("the cap is reached");
        assert!(
            refused
                .error
                .as_deref()
                .is_some_and(|e| e.contains("still run")),
            "{:?}",
            refused.error
        );
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);
        STOP.store(true, Ordering::SeqCst);
        // The spinning threads end: the count goes back to zero (bounded wait, not a timing).
        for _ in 0..3000 {
            if CAPPED.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(CAPPED.count.load(Ordering::SeqCst), 0);
        assert!(CAPPED.refuse().is_none());
        let (eval, rules) = on_thread_within(budget, &CAPPED, spin);
        assert!(eval.error.is_none() && rules.is_some());
    }

    #[test]
    fn a_busy_thread_has_cpu_time_and_an_idle_one_little() {
        let (tx, rx) = mpsc::channel();
        let busy = std::thread::spawn(move || {
            let _ = tx.send(rustix::thread::gettid().as_raw_nonzero().get());
            let mut x = 0u64;
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            std::thread::sleep(Duration::from_secs(5));
            x
        });
        let tid = rx.recv().expect("the thread reports its id");
        std::thread::sleep(Duration::from_millis(400));
        let used = thread_cpu_time(tid).expect("/proc tells a thread's CPU time");
        // It spun for 300 ms of wall time; it cannot have used more CPU than the 400 ms waited.
        assert!(
            used > Duration::ZERO && used <= Duration::from_millis(450),
            "{used:?}"
        );
        let me = thread_cpu_time(rustix::thread::gettid().as_raw_nonzero().get());
        assert!(me.is_some());
        drop(busy);
    }
}
