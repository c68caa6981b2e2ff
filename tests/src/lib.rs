//! The bench: real dependencies on loopback for Hookline's tests, demo and
//! benchmarks. A real kube-apiserver + etcd built from the upstream Go modules, and
//! MiniStack as the AWS emulator; LocalStack (the second data plane) and moto (a third
//! opinion on control-plane calls) on demand. Nothing here fakes a component: if one
//! cannot start, [`Bench::start`] fails and says why.
//!
//! # Layout
//! - [`process`]: child processes tied to this process's life, with log files.
//! - [`kube`]: certificates, etcd, kube-apiserver, kubeconfig, CRD installation.
//! - [`aws`]: the emulators and SDK configs pointed at them.
//! - [`elasticmq`]: ElasticMQ, a fast SQS-compatible server for benchmarks (not a
//!   correctness oracle: see docs/emulators.md).
//! - [`faults`]: a proxy in front of an emulator answering chosen calls with AWS's
//!   own errors (throttling, 5xx, batch entries failed), seeded and counted.
//! - [`toxiproxy`]: network faults (latency, resets, timeouts) between a binary and
//!   the emulator or the API server.
//! - [`iam`]: IAM users holding only the chart's policies, for enforced-IAM tests.
//! - [`node`]: a real node on demand (containerd, kubelet, controller-manager,
//!   scheduler) for the tests that run the worker Deployment's pods.
//! - [`podman`]: podman in a scratch directory, for the tests of the container images.
//! - [`util`]: bounded waiting and a raw HTTP POST, shared by tests and the demo.
//! - [`velocity`]: mapping templates rendered by the real Apache Velocity (1.7 and 2.x).
//! - [`Bench`]: both together; [`Bench::shared`] is the one instance a test binary's
//!   tests share (each test still gets its own namespace and its own clients).
//! - [`shared_cluster`]: the API server alone, for tests whose AWS is in memory.
//! - [`data_plane_test!`]: runs one test once per data-plane emulator
//!   ([`aws::DATA_PLANES`]); [`Bench::data_plane`] hands out the shared instances.
//!
//! Binaries and the emulator venv are built once by `tests/kube-bench/build.sh` and
//! `tests/emulators/setup.sh` and cached under `~/.cache/hookline/` (or
//! `$HOOKLINE_CACHE`); `.ci/run` calls the same scripts.

#![forbid(unsafe_code)]

pub mod aws;
pub mod chart_docs;
pub mod elasticmq;
pub mod faults;
pub mod iam;
pub mod kube;
pub mod node;
pub mod podman;
pub mod process;
pub mod recorder;
pub mod stack;
pub mod toxiproxy;
pub mod util;
pub mod velocity;

use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::aws::{DATA_PLANES, Emulator, EmulatorKind};
pub use crate::kube::KubeCluster;

/// Real dependencies for one test binary, demo or benchmark.
#[derive(Debug)]
pub struct Bench {
    // Declaration order is drop order: processes stop before their directory goes.
    /// The control plane.
    pub kube: KubeCluster,
    /// The AWS emulator: MiniStack unless started with [`Bench::start_on`].
    pub aws: Emulator,
    venv_bin: PathBuf,
    workdir: Workdir,
    started_in: Duration,
}

static SHARED: OnceLock<Result<&'static Bench, String>> = OnceLock::new();
static SHARED_LOCALSTACK: OnceLock<Result<&'static Emulator, String>> = OnceLock::new();
static SHARED_CLUSTER: OnceLock<Result<&'static KubeCluster, String>> = OnceLock::new();

/// The API server (with etcd and Hookline's CRDs) that every test of this test binary
/// shares, without an AWS emulator: for tests whose AWS is in memory
/// (`hookline_operator::aws::memory`). Started on first use, like [`Bench::shared`].
pub async fn shared_cluster() -> Result<&'static KubeCluster> {
    tokio::task::spawn_blocking(|| {
        SHARED_CLUSTER
            .get_or_init(|| {
                on_keeper_thread("hookline-cluster", || async {
                    // Leaked with the cluster; removed by a later bench once this
                    // process is gone.
                    let workdir = Box::leak(Box::new(Workdir::create()?));
                    KubeCluster::start(&kube_binaries()?, workdir.path()).await
                })
            })
            .clone()
    })
    .await
    .context("waiting for the shared API server")?
    .map_err(|e| anyhow!("the API server could not start: {e}"))
}

impl Bench {
    /// Builds what is missing (first run only), then starts the control plane and
    /// MiniStack. Call from a thread that outlives the bench: children get a kill
    /// signal when the thread that spawned them ends.
    pub async fn start() -> Result<Self> {
        Self::start_on(EmulatorKind::MiniStack, aws::Options::default()).await
    }

    /// [`Bench::start`] with another emulator as [`Bench::aws`], or other options:
    /// a test that runs an operator needs an API server of its own (two operators on
    /// one API server would both reconcile every gateway).
    pub async fn start_on(kind: EmulatorKind, options: aws::Options) -> Result<Self> {
        let started = Instant::now();
        let bin_dir = kube_binaries()?;
        let venv_bin = emulator_venv()?;
        let emulator_bin = match kind {
            EmulatorKind::LocalStack => localstack_venv()?,
            EmulatorKind::MiniStack | EmulatorKind::Moto => venv_bin.clone(),
        };
        let workdir = Workdir::create()?;
        // Start both at once; the API server is the slower of the two.
        let (kube, aws) = tokio::try_join!(
            KubeCluster::start(&bin_dir, workdir.path()),
            Emulator::start_with(kind, &emulator_bin, workdir.path(), options),
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
        self.start_emulator_with(kind, aws::Options::default())
            .await
    }

    /// [`Bench::start_emulator`] with [`aws::Options`] (e.g. MiniStack enforcing IAM).
    pub async fn start_emulator_with(
        &self,
        kind: EmulatorKind,
        options: aws::Options,
    ) -> Result<Emulator> {
        let venv_bin = match kind {
            EmulatorKind::LocalStack => tokio::task::spawn_blocking(localstack_venv)
                .await
                .context("waiting for the LocalStack venv")??,
            EmulatorKind::MiniStack | EmulatorKind::Moto => self.venv_bin.clone(),
        };
        Emulator::start_with(kind, &venv_bin, self.workdir.path(), options).await
    }

    /// The data-plane emulator `kind` that this test binary's tests share: MiniStack
    /// is [`Bench::aws`]; LocalStack is started on first use and then reused, like the
    /// bench itself (tests keep apart by unique names, as they do on MiniStack).
    pub async fn data_plane(&'static self, kind: EmulatorKind) -> Result<&'static Emulator> {
        match kind {
            EmulatorKind::MiniStack => Ok(&self.aws),
            EmulatorKind::LocalStack => tokio::task::spawn_blocking(|| {
                SHARED_LOCALSTACK
                    .get_or_init(|| {
                        on_keeper_thread("hookline-localstack", || async {
                            Emulator::start(
                                EmulatorKind::LocalStack,
                                &localstack_venv()?,
                                // Leaked with the emulator; removed by a later bench
                                // once this process is gone.
                                Box::leak(Box::new(Workdir::create()?)).path(),
                            )
                            .await
                        })
                    })
                    .clone()
            })
            .await
            .context("waiting for the shared LocalStack")?
            .map_err(|e| anyhow!("LocalStack could not start: {e}")),
            EmulatorKind::Moto => Err(anyhow!(
                "moto invokes no API Gateway integration; it is no data plane"
            )),
        }
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

fn start_on_keeper_thread() -> Result<&'static Bench, String> {
    on_keeper_thread("hookline-bench", Bench::start)
}

/// Runs `start` on a thread that then lives as long as the process, so the
/// children's parent-death signal fires only when the test binary exits; what it
/// started is leaked and so never dropped.
fn on_keeper_thread<T, F, Fut>(name: &str, start: F) -> Result<&'static T, String>
where
    T: Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the keeper thread's runtime")
                .and_then(|runtime| runtime.block_on(start()));
            let leaked = started.map(|value| &*Box::leak(Box::new(value)));
            let _ = sender.send(leaked.map_err(|e| format!("{e:#}")));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("spawning the {name} thread: {e}"))?;
    receiver
        .recv()
        .map_err(|e| format!("the {name} thread ended without an answer: {e}"))?
}

/// Defines a test that runs once on each data-plane emulator, as `<test>::ministack`
/// and `<test>::localstack` (so `cargo test localstack` picks one emulator's runs).
/// `$test` is an `async fn(EmulatorKind) -> anyhow::Result<()>` in the calling
/// module; most take the test binary's shared instance with
/// [`Bench::data_plane`], a test that needs its own (e.g. MiniStack enforcing IAM)
/// starts it with [`Bench::start_emulator_with`].
///
/// ```ignore
/// async fn lands_in_the_queue(kind: EmulatorKind) -> Result<()> {
///     let aws = Bench::shared().await?.data_plane(kind).await?;
///     …
/// }
/// hookline_tests::data_plane_test!(lands_in_the_queue);
/// // Where one emulator cannot run what the product needs (say so in docs/emulators.md):
/// hookline_tests::data_plane_test!(uses_if_directives on localstack);
/// ```
#[macro_export]
macro_rules! data_plane_test {
    ($test:ident) => {
        $crate::data_plane_test!($test on ministack, localstack);
    };
    ($test:ident on $($emulator:ident),+ $(,)?) => {
        mod $test {
            $(
                #[test]
                fn $emulator() -> ::anyhow::Result<()> {
                    $crate::block_on_large_stack(|| {
                        super::$test($crate::data_plane_test!(@kind $emulator))
                    })
                }
            )+
        }
    };
    (@kind ministack) => {
        $crate::EmulatorKind::MiniStack
    };
    (@kind localstack) => {
        $crate::EmulatorKind::LocalStack
    };
}

/// Runs a test's future on its own thread with a 64 MiB stack and a current-thread
/// runtime, as `#[tokio::test]` would on the test harness's 2 MiB thread.
///
/// Unoptimised builds lay out every state of an async fn inline, so an end-to-end
/// test that awaits the whole product grows past 2 MiB as the product does, and a
/// stack overflow aborts the whole test binary. The future is made on the new thread
/// and boxed, so it never sits on a small stack.
pub fn block_on_large_stack<F, Fut>(make: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    let thread = std::thread::Builder::new()
        .name(name)
        .stack_size(64 << 20)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the test's runtime")?;
            runtime.block_on(Box::pin(make()))
        })
        .context("starting the test's thread")?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Root of the repository (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The chart's default `mallocTunables` (the operator's `GLIBC_TUNABLES`), so that a
/// benchmark runs the operator with the allocator settings it ships with.
pub fn chart_malloc_tunables() -> Result<String> {
    let path = repo_root().join("charts/hookline/values.yaml");
    let values =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let tree: serde_json::Value =
        serde_saphyr::from_str(&values).with_context(|| format!("parsing {}", path.display()))?;
    tree["mallocTunables"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} has no string mallocTunables", path.display()))
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

/// `promtool`, built from its pinned Go module on first use (tests/promtool/build.sh).
pub fn promtool_binary() -> Result<PathBuf> {
    process::run_setup_script(&repo_root().join("tests/promtool/build.sh"))
        .context("building promtool (needs Go and the Go module proxy)")
}

/// The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, generated from
/// its pinned API module on first use (tests/monitoring-crds/gen.sh).
pub fn monitoring_crds() -> Result<
    Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
>{
    let dir = process::run_setup_script(&repo_root().join("tests/monitoring-crds/gen.sh"))
        .context("generating the Prometheus Operator CRDs (needs Go and the Go module proxy)")?;
    ["servicemonitors", "podmonitors", "prometheusrules"]
        .iter()
        .map(|plural| {
            let path = dir.join(format!("monitoring.coreos.com_{plural}.yaml"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// The emulator venv's `bin` directory (MiniStack, moto), creating the venv on first use.
pub fn emulator_venv() -> Result<PathBuf> {
    process::run_setup_script(&repo_root().join("tests/emulators/setup.sh"))
        .context("installing the AWS emulators (needs python3 with venv and PyPI)")
}

/// The LocalStack venv's `bin` directory, creating the venv on first use.
pub fn localstack_venv() -> Result<PathBuf> {
    process::run_setup_script(&repo_root().join("tests/emulators/setup-localstack.sh"))
        .context("installing LocalStack (needs Python >= 3.12 with venv and PyPI)")
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
    keda_crd("keda.sh_scaledobjects.yaml")
}

/// KEDA's TriggerAuthentication CRD, from the same module as the ScaledObject one.
pub fn keda_trigger_authentication_crd() -> Result<
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
> {
    keda_crd("keda.sh_triggerauthentications.yaml")
}

/// `file` of KEDA's `config/crd/bases/`.
fn keda_crd(
    file: &str,
) -> Result<
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
    let path = Path::new(dir).join("config/crd/bases").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
