//! coffer-bench: generates a benchmark SQLite database and times `coffer`
//! against what a user would otherwise run, as a Markdown report.

mod bench;
mod generate;
mod proc;
mod report;
mod rng;
mod s3;
mod scenarios;
mod workload;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::bench::{Ctx, Options, mb, remove_path};
use crate::report::Section;
use crate::scenarios::SCENARIOS;

/// Scale of `--quick` when `--scale` is not given.
const QUICK_SCALE: f64 = 0.002;
const DEFAULT_SEED: u64 = 42;

#[derive(Parser)]
#[command(name = "coffer-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the benchmark SQLite database (deterministic for a seed and scale).
    Generate {
        /// Where to write the database; must not exist unless --force.
        path: PathBuf,
        /// Multiplies the row counts; 1.0 is ≈ 3 M rows, ≈ 250 MB.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Instead of the four tables, make one `orders` table of this many
        /// rows (the `bigtable` scenario's dataset).
        #[arg(long, value_name = "ROWS", conflicts_with = "scale")]
        big_table: Option<u64>,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Change a fraction of the rows of a generated database (updates, and
    /// a few inserts and deletes), as the `collection` scenario does between
    /// incremental backups.
    Mutate {
        path: PathBuf,
        /// Fraction of each table's rows to change, e.g. 0.001 for 0.1%.
        #[arg(long)]
        fraction: f64,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
    /// Run the `capture` scenario's write workload on a database made with
    /// `--init` (internal: the harness runs it as a child and reads its timings).
    #[command(hide = true)]
    Workload {
        path: PathBuf,
        /// Create the empty workload database (WAL) instead.
        #[arg(long)]
        init: bool,
        #[arg(long, default_value_t = 1000)]
        rows: u64,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
    /// Serve S3 (s3s-fs over a temporary directory) until stdin closes
    /// (internal: the export and import scenarios' server).
    #[command(hide = true)]
    ServeS3,
    /// Run the scenarios and print a Markdown report.
    Run(RunArgs),
    /// List the scenarios.
    Scenarios,
}

#[derive(Args)]
struct RunArgs {
    /// CI smoke test: scale 0.002 and one run unless --scale / --runs say otherwise.
    #[arg(long)]
    quick: bool,
    /// Runs per command; the median is reported (default 3, 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Dataset scale (default 1.0, 0.002 with --quick).
    #[arg(long)]
    scale: Option<f64>,
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// The coffer binary (default: `coffer` beside this program).
    #[arg(long)]
    coffer: Option<PathBuf>,
    /// The sqlite3 shell used for the baselines.
    #[arg(long, default_value = "sqlite3")]
    sqlite3: PathBuf,
    /// Where datasets are cached and outputs written (default: `coffer-bench`
    /// in the target directory this program was built into).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Comma-separated scenarios to run (default: all default scenarios; see
    /// `coffer-bench scenarios`).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Also write the report to this file (replacing it), if no command failed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the outputs and artifacts (archives, dumps) in the work directory.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Generate {
            path,
            scale,
            big_table,
            seed,
            force,
        } => {
            if force {
                bench::remove_db(&path)?;
            }
            let g = match big_table {
                Some(rows) => generate::generate_big_table(&path, rows, seed)?,
                None => generate::generate(&path, scale, seed)?,
            };
            println!("{}", path.display());
            println!(
                "  {}, seed {seed}, page size {}, journal_mode delete",
                match big_table {
                    Some(_) => "one big table".to_string(),
                    None => format!("scale {scale}"),
                },
                generate::PAGE_SIZE
            );
            println!("  size: {:.1} MB ({} bytes)", mb(g.bytes), g.bytes);
            for (table, rows) in g.counts.by_table() {
                println!("  {table:<9} {rows:>10} rows");
            }
            println!("  total     {:>10} rows", g.counts.total());
            println!("  generated in {:.1} s", g.elapsed.as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Mutate {
            path,
            fraction,
            seed,
        } => {
            println!("{}", workload::mutate(&path, fraction, seed)?.line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Workload {
            path,
            init,
            rows,
            seed,
        } => {
            if init {
                workload::init_workload_db(&path)?;
            } else {
                println!("{}", workload::run_workload(&path, rows, seed)?.line());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeS3 => {
            s3::serve()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scenarios => {
            for s in SCENARIOS {
                println!(
                    "{:<10} {}{}",
                    s.name,
                    s.about,
                    if s.default {
                        ""
                    } else {
                        " (not run by default)"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let exe_dir = std::env::current_exe()
        .context("locating this program")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let scale = args
        .scale
        .unwrap_or(if args.quick { QUICK_SCALE } else { 1.0 });
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--scale must be a positive number");
    }
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let coffer = args.coffer.unwrap_or_else(|| exe_dir.join("coffer"));
    if !coffer.exists() {
        bail!(
            "no coffer binary at {}: build it with `cargo build --release -p coffer-cli`, \
             or pass --coffer PATH",
            coffer.display()
        );
    }
    let work_dir = args.work_dir.unwrap_or_else(|| match exe_dir.parent() {
        Some(target) => target.join("coffer-bench"),
        None => std::env::temp_dir().join("coffer-bench"),
    });
    let selected: Vec<&scenarios::Scenario> = match &args.scenarios {
        None => SCENARIOS.iter().filter(|s| s.default).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                scenarios::find(n.trim()).with_context(|| {
                    format!(
                        "unknown scenario {n:?}; known: {}",
                        SCENARIOS
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut ctx = Ctx::new(Options {
        quick: args.quick,
        runs,
        scale,
        seed: args.seed,
        coffer,
        sqlite3: args.sqlite3,
        work_dir,
    });
    report::check_tools(&ctx)?;
    remove_path(&ctx.scratch_dir())?;

    let mut sections = Vec::new();
    let mut failed = false;
    for s in selected {
        eprintln!("coffer-bench: scenario {}", s.name);
        let body = (s.run)(&mut ctx).map_err(|e| {
            failed = true;
            eprintln!("coffer-bench: scenario {} failed: {e:#}", s.name);
            format!("{e:#}")
        });
        sections.push(Section {
            name: s.name,
            about: s.about,
            body,
        });
    }
    let mut text = report::render(&ctx, &sections);
    if let Some(root) = report::repository_of(&exe_dir.join("coffer-bench")) {
        text = report::relative_to(&text, &root);
    }
    print!("{text}");
    if !args.keep {
        remove_path(&ctx.scratch_dir())?;
    }
    if failed {
        if let Some(out) = &args.out {
            eprintln!(
                "coffer-bench: a command failed; not writing {}",
                out.display()
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    if let Some(out) = &args.out {
        fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("coffer-bench: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
