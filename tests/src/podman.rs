//! podman for the image tests: a configuration and a store of its own in a scratch
//! directory (never the machine's global `containers.conf` or `/var/lib/containers`),
//! the images `make images` saved under `target/images/`, and containers removed
//! when the test is done.
//!
//! podman, buildah and runc come from Debian (`apt-get install -y podman buildah
//! runc`; `.ci/run` installs them). Without podman every image test fails and says
//! so: a missing tool must not turn into a skipped test.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::process::Supervised;

/// What podman needs on these machines, as images/build.sh writes it: runc (crun fails on the
/// hybrid cgroup layout), cgroupfs, no default ulimits (setting them needs
/// CAP_SYS_RESOURCE, which the machines' bounding set lacks), events in a file.
fn containers_conf(dir: &Path) -> String {
    format!(
        "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         events_logfile_path = \"{}\"\n",
        dir.join("events.log").display()
    )
}

/// podman with its configuration and store under one directory.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    env: Vec<(String, String)>,
    containers: Mutex<Vec<String>>,
}

impl Podman {
    /// podman configured in `dir` (created), with an empty vfs store there.
    pub fn new(dir: &Path) -> Result<Self> {
        let found = Command::new("podman")
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        match found {
            Ok(output) if output.status.success() => {}
            Ok(output) => bail!(
                "podman --version failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => {
                return Err(e).context(
                    "podman is not installed; the image tests need it: \
                     apt-get install -y podman buildah runc",
                );
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, containers_conf(dir))
            .with_context(|| format!("writing {}", conf.display()))?;
        let storage = dir.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("storage").display(),
                dir.join("run").display()
            ),
        )
        .with_context(|| format!("writing {}", storage.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            env: vec![
                ("CONTAINERS_CONF".to_owned(), conf.display().to_string()),
                (
                    "CONTAINERS_STORAGE_CONF".to_owned(),
                    storage.display().to_string(),
                ),
            ],
            containers: Mutex::default(),
        })
    }

    /// The global flags that keep podman in this directory.
    fn global_args(&self) -> Vec<String> {
        let path = |p: &str| self.dir.join(p).display().to_string();
        vec![
            "--root".to_owned(),
            path("storage"),
            "--runroot".to_owned(),
            path("run"),
            "--tmpdir".to_owned(),
            path("tmp"),
        ]
    }

    /// `podman <args>`; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        if !output.status.success() {
            bail!(
                "podman {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `podman <args>`, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new("podman")
            .args(self.global_args())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running podman {}", args.join(" ")))
    }

    /// Loads `target/images/<name>.tar` (see [`image_archive`]) and returns the
    /// image reference it holds, e.g. `ghcr.io/hookline/hookline-worker:0.1.0`.
    pub fn load(&self, name: &str) -> Result<String> {
        let archive = image_archive(name)?;
        let out = self.run(&["load", "--quiet", "--input", &archive.display().to_string()])?;
        let reference = out
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .with_context(|| format!("no image reference in podman load's output: {out}"))?
            .trim()
            .to_owned();
        Ok(reference)
    }

    /// The value of the label `key` of `image`.
    pub fn label(&self, image: &str, key: &str) -> Result<String> {
        self.run(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
            image,
        ])
    }

    /// Fails unless `image` was built from the commit checked out here: an image of
    /// an older commit would test old binaries.
    pub fn check_revision(&self, image: &str) -> Result<()> {
        let revision = self.label(image, "org.opencontainers.image.revision")?;
        let head = git_head()?;
        if revision != head {
            bail!(
                "{image} was built from {revision}, but HEAD is {head}: run `make images` \
                 (`make test` does it first)"
            );
        }
        Ok(())
    }

    /// `podman run --name <name> <args>` in the foreground, as a [`Supervised`]
    /// process whose log is the container's output; the container is removed when
    /// this `Podman` is dropped.
    pub fn spawn(&self, name: &str, args: &[&str], log: PathBuf) -> Result<Supervised> {
        self.containers
            .lock()
            .map_err(|_| anyhow::anyhow!("container list poisoned"))?
            .push(name.to_owned());
        let mut all = self.global_args();
        all.extend(["run".to_owned(), "--name".to_owned(), name.to_owned()]);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Supervised::spawn(name, Path::new("podman"), &all, &env, log)
    }

    /// `podman wait <name>`: its exit code once it stopped.
    pub fn wait(&self, name: &str) -> Result<i32> {
        let code = self.run(&["wait", name])?;
        code.parse()
            .with_context(|| format!("podman wait {name} printed {code:?}"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Only the containers this test started; killing the `podman run` client
        // would leave them running under conmon.
        let names = self
            .containers
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        for name in names {
            let _ = self.output(&["rm", "--force", "--time", "0", &name]);
        }
    }
}

/// `target/images/<name>.tar`, which `make images` writes; the error says to run it.
pub fn image_archive(name: &str) -> Result<PathBuf> {
    let path = crate::repo_root()
        .join("target/images")
        .join(format!("{name}.tar"));
    if !path.is_file() {
        bail!(
            "{} is missing: run `make images` (`make test` does it first)",
            path.display()
        );
    }
    Ok(path)
}

/// The image references a docker-archive holds (its `manifest.json`), read without
/// podman.
pub fn archive_references(archive: &Path) -> Result<Vec<String>> {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("manifest.json")
        .output()
        .with_context(|| format!("running tar on {}", archive.display()))?;
    if !output.status.success() {
        bail!(
            "reading manifest.json of {}: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parsing manifest.json of {}", archive.display()))?;
    Ok(manifest
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|image| image["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|tag| tag.as_str().map(str::to_owned))
        .collect())
}

/// The first image reference of a docker-archive.
pub fn archive_reference(archive: &Path) -> Result<String> {
    archive_references(archive)?
        .into_iter()
        .next()
        .with_context(|| format!("{} names no image", archive.display()))
}

fn git_head() -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(crate::repo_root())
        .args(["rev-parse", "HEAD"])
        .output()
        .context("running git rev-parse HEAD")?;
    if !output.status.success() {
        bail!(
            "git rev-parse HEAD failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
