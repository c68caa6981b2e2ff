//! Child processes of the bench: started with their output in a log file, tied to
//! the life of this process, stopped on drop, and described well when they fail.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process the bench started. Killed when dropped, and (through the kernel's
/// parent-death signal, set by `setpriv`) when the thread that spawned it ends, so a
/// test binary that exits or crashes leaves no API server behind.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Supervised {
    /// Starts `program` with `args`, appending stdout and stderr to `log`.
    pub fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening log file {}", log.display()))?;
        let mut command = Command::new("setpriv");
        command
            .arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().with_context(|| {
            format!(
                "starting {name} ({}) under setpriv (util-linux); is setpriv installed?",
                program.display()
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Fails with the log's tail if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited during start-up ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            ),
            Err(e) => Err(e).with_context(|| format!("checking whether {} runs", self.name)),
        }
    }

    /// Last lines of the process's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Only our own child, by its PID; an exited child makes kill fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A currently free TCP port on 127.0.0.1. The port is released before use, so a
/// caller retries if another process takes it first.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound address")?
        .port())
}

/// Polls `ready` every 100 ms until it returns `Ok(true)`, the process dies, or
/// `timeout` passes; the error names what was awaited and shows the log.
pub async fn wait_until<F, Fut>(
    process: &mut Supervised,
    what: &str,
    timeout: Duration,
    mut ready: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        process.check_running()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} was not {what} after {timeout:?}; last lines of {}:\n{}",
                process.name,
                process.log.display(),
                process.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a setup script of the repository (e.g. the Go build) and returns the last
/// line of its stdout, which these scripts use to print the directory they made.
pub fn run_setup_script(script: &Path) -> Result<PathBuf> {
    let output = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); see its output above",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        bail!("{} printed no directory", script.display());
    }
    Ok(PathBuf::from(dir))
}
