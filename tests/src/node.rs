//! A real node for the bench's control plane: containerd (Debian's, as a plain process
//! with its config, root, state and socket in the node's directory), a kubelet
//! registered with the bench's API server, and kube-controller-manager and
//! kube-scheduler, so that a Deployment becomes ReplicaSets, Pods, and containers
//! that really run. Pods use the host network (there is no CNI here); images are
//! imported from docker-archives into containerd and never pulled.
//!
//! The kubelet, controller-manager and scheduler are built from the same pinned
//! `k8s.io/kubernetes` module as kube-apiserver by `tests/node/build.sh`; the pause
//! and handler images by `tests/node/images.sh`. What this machine needs and refuses
//! (no CAP_SYS_RESOURCE, so `restrict_oom_score_adj`; cgroup v1 with cgroupfs) is in
//! docs/testing.md.
//!
//! Dropping a [`Node`] stops what it started, by PID: the kubelet first (so it
//! restarts nothing), then every container and sandbox through containerd, then the
//! daemons; then it unmounts what is mounted under its directory and removes the
//! `kubepods` cgroups the kubelet made.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kube::KubeCluster;
use crate::process::{Supervised, free_port, wait_until};

/// The node's name in the API server.
pub const NODE_NAME: &str = "hookline-node";

/// containerd's namespace for Kubernetes' images and containers (the CRI plugin's).
const CRI_NAMESPACE: &str = "k8s.io";

/// The node's binaries: kubelet, kube-controller-manager, kube-scheduler, building
/// them on first use (and installing containerd/runc from Debian when missing).
pub fn node_binaries() -> Result<PathBuf> {
    let dir = crate::process::run_setup_script(&crate::repo_root().join("tests/node/build.sh"))
        .context("building the kubelet, controller-manager and scheduler (needs Go and the Go module proxy)")?;
    for name in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
        if !dir.join(name).is_file() {
            bail!(
                "{} is missing; run tests/node/build.sh",
                dir.join(name).display()
            );
        }
    }
    Ok(dir)
}

/// The directory with `pause.tar` and `handler.tar` (tests/node/images.sh).
pub fn node_images() -> Result<PathBuf> {
    crate::process::run_setup_script(&crate::repo_root().join("tests/node/images.sh"))
        .context("building the node's pause and handler images (needs Go and podman)")
}

/// A running node; see the module docs.
#[derive(Debug)]
pub struct Node {
    // Stopped explicitly in Drop, in this order.
    scheduler: Option<Supervised>,
    controller_manager: Option<Supervised>,
    kubelet: Option<Supervised>,
    containerd: Option<Supervised>,
    dir: PathBuf,
    socket: PathBuf,
    started_in: Duration,
}

impl Node {
    /// Starts containerd, the kubelet, the controller-manager and the scheduler
    /// against `cluster`, with all their state under `dir` (created), imports the
    /// pause image, and returns once the Node object is Ready.
    pub async fn start(cluster: &KubeCluster, dir: &Path) -> Result<Self> {
        let started = Instant::now();
        let bin = node_binaries()?;
        let images = node_images()?;
        let dir = dir.join("node");
        for sub in [
            "containerd/root",
            "containerd/state",
            "kubelet",
            "pod-logs",
            "cni",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let socket = dir.join("containerd.sock");
        let mut node = Self {
            scheduler: None,
            controller_manager: None,
            kubelet: None,
            containerd: None,
            dir: dir.clone(),
            socket: socket.clone(),
            started_in: Duration::ZERO,
        };

        // containerd reports NetworkReady (and so the kubelet the Node Ready) only once
        // a CNI config loads; pods here use the host network, so loopback is enough.
        let cni = dir.join("cni/10-loopback.conflist");
        std::fs::write(
            &cni,
            r#"{"cniVersion": "1.0.0", "name": "hookline-loopback", "plugins": [{"type": "loopback"}]}"#,
        )
        .with_context(|| format!("writing {}", cni.display()))?;

        let pause = archive_reference(&images.join("pause.tar"))?;
        let config = dir.join("containerd.toml");
        std::fs::write(&config, containerd_config(&dir, &socket, &pause))
            .with_context(|| format!("writing {}", config.display()))?;
        let containerd = node.containerd.insert(Supervised::spawn(
            "containerd",
            Path::new("containerd"),
            ["--config".to_owned(), config.display().to_string()],
            &[],
            dir.join("containerd.log"),
        )?);
        let ctr_socket = socket.clone();
        wait_until(
            containerd,
            "serving its socket",
            Duration::from_secs(30),
            || {
                let socket = ctr_socket.clone();
                async move { ctr(&socket, &["version"]).is_ok() }
            },
        )
        .await?;
        node.import(&images.join("pause.tar"))?;

        let kubeconfig = cluster.kubeconfig_path().display().to_string();
        let pki = cluster.pki_dir();
        let kubelet_config = dir.join("kubelet.yaml");
        let healthz_port = free_port()?;
        std::fs::write(
            &kubelet_config,
            kubelet_config_yaml(&dir, &socket, healthz_port, free_port()?),
        )
        .with_context(|| format!("writing {}", kubelet_config.display()))?;
        node.kubelet = Some(Supervised::spawn(
            "kubelet",
            &bin.join("kubelet"),
            [
                format!("--config={}", kubelet_config.display()),
                format!("--kubeconfig={kubeconfig}"),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet-pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                "--v=1".to_owned(),
            ],
            &[],
            dir.join("kubelet.log"),
        )?);
        node.controller_manager = Some(Supervised::spawn(
            "kube-controller-manager",
            &bin.join("kube-controller-manager"),
            [
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", free_port()?),
                format!("--cert-dir={}", dir.join("kcm-certs").display()),
                format!(
                    "--service-account-private-key-file={}",
                    pki.join("service-account.key").display()
                ),
                format!("--root-ca-file={}", pki.join("ca.crt").display()),
                "--use-service-account-credentials=false".to_owned(),
                // Scaling tests want a replaced pod soon, not after the defaults.
                "--node-monitor-grace-period=20s".to_owned(),
            ],
            &[],
            dir.join("kube-controller-manager.log"),
        )?);
        node.scheduler = Some(Supervised::spawn(
            "kube-scheduler",
            &bin.join("kube-scheduler"),
            [
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", free_port()?),
                format!("--cert-dir={}", dir.join("scheduler-certs").display()),
            ],
            &[],
            dir.join("kube-scheduler.log"),
        )?);

        let client = cluster.client().await?;
        let nodes: Api<NodeObject> = Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for process in [
                &mut node.kubelet,
                &mut node.controller_manager,
                &mut node.scheduler,
                &mut node.containerd,
            ]
            .into_iter()
            .flatten()
            {
                process.check_running()?;
            }
            let conditions = node_conditions(&nodes).await?;
            if conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                break;
            }
            if Instant::now() >= deadline {
                let kubelet = node.kubelet.as_ref().map(|k| k.log_tail(40));
                let conditions: Vec<String> = conditions
                    .iter()
                    .map(|c| format!("{}={} ({:?})", c.type_, c.status, c.message))
                    .collect();
                bail!(
                    "the Node {NODE_NAME} was not Ready after 120 s: {conditions:?}; \
                     last lines of the kubelet's log:\n{}",
                    kubelet.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        node.started_in = started.elapsed();
        Ok(node)
    }

    /// Imports a docker-archive (e.g. `target/images/hookline-worker.tar`) into the
    /// node's containerd, where the kubelet finds it without pulling.
    pub fn import(&self, archive: &Path) -> Result<()> {
        let path = archive.display().to_string();
        ctr(
            &self.socket,
            &[
                "-n",
                CRI_NAMESPACE,
                "images",
                "import",
                "--no-unpack",
                &path,
            ],
        )
        .map(drop)
        .with_context(|| format!("importing {path} into the node's containerd"))
    }

    /// The image reference the node's handler image was imported under (imports it).
    pub fn import_handler(&self) -> Result<String> {
        let archive = node_images()?.join("handler.tar");
        self.import(&archive)?;
        archive_reference(&archive)
    }

    /// How long [`Node::start`] took, builds included when they ran.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The node's directory: the daemons' logs (`*.log`), config and state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the kubelet's log, for failure messages.
    pub fn kubelet_log_tail(&self, lines: usize) -> String {
        self.kubelet
            .as_ref()
            .map(|k| k.log_tail(lines))
            .unwrap_or_default()
    }

    /// The last `lines` of every log of container `container` in the pods of
    /// `namespace` (the kubelet's `podLogsDir`), each under its path: what a crashed
    /// container said, for failure messages.
    pub fn container_logs(&self, namespace: &str, container: &str, lines: usize) -> String {
        let mut out = String::new();
        let Ok(pods) = std::fs::read_dir(self.dir.join("pod-logs")) else {
            return out;
        };
        for pod in pods.flatten() {
            if !pod
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{namespace}_"))
            {
                continue;
            }
            let Ok(files) = std::fs::read_dir(pod.path().join(container)) else {
                continue;
            };
            for file in files.flatten() {
                let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    file.path().display(),
                    all[all.len().saturating_sub(lines)..].join("\n")
                ));
            }
        }
        out
    }

    /// Kills every container and sandbox of the node's containerd and removes them.
    fn remove_containers(&self) {
        let Ok(tasks) = ctr(&self.socket, &["-n", CRI_NAMESPACE, "tasks", "ls", "-q"]) else {
            return;
        };
        for id in tasks.split_whitespace() {
            let _ = ctr(
                &self.socket,
                &["-n", CRI_NAMESPACE, "tasks", "kill", "-s", "SIGKILL", id],
            );
        }
        for id in tasks.split_whitespace() {
            // A task is deleted once it has exited; a few tries cover the kill's delay.
            for _ in 0..20 {
                if ctr(&self.socket, &["-n", CRI_NAMESPACE, "tasks", "rm", id]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Ok(containers) = ctr(
            &self.socket,
            &["-n", CRI_NAMESPACE, "containers", "ls", "-q"],
        ) {
            for id in containers.split_whitespace() {
                let _ = ctr(&self.socket, &["-n", CRI_NAMESPACE, "containers", "rm", id]);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first, so that it restarts nothing while containers go.
        drop(self.kubelet.take());
        drop(self.scheduler.take());
        drop(self.controller_manager.take());
        if self.containerd.is_some() {
            self.remove_containers();
        }
        drop(self.containerd.take());
        unmount_under(&self.dir);
        remove_kubepods_cgroups();
        // The shims' sockets and runc's state go to fixed paths under /run/containerd
        // whatever the config says; only empty directories are removed, so another
        // containerd's are left alone.
        for empty in [
            "/run/containerd/runc/k8s.io",
            "/run/containerd/runc",
            "/run/containerd/s",
            "/run/containerd",
        ] {
            let _ = std::fs::remove_dir(empty);
        }
    }
}

/// `ctr --address <socket> <args>`: its stdout, or an error with its stderr.
fn ctr(socket: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ctr (Debian's containerd package)")?;
    if !output.status.success() {
        bail!(
            "ctr {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The first image reference of a docker-archive.
fn archive_reference(archive: &Path) -> Result<String> {
    crate::podman::archive_references(archive)?
        .into_iter()
        .next()
        .with_context(|| format!("{} names no image", archive.display()))
}

/// The Node's conditions; none before the kubelet registered it.
async fn node_conditions(
    nodes: &Api<NodeObject>,
) -> Result<Vec<k8s_openapi::api::core::v1::NodeCondition>> {
    Ok(nodes
        .get_opt(NODE_NAME)
        .await
        .with_context(|| format!("reading the Node {NODE_NAME}"))?
        .and_then(|n| n.status)
        .and_then(|s| s.conditions)
        .unwrap_or_default())
}

/// containerd 1.6's configuration: everything under `dir`, the CRI plugin with the
/// local pause image, and what this machine needs (see docs/testing.md).
fn containerd_config(dir: &Path, socket: &Path, pause: &str) -> String {
    let d = |p: &str| dir.join(p).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Without CAP_SYS_RESOURCE in the bounding set a negative oom_score_adj is refused
  # and runc fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = socket.display(),
        cni = d("cni"),
    )
}

/// The kubelet's configuration: cgroupfs on this machine's cgroup v1, no swap or
/// allocatable enforcement, its servers on 127.0.0.1, evictions that a full-ish
/// build disk does not trigger.
fn kubelet_config_yaml(dir: &Path, socket: &Path, healthz_port: u16, port: u16) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {logs}
registerNode: true
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
"#,
        socket = socket.display(),
        logs = dir.join("pod-logs").display(),
    )
}

/// Unmounts every mount point under `dir`, deepest first (the kubelet bind-mounts
/// its root dir and pods' volumes; containerd mounts overlays and sandboxes' shm).
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(point)
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the `kubepods` cgroup trees the kubelet made in every v1 hierarchy and in
/// the unified one; only empty cgroups can be removed, so this runs after every
/// container stopped.
fn remove_kubepods_cgroups() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        remove_cgroup_tree(&hierarchy.path().join("kubepods"));
    }
}

fn remove_cgroup_tree(path: &Path) {
    if let Ok(children) = std::fs::read_dir(path) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}
