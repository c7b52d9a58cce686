//! Model-checker speed in unique states per second: icepact's default check against
//! stateright's own two-phase-commit example, measured in the same run.
//!
//! ```text
//! cargo bench -p icepact-models --bench checker             # both targets
//! cargo bench -p icepact-models --bench checker -- icepact  # icepact only
//! cargo bench -p icepact-models --bench checker -- 2pc      # stateright's example only
//! ```
//!
//! Environment knobs:
//! - `ICEPACT_BENCH_ROUNDS` (default 3): rounds; each round runs the example, then icepact.
//! - `ICEPACT_BENCH_RMS` (default [`DEFAULT_RMS`]): resource managers of `2pc check`.
//! - `CARGO_TARGET_DIR`: the workspace target directory (default `<workspace>/target`).
//!
//! The targets:
//! - **2pc**: stateright's unmodified `examples/2pc.rs`, built from the crate source that cargo
//!   downloaded for this workspace (located with `cargo metadata`, never copied into this
//!   repository) into `<target>/stateright-example`, and run as `2pc check <RMS>`: stateright's
//!   depth-first checker on `num_cpus::get()` threads with the system allocator. The first
//!   run builds it (about 2 minutes; its dev-dependencies come from crates.io); if that
//!   fails, the bench says so and still measures icepact.
//! - **icepact**: [`icepact_models::check`] with [`CheckOptions::default`] (2 peers, the
//!   default depth-first search on 2 threads) in this process, which installs mimalloc as the
//!   global allocator like the `icepact-check` binary does, so the figure is the one users get.
//!
//! The two differ in model and in checker (`check` runs icepact's own depth-first search,
//! models/src/dfs.rs, not stateright's), so the ratio compares what each user gets, not one
//! checker on two models.
//!
//! Timing. icepact's seconds are the search's own ([`VerdictRow::seconds`]: its start to the
//! end of its threads). The example only reports through stateright's `report()`, which polls
//! the checker once a second and prints `sec=` as whole seconds, so both its `sec=` and the
//! wall clock around the process run late by up to a second. The table uses the wall clock measured here around the
//! process (finer than `sec=`, which each run line also shows); each run line also brackets
//! the real finish between the last `Checking.` progress line (the checker was not done yet)
//! and the `Done.` line, which bounds the rate from both sides.
//!
//! Without `--bench` (`cargo test --all-targets` runs bench targets in test mode) the program
//! only says how to run it, so test runs do not spend minutes here.

/// The allocator of the `icepact-check` binary (models/src/main.rs), so that the figure is the
/// one users get: the checker clones and drops millions of small states.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::env;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use icepact_models::{all_pass, check, CheckOptions, VerdictRow};

/// Default rounds.
const DEFAULT_ROUNDS: usize = 3;

/// Default resource managers of `2pc check`. Measured on this 2-core machine (2 checker
/// threads, otherwise idle): 8 RMs = 1,745,408 unique states in 5.0 s by the wall clock, of
/// which the checker needed only ~4.2 s (its progress line at 4 s already showed 91-98% of the
/// states); 9 = 10,340,352 in 29-32 s; 10 = 61,515,776 takes minutes. 9 rather than the
/// few-second 8: stateright's reporter polls the checker once a second, so the wall clock runs
/// late by up to 1 s, ~20% of an 8-RM run but under 4% of a 9-RM run; and the rate falls as the
/// state space grows (~400 k/s at 8, ~330 k/s at 9), so 9's 10 M states compare better with
/// icepact's ~5 M than 8's 1.7 M. `ICEPACT_BENCH_RMS=8` gives a quick, rougher figure.
const DEFAULT_RMS: usize = 9;

/// One measured run.
struct Run {
    unique: usize,
    seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.unique as f64 / self.seconds
    }
}

/// The line `Done. states=…, unique=…, depth=…, sec=…` of stateright's `WriteReporter`.
struct DoneLine {
    states: usize,
    unique: usize,
    depth: usize,
    sec: u64,
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "checker bench: skipped (not run by `cargo bench`); run \
             `cargo bench -p icepact-models --bench checker`"
        );
        return;
    }
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    let (run_2pc, run_icepact) = (wanted("2pc"), wanted("icepact"));
    if !run_2pc && !run_icepact {
        eprintln!("checker bench: no target matches {filters:?} (targets: 2pc, icepact)");
        std::process::exit(2);
    }
    let rounds = env_usize("ICEPACT_BENCH_ROUNDS", DEFAULT_ROUNDS).max(1);
    let rms = env_usize("ICEPACT_BENCH_RMS", DEFAULT_RMS);

    let parallelism = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    println!("available parallelism: {parallelism}; rounds: {rounds}");

    // The example binary, or why it is missing.
    let example = if run_2pc {
        match build_example() {
            Ok(bin) => Some(bin),
            Err(why) => {
                println!("2pc: NOT MEASURED, {why}");
                None
            }
        }
    } else {
        None
    };
    let opts = CheckOptions::default();
    let twopc_label = format!("2pc check {rms} (stateright)");
    let icepact_label = format!("icepact default ({} threads)", opts.threads);

    let mut twopc_runs: Vec<Run> = Vec::new();
    let mut icepact_runs: Vec<Run> = Vec::new();
    let mut example = example;
    for round in 1..=rounds {
        if let Some(bin) = &example {
            match run_example(bin, rms, round) {
                Ok(run) => twopc_runs.push(run),
                Err(why) => {
                    println!("2pc: run failed, not measured further: {why}");
                    example = None;
                }
            }
        }
        if run_icepact {
            let start = Instant::now();
            let rows = check(&opts);
            let wall = start.elapsed().as_secs_f64();
            let run = icepact_run(&rows);
            println!(
                "round {round}  icepact: unique={} in {:.2} s (checker) / {wall:.2} s (call) \
                 -> {:.0} unique/s  [{}]",
                sep(run.unique),
                run.seconds,
                run.rate(),
                opts.label()
            );
            icepact_runs.push(run);
        }
    }

    println!();
    println!(
        "{:<32} {:>13} {:>12} {:>12} {:>12}",
        "target", "unique states", "median /s", "min /s", "max /s"
    );
    let twopc_median = summary(&twopc_label, &twopc_runs, run_2pc);
    let icepact_median = summary(&icepact_label, &icepact_runs, run_icepact);
    if let (Some(i), Some(t)) = (icepact_median, twopc_median) {
        println!("ratio icepact/2pc of the medians: {:.2}", i / t);
    }
    println!(
        "(2pc: wall clock around the process, late by up to 1 s of stateright's report polling; \
         icepact: the checker's own seconds)"
    );
}

/// A positive integer from the environment, or `default` if unset.
fn env_usize(name: &str, default: usize) -> usize {
    match env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a non-negative integer")),
        Err(_) => default,
    }
}

/// The unique states and seconds of an icepact check, which must pass exhaustively.
fn icepact_run(rows: &[VerdictRow]) -> Run {
    assert!(
        all_pass(rows),
        "icepact's default check failed: the figure would not be the speed of a passing check"
    );
    let row = rows
        .first()
        .expect("check returns one row per property, and there are properties");
    assert!(
        row.exhaustive,
        "icepact's default check was not exhaustive (timed out or stopped early)"
    );
    Run {
        unique: row.unique_states,
        seconds: row.seconds,
    }
}

/// Prints one table row; returns the median rate.
fn summary(label: &str, runs: &[Run], selected: bool) -> Option<f64> {
    if runs.is_empty() {
        if selected {
            println!("{label:<32} not measured");
        }
        return None;
    }
    let mut rates: Vec<f64> = runs.iter().map(Run::rate).collect();
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let median = if n % 2 == 1 {
        rates[n / 2]
    } else {
        (rates[n / 2 - 1] + rates[n / 2]) / 2.0
    };
    let unique = runs[0].unique;
    let unique = if runs.iter().all(|r| r.unique == unique) {
        sep(unique)
    } else {
        "varies".to_string()
    };
    println!(
        "{label:<32} {unique:>13} {:>12} {:>12} {:>12}",
        sep(median.round() as usize),
        sep(rates[0].round() as usize),
        sep(rates[n - 1].round() as usize),
    );
    Some(median)
}

/// `1234567` as `1,234,567`.
fn sep(n: usize) -> String {
    let digits = n.to_string();
    // The leading group has 1 to 3 digits, every later group 3.
    let lead = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let (head, tail) = digits.split_at(lead);
    let mut out = head.to_string();
    let tail: Vec<char> = tail.chars().collect();
    for group in tail.chunks(3) {
        out.push(',');
        out.extend(group);
    }
    out
}

/// `CARGO` as cargo sets it for the programs it runs, else `cargo` from the `PATH`.
fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Locates stateright's source through `cargo metadata` and builds its `2pc` example into
/// `<target>/stateright-example`; returns the binary.
fn build_example() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the icepact-models manifest lives in models/ of the workspace");
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .current_dir(workspace)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run `cargo metadata`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`cargo metadata` failed ({})", out.status));
    }
    let json = String::from_utf8_lossy(&out.stdout);
    let (version, source) = stateright_source(&json)
        .ok_or("`cargo metadata` lists no stateright package with a manifest path")?;

    let target = match env::var_os("CARGO_TARGET_DIR") {
        // A relative CARGO_TARGET_DIR is taken from the workspace root, where cargo is
        // usually run (this program runs in models/).
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
    .join("stateright-example");
    println!(
        "2pc: building stateright {version}'s examples/2pc.rs from {} into {} (minutes the \
         first time)",
        source.display(),
        target.display()
    );
    // Its output is kept for a failure: cargo replays stateright's own compiler warnings on
    // every build, even when nothing is rebuilt.
    let out = Command::new(cargo())
        .args(["build", "--quiet", "--release", "--example", "2pc"])
        .arg("--manifest-path")
        .arg(source.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(|e| format!("could not run `cargo build` for the example: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building stateright's 2pc example failed ({}; its dev-dependencies come from \
             crates.io):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = target
        .join("release")
        .join("examples")
        .join(format!("2pc{}", env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        return Err(format!("the build left no binary at {}", bin.display()));
    }
    Ok(bin)
}

/// The version and source directory of the stateright package in `cargo metadata` JSON.
///
/// Plain string search, as serde_json is not a dependency: cargo prints compact JSON and every
/// package object starts `{"name":…,"version":…` (dependency entries continue with
/// `"source"`), and the first `"manifest_path"` after that start is the package's own (its
/// dependencies and targets have none).
fn stateright_source(json: &str) -> Option<(String, PathBuf)> {
    const PACKAGE: &str = r#"{"name":"stateright","version":""#;
    const MANIFEST: &str = r#""manifest_path":""#;
    let start = json.find(PACKAGE)? + PACKAGE.len();
    let after = &json[start..];
    if after.contains(PACKAGE) {
        println!("2pc: several stateright packages are in the graph; using the first");
    }
    let version = &after[..after.find('"')?];
    let path = json_string(&after[after.find(MANIFEST)? + MANIFEST.len()..])?;
    let path = PathBuf::from(path);
    if path.file_name()? != "Cargo.toml" {
        return None;
    }
    Some((version.to_string(), path.parent()?.to_path_buf()))
}

/// The JSON string whose body starts `s` (after the opening quote), unescaped; `None` on
/// escapes a path does not need (`\u`, control characters) or a missing closing quote.
fn json_string(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                c @ ('"' | '\\' | '/') => out.push(c),
                _ => return None,
            },
            c => out.push(c),
        }
    }
}

/// Runs `2pc check <rms>` once and prints its line.
fn run_example(bin: &Path, rms: usize, round: usize) -> Result<Run, String> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("check")
        .arg(rms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("stdout was requested as a pipe");
    // Rust's stdout is line buffered even into a pipe, so each line arrives when printed.
    let mut last_progress = 0.0;
    let mut done: Option<(DoneLine, f64)> = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the example's output: {e}"))?;
        let at = start.elapsed().as_secs_f64();
        if line.starts_with("Checking. ") {
            last_progress = at;
        } else if let Some(rest) = line.strip_prefix("Done. ") {
            let parsed = parse_done(rest).ok_or_else(|| format!("unparsable line {line:?}"))?;
            done = Some((parsed, at));
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the example: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("the example exited with {status}"));
    }
    let (done, done_at) = done.ok_or("the example printed no `Done.` line")?;
    let run = Run {
        unique: done.unique,
        seconds: wall,
    };
    let own = if done.sec > 0 {
        format!("{:.0}", done.unique as f64 / done.sec as f64)
    } else {
        "n/a".to_string()
    };
    println!(
        "round {round}  2pc: unique={} (states={}, depth={}) in {wall:.2} s (wall) -> {:.0} \
         unique/s; own sec={} -> {own} unique/s; finished in ({last_progress:.2}, \
         {done_at:.2}] s -> {:.0}..{} unique/s",
        sep(done.unique),
        sep(done.states),
        done.depth,
        run.rate(),
        done.sec,
        done.unique as f64 / done_at,
        if last_progress > 0.0 {
            format!("{:.0}", done.unique as f64 / last_progress)
        } else {
            "inf".to_string()
        },
    );
    Ok(run)
}

/// Parses `states=…, unique=…, depth=…, sec=…`.
fn parse_done(s: &str) -> Option<DoneLine> {
    let mut fields = s.split(", ").map(|f| f.split_once('='));
    let mut next = |key: &str| match fields.next()? {
        Some((k, v)) if k == key => Some(v.trim()),
        _ => None,
    };
    Some(DoneLine {
        states: next("states")?.parse().ok()?,
        unique: next("unique")?.parse().ok()?,
        depth: next("depth")?.parse().ok()?,
        sec: next("sec")?.parse().ok()?,
    })
}
