//! Runs commands as whole processes and measures wall time and peak RSS.
//!
//! Children are reaped with `wait4(2)`, whose `rusage.ru_maxrss` is the peak
//! resident set size of the child (and of any descendants it waited for).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One command line, with optional stdin/stdout redirections to files and
/// extra environment variables.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    /// Set in the child's environment; shown by name only (they carry
    /// credentials).
    pub env: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            stdin: None,
            stdout: None,
            env: Vec::new(),
        }
    }

    /// Sets `key` in the child's environment. The value is never displayed.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn stdin(mut self, p: impl Into<PathBuf>) -> Cmd {
        self.stdin = Some(p.into());
        self
    }

    pub fn stdout(mut self, p: impl Into<PathBuf>) -> Cmd {
        self.stdout = Some(p.into());
        self
    }

    /// The command as a shell would read it; environment values are elided.
    pub fn display(&self) -> String {
        let mut s = String::new();
        for (k, _) in &self.env {
            s.push_str(&k.to_string_lossy());
            s.push_str("=… ");
        }
        s.push_str(&shell_quote(&self.program.to_string_lossy()));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        if let Some(p) = &self.stdin {
            s.push_str(" < ");
            s.push_str(&shell_quote(&p.to_string_lossy()));
        }
        if let Some(p) = &self.stdout {
            s.push_str(" > ");
            s.push_str(&shell_quote(&p.to_string_lossy()));
        }
        s
    }
}

/// What is timed: one process, or two joined by a pipe.
#[derive(Clone, Debug)]
pub enum Job {
    One(Cmd),
    Pipe(Cmd, Cmd),
}

impl Job {
    pub fn display(&self) -> String {
        match self {
            Job::One(c) => c.display(),
            Job::Pipe(a, b) => format!("{} | {}", a.display(), b.display()),
        }
    }
}

impl From<Cmd> for Job {
    fn from(c: Cmd) -> Job {
        Job::One(c)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub wall: Duration,
    /// Peak RSS in KiB; for a pipe, the larger of the two processes.
    pub max_rss_kib: u64,
}

/// Runs `job` to completion. Output not redirected goes to `log` (truncated
/// first); a non-zero exit is an error quoting the log's tail.
pub fn run(job: &Job, log: &Path) -> Result<Measured> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let result = run_inner(job, &log_file);
    drop(log_file);
    match result {
        Ok(m) => Ok(m),
        Err(e) => {
            let tail = log_tail(log);
            if tail.is_empty() {
                Err(e)
            } else {
                Err(anyhow::anyhow!(
                    "{e:#}\n--- its output ends with ({}) ---\n{tail}",
                    log.display()
                ))
            }
        }
    }
}

fn run_inner(job: &Job, log: &File) -> Result<Measured> {
    let start = Instant::now();
    match job {
        Job::One(cmd) => {
            let stdin = stdin_for(cmd)?;
            let stdout = stdout_for(cmd, log)?;
            let child = spawn(cmd, stdin, stdout, Stdio::from(log.try_clone()?))?;
            let (status, rss) = wait4(child)?;
            let wall = start.elapsed();
            check_status(status, cmd)?;
            Ok(Measured {
                wall,
                max_rss_kib: rss,
            })
        }
        Job::Pipe(a, b) => {
            let stdin = stdin_for(a)?;
            let mut first = spawn(a, stdin, Stdio::piped(), Stdio::from(log.try_clone()?))?;
            let pipe = first.stdout.take().expect("stdout was piped");
            let stdout = stdout_for(b, log)?;
            let second = match spawn(b, Stdio::from(pipe), stdout, Stdio::from(log.try_clone()?)) {
                Ok(c) => c,
                Err(e) => {
                    let _ = first.kill();
                    let _ = wait4(first);
                    return Err(e);
                }
            };
            let (status_a, rss_a) = wait4(first)?;
            let (status_b, rss_b) = wait4(second)?;
            let wall = start.elapsed();
            check_status(status_a, a)?;
            check_status(status_b, b)?;
            Ok(Measured {
                wall,
                max_rss_kib: rss_a.max(rss_b),
            })
        }
    }
}

fn stdin_for(cmd: &Cmd) -> Result<Stdio> {
    Ok(match &cmd.stdin {
        Some(p) => Stdio::from(File::open(p).with_context(|| format!("opening {}", p.display()))?),
        None => Stdio::null(),
    })
}

fn stdout_for(cmd: &Cmd, log: &File) -> Result<Stdio> {
    Ok(match &cmd.stdout {
        Some(p) => {
            Stdio::from(File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Stdio::from(log.try_clone()?),
    })
}

fn spawn(cmd: &Cmd, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Result<Child> {
    Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting `{}`", cmd.display()))
}

/// Reaps `child` with wait4, returning the raw wait status and ru_maxrss (KiB).
fn wait4(child: Child) -> Result<(libc::c_int, u64)> {
    let pid = child.id() as libc::pid_t;
    // The Child is dropped without waiting (std never waits on drop); we reap
    // the process ourselves to get its rusage.
    drop(child);
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(err).context(format!("wait4({pid})"));
    }
    Ok((status, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

fn check_status(status: libc::c_int, cmd: &Cmd) -> Result<()> {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        if code != 0 {
            bail!("`{}` exited with status {code}", cmd.display());
        }
        Ok(())
    } else if libc::WIFSIGNALED(status) {
        bail!(
            "`{}` was killed by signal {}",
            cmd.display(),
            libc::WTERMSIG(status)
        );
    } else {
        bail!("`{}` ended with wait status {status}", cmd.display());
    }
}

fn log_tail(log: &Path) -> String {
    let Ok(bytes) = fs::read(log) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    lines[from..].join("\n")
}

/// Runs a command to completion and returns its stdout (for versions and
/// machine facts, not for timing).
pub fn capture(program: impl AsRef<OsStr>, args: &[&str]) -> Result<String> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", program.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program.to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else if !s.contains(['"', '$', '`', '\\', '!']) {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let m = run(&Cmd::new("true").into(), &log).unwrap();
        assert!(m.max_rss_kib > 0);

        let err = run(
            &Cmd::new("sh").arg("-c").arg("echo boom >&2; exit 3").into(),
            &log,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("status 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");

        let input = dir.path().join("in");
        let output = dir.path().join("out");
        fs::write(&input, "b\na\n").unwrap();
        let job = Job::Pipe(
            Cmd::new("cat").stdin(&input),
            Cmd::new("sort").stdout(&output),
        );
        run(&job, &log).unwrap();
        assert_eq!(fs::read_to_string(&output).unwrap(), "a\nb\n");

        let fail = Job::Pipe(Cmd::new("false"), Cmd::new("cat"));
        assert!(run(&fail, &log).is_err());
    }

    #[test]
    fn environment_is_passed_but_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg("printf %s \"$COFFER_BENCH_TEST\"")
            .env("COFFER_BENCH_TEST", "s3cr3t")
            .stdout(&out);
        run(&cmd.clone().into(), &dir.path().join("log")).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "s3cr3t");
        let shown = cmd.display();
        assert!(shown.starts_with("COFFER_BENCH_TEST=… sh -c"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b.db"), "a/b.db");
        assert_eq!(shell_quote(".backup x"), "\".backup x\"");
        assert_eq!(shell_quote(".backup 'x'"), "\".backup 'x'\"");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
    }
}
