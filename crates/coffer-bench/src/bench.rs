//! The state of one `coffer-bench run`: options, datasets, artifacts shared
//! between scenarios, measurements and target values.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags};

use crate::generate::{Counts, GENERATOR_VERSION};
use crate::proc::{self, Cmd, Job, Measured};
use crate::s3::{S3Helper, S3Info};

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub runs: usize,
    pub scale: f64,
    pub seed: u64,
    pub coffer: PathBuf,
    pub sqlite3: PathBuf,
    pub work_dir: PathBuf,
}

/// A generated database, cached in the work directory between runs.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    /// The scale of a full dataset; for a big-table one, its `orders` count
    /// over the scale-1 dataset's.
    pub scale: f64,
    /// A single `orders` table (`coffer-bench generate --big-table ROWS`)
    /// rather than the four tables of a full dataset.
    pub big_table: bool,
    pub bytes: u64,
    pub counts: Counts,
    /// Seconds it took to generate, or None when reused from an earlier run.
    pub generated_secs: Option<f64>,
}

impl Dataset {
    pub fn mb(&self) -> f64 {
        mb(self.bytes)
    }

    /// A short name for paths: `s1`, `s0.002`, `big10000000`...
    pub fn tag(&self) -> String {
        if self.big_table {
            format!("big{}", self.counts.orders)
        } else {
            format!("s{}", self.scale)
        }
    }

    /// What it is, for the report: `1` (a scale) or `orders alone`.
    pub fn kind(&self) -> String {
        if self.big_table {
            "orders alone".to_string()
        } else {
            self.scale.to_string()
        }
    }
}

/// All runs of one command.
#[derive(Clone, Debug)]
pub struct Bench {
    pub label: String,
    pub command: String,
    pub runs: Vec<Measured>,
}

impl Bench {
    pub fn median_secs(&self) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|m| m.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    }

    /// The largest peak RSS over all runs, in MiB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }

    pub fn all_secs(&self) -> String {
        self.runs
            .iter()
            .map(|m| format!("{:.3}", m.wall.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Median of the values; the mean of the two middle ones for an even count.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub struct Ctx {
    pub opts: Options,
    datasets: BTreeMap<String, Dataset>,
    artifacts: BTreeMap<String, PathBuf>,
    /// Measurements by command line, so that scenarios share them.
    benches: BTreeMap<String, Bench>,
    /// Measured values of targets, by target id.
    pub targets: BTreeMap<&'static str, f64>,
    /// Notes for the targets table, by target id.
    pub target_notes: BTreeMap<&'static str, String>,
    /// The S3 server, started by the first scenario that needs it.
    s3: Option<S3Helper>,
}

impl Ctx {
    pub fn new(opts: Options) -> Ctx {
        Ctx {
            opts,
            datasets: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            benches: BTreeMap::new(),
            targets: BTreeMap::new(),
            target_notes: BTreeMap::new(),
            s3: None,
        }
    }

    /// The S3 server (started on first use, stopped with the `Ctx`).
    pub fn s3(&mut self) -> Result<S3Info> {
        if self.s3.is_none() {
            self.s3 = Some(S3Helper::start()?);
        }
        Ok(self.s3.as_ref().expect("just started").info.clone())
    }

    /// Runs per command for the scenarios on big inputs: at most `max`.
    pub fn runs_at_most(&self, max: usize) -> usize {
        self.opts.runs.min(max).max(1)
    }

    pub fn datasets_dir(&self) -> PathBuf {
        self.opts.work_dir.join("datasets")
    }

    /// Per-run scratch space: outputs, artifacts and logs. Removed at the end.
    pub fn scratch_dir(&self) -> PathBuf {
        self.opts.work_dir.join("scratch")
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.scratch_dir()
            .join("logs")
            .join(format!("{}.log", slug(label)))
    }

    /// The dataset at the run's scale times `factor`, generated if not cached.
    pub fn dataset(&mut self, factor: f64) -> Result<Dataset> {
        let scale = self.opts.scale * factor;
        let name = format!(
            "bench-g{GENERATOR_VERSION}-seed{}-scale{}.db",
            self.opts.seed, scale
        );
        let args = vec!["--scale".to_string(), scale.to_string()];
        self.cached_dataset(name, scale, false, Counts::for_scale(scale), args)
    }

    /// A database of one `orders` table of `rows` rows, generated if not
    /// cached.
    pub fn big_table_dataset(&mut self, rows: u64) -> Result<Dataset> {
        let name = format!(
            "bench-g{GENERATOR_VERSION}-seed{}-orders{rows}.db",
            self.opts.seed
        );
        let scale = rows as f64 / Counts::for_scale(1.0).orders as f64;
        let args = vec!["--big-table".to_string(), rows.to_string()];
        self.cached_dataset(name, scale, true, Counts::big_table(rows), args)
    }

    fn cached_dataset(
        &mut self,
        name: String,
        scale: f64,
        big_table: bool,
        counts: Counts,
        generate_args: Vec<String>,
    ) -> Result<Dataset> {
        if let Some(d) = self.datasets.get(&name) {
            return Ok(d.clone());
        }
        let dir = self.datasets_dir();
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&name);
        let generated_secs = if path.exists() {
            eprintln!("coffer-bench: reusing dataset {}", path.display());
            None
        } else {
            eprintln!(
                "coffer-bench: generating dataset {name} ({} rows) into {}",
                counts.total(),
                path.display()
            );
            // In a child process: a child's peak RSS as wait4 reports it
            // starts from this process's peak (the memory it is spawned
            // from), so this process must stay small.
            let start = Instant::now();
            let exe = std::env::current_exe().context("locating this program")?;
            let path_arg = path.to_string_lossy().into_owned();
            let seed = self.opts.seed.to_string();
            let mut args = vec!["generate", path_arg.as_str(), "--seed", seed.as_str()];
            args.extend(generate_args.iter().map(String::as_str));
            let out = proc::capture(&exe, &args)?;
            eprintln!("{out}");
            Some(start.elapsed().as_secs_f64())
        };
        let ds = Dataset {
            bytes: fs::metadata(&path)?.len(),
            path,
            scale,
            big_table,
            counts,
            generated_secs,
        };
        self.datasets.insert(name, ds.clone());
        Ok(ds)
    }

    pub fn all_datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }

    /// Runs `job` `opts.runs` times, calling `before` (e.g. to clean the
    /// output) before each run. The same command line is measured only once
    /// per `coffer-bench run`: later calls get the first measurement (the
    /// second element of the pair is then false).
    pub fn measure(
        &mut self,
        label: &str,
        job: Job,
        mut before: impl FnMut() -> Result<()>,
    ) -> Result<(Bench, bool)> {
        let key = job.display();
        if let Some(b) = self.benches.get(&key) {
            return Ok((b.clone(), false));
        }
        let runs = self.opts.runs;
        let bench = self.measure_each(label, job, runs, |_| before(), |_, _| Ok(()))?;
        self.benches.insert(key, bench.clone());
        Ok((bench, true))
    }

    /// Runs `job` `runs` times, calling `before(i)` before and `after(i, m)`
    /// after run `i` (both untimed). Not shared with other calls: for
    /// commands whose effect depends on the state they find (an incremental
    /// backup), or for a number of runs other than `opts.runs`.
    pub fn measure_each(
        &mut self,
        label: &str,
        job: Job,
        runs: usize,
        mut before: impl FnMut(usize) -> Result<()>,
        mut after: impl FnMut(usize, &Measured) -> Result<()>,
    ) -> Result<Bench> {
        let log = self.log_path(label);
        let mut measured = Vec::with_capacity(runs);
        for i in 0..runs {
            before(i)?;
            let m = proc::run(&job, &log)?;
            eprintln!(
                "coffer-bench: {label}: run {}/{runs}: {:.3} s, {:.1} MB peak RSS",
                i + 1,
                m.wall.as_secs_f64(),
                m.max_rss_kib as f64 / 1024.0
            );
            after(i, &m)?;
            measured.push(m);
        }
        Ok(Bench {
            label: label.to_string(),
            command: job.display(),
            runs: measured,
        })
    }

    /// Runs an untimed preparation step once.
    pub fn prepare(&self, label: &str, job: Job) -> Result<Duration> {
        eprintln!("coffer-bench: preparing: {}", job.display());
        Ok(proc::run(&job, &self.log_path(label))?.wall)
    }

    /// A directory for one scenario's outputs (created, not cleaned).
    pub fn out_dir(&self, scenario: &str, ds: &Dataset) -> Result<PathBuf> {
        let dir = self.scratch_dir().join("out").join(scenario).join(ds.tag());
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn artifact_path(&self, ds: &Dataset, name: &str) -> Result<PathBuf> {
        let dir = self.scratch_dir().join("artifacts").join(ds.tag());
        fs::create_dir_all(&dir)?;
        Ok(dir.join(name))
    }

    /// Registers an existing file or directory as the artifact `name` of `ds`.
    pub fn keep_artifact(&mut self, ds: &Dataset, name: &str, from: &Path) -> Result<PathBuf> {
        let to = self.artifact_path(ds, name)?;
        remove_path(&to)?;
        fs::rename(from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        self.artifacts
            .insert(format!("{}/{name}", ds.tag()), to.clone());
        Ok(to)
    }

    /// Returns artifact `name` of `ds`, making it with `make(dataset, out)`
    /// (untimed) if it does not exist yet.
    pub fn artifact(
        &mut self,
        ds: &Dataset,
        name: &str,
        make: impl FnOnce(&Ctx, &Dataset, &Path) -> Job,
    ) -> Result<PathBuf> {
        let key = format!("{}/{name}", ds.tag());
        if let Some(p) = self.artifacts.get(&key) {
            return Ok(p.clone());
        }
        let path = self.artifact_path(ds, name)?;
        remove_path(&path)?;
        let job = make(self, ds, &path);
        self.prepare(&format!("prepare {key}"), job)?;
        self.artifacts.insert(key, path.clone());
        Ok(path)
    }

    /// A coffer archive of `ds`, made by `coffer backup`.
    pub fn coffer_archive(&mut self, ds: &Dataset) -> Result<PathBuf> {
        self.artifact(ds, "coffer-archive", |ctx, ds, out| {
            ctx.coffer().arg("backup").arg(&ds.path).arg(out).into()
        })
    }

    /// A copy of `ds` made by the sqlite3 shell's `.backup`.
    pub fn sqlite_backup(&mut self, ds: &Dataset) -> Result<PathBuf> {
        self.artifact(ds, "backup.db", |ctx, ds, out| {
            ctx.sqlite3()
                .arg(&ds.path)
                .arg(format!(
                    ".backup {}",
                    proc::shell_quote(&out.to_string_lossy())
                ))
                .into()
        })
    }

    /// `sqlite3 DB .dump` of `ds`.
    pub fn sql_dump(&mut self, ds: &Dataset) -> Result<PathBuf> {
        self.artifact(ds, "dump.sql", |ctx, ds, out| {
            ctx.sqlite3().arg(&ds.path).arg(".dump").stdout(out).into()
        })
    }

    pub fn coffer(&self) -> Cmd {
        Cmd::new(&self.opts.coffer)
    }

    pub fn sqlite3(&self) -> Cmd {
        Cmd::new(&self.opts.sqlite3)
    }

    /// Checks that a restored database has the dataset's tables and row
    /// counts (and, in quick mode, passes `PRAGMA integrity_check`), so that a
    /// fast but broken restore is not reported as a win.
    pub fn check_restored(&self, restored: &Path, ds: &Dataset) -> Result<()> {
        self.check_counts(restored, &ds.counts.by_table())
    }

    /// Checks that `db` has exactly `expected` rows in each table named
    /// (and, in quick mode, passes `PRAGMA integrity_check`).
    pub fn check_counts(&self, db: &Path, expected: &[(&str, u64)]) -> Result<()> {
        let restored = db;
        let conn = Connection::open_with_flags(restored, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening restored database {}", restored.display()))?;
        for &(table, expected) in expected {
            let n: u64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .with_context(|| format!("counting {table} in {}", restored.display()))?;
            if n != expected {
                bail!(
                    "restored database {} has {n} rows in {table}, expected {expected}",
                    restored.display()
                );
            }
        }
        if self.opts.quick {
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if ok != "ok" {
                bail!(
                    "restored database {} fails integrity_check: {ok}",
                    restored.display()
                );
            }
        }
        Ok(())
    }

    pub fn record_target(&mut self, id: &'static str, value: f64, note: impl Into<String>) {
        self.targets.insert(id, value);
        let note = note.into();
        if !note.is_empty() {
            self.target_notes.insert(id, note);
        }
    }

    /// Records `value` for target `id` if it is larger than what is recorded.
    pub fn record_target_max(&mut self, id: &'static str, value: f64, note: impl Into<String>) {
        if self.targets.get(id).is_none_or(|&v| value > v) {
            self.record_target(id, value, note);
        }
    }
}

/// Removes a file or a directory tree if it exists.
pub fn remove_path(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("removing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", p.display())),
    }
}

/// Removes `p` and any SQLite side files (`-journal`, `-wal`, `-shm`).
pub fn remove_db(p: &Path) -> Result<()> {
    remove_path(p)?;
    for suffix in ["-journal", "-wal", "-shm"] {
        remove_path(&PathBuf::from(format!("{}{suffix}", p.display())))?;
    }
    Ok(())
}

/// Total size in bytes of a file, or of all files under a directory.
pub fn disk_size(p: &Path) -> Result<u64> {
    let m = fs::symlink_metadata(p).with_context(|| format!("inspecting {}", p.display()))?;
    if m.is_dir() {
        let mut total = 0;
        for entry in fs::read_dir(p)? {
            total += disk_size(&entry?.path())?;
        }
        Ok(total)
    } else {
        Ok(m.len())
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[10.0, 1.0, 1.5, 100.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn sizes_of_trees() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d").join("b"), [0u8; 5]).unwrap();
        assert_eq!(disk_size(dir.path()).unwrap(), 15);
        remove_path(&dir.path().join("d")).unwrap();
        assert_eq!(disk_size(dir.path()).unwrap(), 10);
        remove_path(&dir.path().join("missing")).unwrap();
    }
}
