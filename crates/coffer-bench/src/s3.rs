//! The in-process S3 server of the export and import scenarios
//! ([`coffer_testkit::S3Server`], s3s-fs over a temporary directory), run in
//! a helper child process of the harness (`coffer-bench serve-s3`).
//!
//! Why a child: a child's peak RSS as `wait4` reports it starts from the
//! peak of the process it is spawned from, so a server inside the harness
//! would inflate every later measurement. The coffer child that talks to
//! the server is measured alone either way; the server's CPU time is on the
//! same machine, as it would be for any local S3-compatible store.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::proc::Cmd;

/// The bucket the helper creates.
pub const BUCKET: &str = "coffer-bench";

/// Serves S3 until stdin closes: prints `endpoint`, `access_key`,
/// `secret_key` and `root` lines (`key value`) and `ready`, then blocks.
pub fn serve() -> Result<()> {
    let server = coffer_testkit::S3Server::start();
    server.create_bucket(BUCKET);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "endpoint {}", server.endpoint)?;
        writeln!(out, "access_key {}", server.access_key)?;
        writeln!(out, "secret_key {}", server.secret_key)?;
        writeln!(out, "root {}", server.root().display())?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    // Until the harness closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    drop(server);
    Ok(())
}

/// How to reach the helper's server.
#[derive(Clone, Debug)]
pub struct S3Info {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The server's directory: the bucket is `root/BUCKET`.
    pub root: PathBuf,
}

impl S3Info {
    /// `s3://BUCKET/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The directory holding the objects under `prefix` (s3s-fs keeps an
    /// object as the file `root/bucket/key`), to clear it between runs.
    pub fn prefix_dir(&self, prefix: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix)
    }

    /// Points a coffer command at this server: the endpoint as a flag, the
    /// keys in the environment (never shown).
    pub fn configure(&self, cmd: Cmd) -> Cmd {
        cmd.arg("--s3-endpoint")
            .arg(&self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
    }
}

/// The running helper; stopped (and its data removed) when dropped.
pub struct S3Helper {
    pub info: S3Info,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl S3Helper {
    pub fn start() -> Result<S3Helper> {
        let exe = std::env::current_exe().context("locating this program")?;
        Self::start_with(Command::new(exe).arg("serve-s3"))
    }

    fn start_with(cmd: &mut Command) -> Result<S3Helper> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the S3 server helper")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut helper = S3Helper {
            info: S3Info {
                endpoint: String::new(),
                access_key: String::new(),
                secret_key: String::new(),
                root: PathBuf::new(),
            },
            child,
            stdin,
        };
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading from the S3 server helper")?;
            if line == "ready" {
                ready = true;
                break;
            }
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            match k {
                "endpoint" => helper.info.endpoint = v.to_string(),
                "access_key" => helper.info.access_key = v.to_string(),
                "secret_key" => helper.info.secret_key = v.to_string(),
                "root" => helper.info.root = PathBuf::from(v),
                _ => {}
            }
        }
        if !ready || helper.info.endpoint.is_empty() || !helper.info.root.is_dir() {
            bail!("the S3 server helper did not start");
        }
        eprintln!(
            "coffer-bench: S3 server at {} (data in {})",
            helper.info.endpoint,
            helper.info.root.display()
        );
        Ok(helper)
    }
}

impl Drop for S3Helper {
    fn drop(&mut self) {
        // Closing stdin tells the helper to stop and clean up.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_protocol() {
        // A stand-in for `coffer-bench serve-s3`, speaking its protocol.
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo endpoint http://127.0.0.1:1; echo access_key A; echo secret_key S; \
             echo root {}; echo ready; cat >/dev/null; echo stopped > {}/stopped",
            dir.path().display(),
            dir.path().display()
        );
        let helper = S3Helper::start_with(Command::new("sh").arg("-c").arg(script)).unwrap();
        assert_eq!(helper.info.endpoint, "http://127.0.0.1:1");
        assert_eq!(helper.info.root, dir.path());
        assert_eq!(helper.info.url("x/y"), "s3://coffer-bench/x/y");
        let cmd = helper.info.configure(Cmd::new("coffer").arg("ls"));
        let shown = cmd.display();
        assert!(!shown.contains(" S ") && !shown.ends_with('S'), "{shown}");
        assert!(
            shown.contains("--s3-endpoint http://127.0.0.1:1"),
            "{shown}"
        );
        drop(helper);
        assert!(dir.path().join("stopped").exists());

        let failing = S3Helper::start_with(Command::new("sh").arg("-c").arg("echo nope"));
        assert!(failing.is_err());
    }
}
