//! The bench: real dependencies on loopback for Hookline's tests, demo and
//! benchmarks. A real kube-apiserver + etcd built from the upstream Go modules, and
//! MiniStack (optionally moto) as the AWS emulator. Nothing here fakes a component:
//! if one cannot start, [`Bench::start`] fails and says why.
//!
//! # Layout
//! - [`process`]: child processes tied to this process's life, with log files.
//! - [`kube`]: certificates, etcd, kube-apiserver, kubeconfig, CRD installation.
//! - [`aws`]: the emulators and SDK configs pointed at them.
//! - [`util`]: bounded waiting and a raw HTTP POST, shared by tests and the demo.
//! - [`velocity`]: mapping templates rendered by the real Apache Velocity (1.7 and 2.x).
//! - [`Bench`]: both together; [`Bench::shared`] is the one instance a test binary's
//!   tests share (each test still gets its own namespace and its own clients).
//!
//! Binaries and the emulator venv are built once by `tests/kube-bench/build.sh` and
//! `tests/emulators/setup.sh` and cached under `~/.cache/hookline/` (or
//! `$HOOKLINE_CACHE`); `.ci/run` calls the same scripts.

#![forbid(unsafe_code)]

pub mod aws;
pub mod chart_docs;
pub mod kube;
pub mod process;
pub mod util;
pub mod velocity;

use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::aws::{Emulator, EmulatorKind};
pub use crate::kube::KubeCluster;

/// Real dependencies for one test binary, demo or benchmark.
#[derive(Debug)]
pub struct Bench {
    // Declaration order is drop order: processes stop before their directory goes.
    /// The control plane.
    pub kube: KubeCluster,
    /// MiniStack, the AWS emulator every test uses.
    pub aws: Emulator,
    venv_bin: PathBuf,
    workdir: Workdir,
    started_in: Duration,
}

static SHARED: OnceLock<Result<&'static Bench, String>> = OnceLock::new();

impl Bench {
    /// Builds what is missing (first run only), then starts the control plane and
    /// MiniStack. Call from a thread that outlives the bench: children get a kill
    /// signal when the thread that spawned them ends.
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let bin_dir = kube_binaries()?;
        let venv_bin = emulator_venv()?;
        let workdir = Workdir::create()?;
        // Start both at once; the API server is the slower of the two.
        let (kube, aws) = tokio::try_join!(
            KubeCluster::start(&bin_dir, workdir.path()),
            Emulator::start(EmulatorKind::MiniStack, &venv_bin, workdir.path()),
        )?;
        Ok(Self {
            kube,
            aws,
            venv_bin,
            workdir,
            started_in: started.elapsed(),
        })
    }

    /// The bench every test of this test binary shares, started on first use. A
    /// failure to start is returned to every caller, with the same message.
    pub async fn shared() -> Result<&'static Bench> {
        tokio::task::spawn_blocking(|| SHARED.get_or_init(start_on_keeper_thread).clone())
            .await
            .context("waiting for the shared bench")?
            .map_err(|e| anyhow!("the bench could not start: {e}"))
    }

    /// Starts another emulator (e.g. moto as a second opinion); it stops when dropped.
    pub async fn start_emulator(&self, kind: EmulatorKind) -> Result<Emulator> {
        Emulator::start(kind, &self.venv_bin, self.workdir.path()).await
    }

    /// Directory holding the bench's logs, certificates and data.
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// How long [`Bench::start`] took (builds included when they ran).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }
}

/// Starts the bench on a thread that then lives as long as the process, so the
/// children's parent-death signal fires only when the test binary exits.
fn start_on_keeper_thread() -> Result<&'static Bench, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hookline-bench".to_owned())
        .spawn(move || {
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the bench's runtime")
                .and_then(|runtime| runtime.block_on(Bench::start()));
            let leaked = started.map(|bench| &*Box::leak(Box::new(bench)));
            let _ = sender.send(leaked.map_err(|e| format!("{e:#}")));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("spawning the bench thread: {e}"))?;
    receiver
        .recv()
        .map_err(|e| format!("the bench thread ended without an answer: {e}"))?
}

/// Root of the repository (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Directory with `kube-apiserver` and `etcd`, building them on first use.
pub fn kube_binaries() -> Result<PathBuf> {
    let dir = process::run_setup_script(&repo_root().join("tests/kube-bench/build.sh"))
        .context("building kube-apiserver and etcd (needs Go and the Go module proxy)")?;
    kube::check_binaries(&dir)?;
    Ok(dir)
}

/// The `helm` binary, built from its pinned Go module on first use.
pub fn helm_binary() -> Result<PathBuf> {
    process::run_setup_script(&repo_root().join("tests/helm/build.sh"))
        .context("building helm (needs Go and the Go module proxy)")
}

/// The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, generated from
/// its pinned API module on first use (tests/monitoring-crds/gen.sh).
pub fn monitoring_crds() -> Result<
    Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
>{
    let dir = process::run_setup_script(&repo_root().join("tests/monitoring-crds/gen.sh"))
        .context("generating the Prometheus Operator CRDs (needs Go and the Go module proxy)")?;
    ["servicemonitors", "prometheusrules"]
        .iter()
        .map(|plural| {
            let path = dir.join(format!("monitoring.coreos.com_{plural}.yaml"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// The emulator venv's `bin` directory, creating the venv on first use.
pub fn emulator_venv() -> Result<PathBuf> {
    process::run_setup_script(&repo_root().join("tests/emulators/setup.sh"))
        .context("installing the AWS emulators (needs python3 with venv and PyPI)")
}

/// A scratch directory `hookline-bench-<pid>-<n>` under the system temp dir, removed
/// on drop. Directories left by processes that no longer run (a shared bench is never
/// dropped) are removed when the next one is created.
#[derive(Debug)]
pub struct Workdir(PathBuf);

impl Workdir {
    /// A new, empty scratch directory.
    pub fn create() -> Result<Self> {
        let tmp = std::env::temp_dir();
        remove_stale_workdirs(&tmp);
        let pid = std::process::id();
        for n in 0..1000 {
            let path = tmp.join(format!("hookline-bench-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        Err(anyhow!(
            "no free hookline-bench-{pid}-<n> directory in {}",
            tmp.display()
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn remove_stale_workdirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hookline-bench-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// KEDA release whose ScaledObject CRD the tests install (taken from its Go module at
/// test time, never committed).
pub const KEDA_VERSION: &str = "v2.21.0";

/// KEDA's ScaledObject CRD, from `github.com/kedacore/keda/v2`'s `config/crd/bases/`
/// through the Go module proxy (cached in the Go module cache after the first time).
pub fn keda_scaled_object_crd() -> Result<
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
> {
    let module = format!("github.com/kedacore/keda/v2@{KEDA_VERSION}");
    let output = std::process::Command::new("go")
        .args(["mod", "download", "-json", &module])
        .current_dir(std::env::temp_dir())
        .output()
        .context("running go mod download (is Go installed?)")?;
    if !output.status.success() {
        return Err(anyhow!(
            "go mod download {module} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading go mod download's answer")?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| anyhow!("go mod download gave no directory for {module}"))?;
    let path = Path::new(dir).join("config/crd/bases/keda.sh_scaledobjects.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
