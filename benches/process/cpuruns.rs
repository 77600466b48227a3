//! cpuruns: runs commands many times with their standard input from a file and prints, for
//! each, the median CPU time (user+sys), wall time and peak RSS of the process, each measured
//! exactly for that one process with wait4(2) (no shell in between). The commands take turns
//! run by run, so that a busy moment of a shared machine weighs on all of them alike.
//!
//! Built by benches/process/peers.sh with plain `rustc -O` (no dependencies, offline).
//!
//! Usage: cpuruns RUNS WARMUP STDIN_FILE NAME PROGRAM [ARGS...] [-- NAME PROGRAM [ARGS...]]...
//! Prints one line per command:
//! NAME runs=N cpu_med_ms=.. cpu_min_ms=.. wall_med_ms=.. wall_min_ms=.. rss_med_kb=.. rss_max_kb=.. fails=N

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Instant;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// `struct rusage` on 64-bit Linux: two timevals, then 14 longs.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

struct Sample {
    cpu_us: i64,
    wall_us: i64,
    rss_kb: i64,
}

struct Job {
    name: String,
    program: String,
    args: Vec<String>,
    samples: Vec<Sample>,
    fails: usize,
}

fn run_once(program: &str, args: &[String], input: &str) -> Result<(Sample, bool), String> {
    let stdin = File::open(input).map_err(|e| format!("{input}: {e}"))?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut status = 0i32;
    let mut usage = Rusage::default();
    // SAFETY: plain FFI call with valid pointers to locals; the child is ours and not yet reaped.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall_us = start.elapsed().as_micros() as i64;
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let cpu_us = usage.utime.sec * 1_000_000
        + usage.utime.usec
        + usage.stime.sec * 1_000_000
        + usage.stime.usec;
    // Exited normally with status 0?
    let ok = status & 0x7f == 0 && (status >> 8) & 0xff == 0;
    Ok((
        Sample {
            cpu_us,
            wall_us,
            rss_kb: usage.maxrss,
        },
        ok,
    ))
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!(
            "usage: cpuruns RUNS WARMUP STDIN_FILE NAME PROGRAM [ARGS...] [-- NAME PROGRAM [ARGS...]]..."
        );
        std::process::exit(2);
    }
    let runs: usize = args[0].parse().expect("RUNS");
    let warmup: usize = args[1].parse().expect("WARMUP");
    let input = &args[2];
    let mut jobs: Vec<Job> = Vec::new();
    for group in args[3..].split(|a| a == "--") {
        if group.len() < 2 {
            eprintln!("cpuruns: each command needs a name and a program");
            std::process::exit(2);
        }
        jobs.push(Job {
            name: group[0].clone(),
            program: group[1].clone(),
            args: group[2..].to_vec(),
            samples: Vec::with_capacity(runs),
            fails: 0,
        });
    }
    for i in 0..warmup + runs {
        for job in &mut jobs {
            match run_once(&job.program, &job.args, input) {
                Ok((s, ok)) => {
                    if !ok {
                        job.fails += 1;
                    }
                    if i >= warmup {
                        job.samples.push(s);
                    }
                }
                Err(e) => {
                    eprintln!("cpuruns: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    let ms = |us: i64| us as f64 / 1000.0;
    for job in &jobs {
        let cpu: Vec<i64> = job.samples.iter().map(|s| s.cpu_us).collect();
        let wall: Vec<i64> = job.samples.iter().map(|s| s.wall_us).collect();
        let rss: Vec<i64> = job.samples.iter().map(|s| s.rss_kb).collect();
        println!(
            "{} runs={} cpu_med_ms={:.3} cpu_min_ms={:.3} wall_med_ms={:.3} wall_min_ms={:.3} rss_med_kb={} rss_max_kb={} fails={}",
            job.name,
            job.samples.len(),
            ms(median(cpu.clone())),
            ms(cpu.iter().copied().min().unwrap_or(0)),
            ms(median(wall.clone())),
            ms(wall.iter().copied().min().unwrap_or(0)),
            median(rss.clone()),
            rss.iter().copied().max().unwrap_or(0),
            job.fails,
        );
    }
}
