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
    // The command, kept so that a fault test can start the same process again.
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(String, String)>,
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
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = launch(name, program, &args, &envs, &out, &log)?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            program: program.to_owned(),
            args,
            envs,
        })
    }

    /// Kills the process with SIGKILL (no chance to clean up, as a crash or an OOM
    /// kill) and reaps it. A process that already exited is only reaped.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            // Child::kill sends SIGKILL, to our own child by its PID.
            self.child
                .kill()
                .with_context(|| format!("killing {} ({})", self.name, self.child.id()))?;
        }
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        Ok(())
    }

    /// Sends `signal` (a name such as `TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .with_context(|| format!("running kill -{signal} {pid}"))?;
        if !status.success() {
            bail!("kill -{signal} {pid} ({}) failed: {status}", self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking whether {} runs", self.name))
    }

    /// Starts the same command again, after [`Supervised::kill`] or an exit, with its
    /// output appended to the same log (a line marks each restart).
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .with_context(|| format!("opening log file {}", self.log.display()))?;
        std::io::Write::write_all(&mut out, b"--- restarted by the bench ---\n")
            .with_context(|| format!("writing {}", self.log.display()))?;
        self.child = launch(
            &self.name,
            &self.program,
            &self.args,
            &self.envs,
            &out,
            &self.log,
        )?;
        Ok(())
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

fn launch(
    name: &str,
    program: &Path,
    args: &[std::ffi::OsString],
    envs: &[(String, String)],
    out: &std::fs::File,
    log: &Path,
) -> Result<Child> {
    let open = || {
        out.try_clone()
            .with_context(|| format!("opening log file {}", log.display()))
    };
    let mut command = Command::new("setpriv");
    command
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    command.spawn().with_context(|| {
        format!(
            "starting {name} ({}) under setpriv (util-linux); is setpriv installed?",
            program.display()
        )
    })
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

/// The last `lines` lines of the file at `path` (empty when it cannot be read), for
/// failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
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
