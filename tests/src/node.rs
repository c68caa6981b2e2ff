//! A real node for the bench's control plane: containerd (Debian's, as a plain process
//! with its config, root, state and socket in the node's directory), a kubelet
//! registered with the bench's API server, and kube-controller-manager and
//! kube-scheduler, so that a Deployment becomes ReplicaSets, Pods, and containers
//! that really run. Images are imported from docker-archives into containerd and
//! never pulled.
//!
//! Pods get network namespaces of their own on a CNI bridge (Debian's `bridge` and
//! `host-local` plugins): one IP each on a private /24 with no uplink, which the
//! kubelet's probes reach, so replicas of one Deployment share the node without port
//! clashes. The bench's services listen only on the machine's 127.0.0.1, which is not
//! a pod's; the node's forwarder (`tests/node/helper`, told of each pod network by a
//! CNI plugin of its own, chained after the bridge) listens on every pod's 127.0.0.1
//! at the ports [`Node::expose`] names and relays to the machine's. So a pod reaches
//! the emulator at the very endpoint the operator hands the worker.
//!
//! The kubelet, controller-manager and scheduler are built from the same pinned
//! `k8s.io/kubernetes` module as kube-apiserver by `tests/node/build.sh`; the pause
//! and handler images by `tests/node/images.sh`. What this machine needs and refuses
//! (no CAP_SYS_RESOURCE, so `restrict_oom_score_adj`; cgroup v1 with cgroupfs) is in
//! docs/testing.md.
//!
//! Dropping a [`Node`] stops what it started, by PID: the kubelet first (so it
//! restarts nothing), then every container and sandbox through containerd, then the
//! daemons; then it unmounts what is mounted under its directory and the pods'
//! network namespaces, deletes its bridge, and removes the cgroups under its own
//! cgroup root (so two nodes at once never share `kubepods`).

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kube::KubeCluster;
use crate::podman::archive_reference;
use crate::process::{Supervised, free_port, wait_until};

/// The node's name in the API server.
pub const NODE_NAME: &str = "hookline-node";

/// How many bridges (so nodes at once) the bench allows: `hlnode<i>` with pods on
/// `10.244.<i>.0/24`. A bridge that a killed test left is skipped, never reused.
const BRIDGES: u8 = 64;

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
    forwarder: Option<Supervised>,
    dir: PathBuf,
    socket: PathBuf,
    forward_socket: PathBuf,
    bridge: Option<String>,
    cgroup_root: String,
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
            "cni/bin",
            "cni/net.d",
            "cni/ipam",
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
            forwarder: None,
            dir: dir.clone(),
            socket: socket.clone(),
            forward_socket: dir.join("cni/forward.sock"),
            bridge: None,
            cgroup_root: String::new(),
            started_in: Duration::ZERO,
        };
        let (bridge, subnet) = reserve_bridge()?;
        node.bridge = Some(bridge.clone());
        // Named after the bridge, so unique among the nodes running on this machine:
        // each keeps its pods' cgroups apart, and a dropped node removes only its own.
        node.cgroup_root = format!("/hookline-{bridge}");
        node.make_cgroup_root()?;
        let helper = images.join("node-helper");
        let forward_socket = node.forward_socket.clone();
        let forwarder = node.forwarder.insert(Supervised::spawn(
            "node forwarder",
            &helper,
            ["forward".to_owned(), forward_socket.display().to_string()],
            &[],
            dir.join("forwarder.log"),
        )?);
        wait_until(
            forwarder,
            "serving its socket",
            Duration::from_secs(10),
            || {
                let socket = forward_socket.clone();
                async move { std::os::unix::net::UnixStream::connect(&socket).is_ok() }
            },
        )
        .await?;
        write_cni_config(
            &dir.join("cni"),
            &helper,
            &bridge,
            &subnet,
            &node.forward_socket,
        )?;

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
            kubelet_config_yaml(&dir, &socket, &node.cgroup_root, healthz_port, free_port()?),
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
                &mut node.forwarder,
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

    /// Makes the machine's `127.0.0.1:port` (an emulator, a test's recorder) appear
    /// at `127.0.0.1:port` in every pod, those running and those to come.
    pub fn expose(&self, port: u16) -> Result<()> {
        self.ask_forwarder(&format!("EXPOSE {port}"))
            .map(drop)
            .with_context(|| format!("exposing 127.0.0.1:{port} to the node's pods"))
    }

    /// One request to the node's forwarder (tests/node/helper/forward.go): the rest
    /// of its `OK` answer, or its error.
    fn ask_forwarder(&self, request: &str) -> Result<String> {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&self.forward_socket)
            .with_context(|| format!("connecting to {}", self.forward_socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        writeln!(stream, "{request}")?;
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .context("reading the forwarder's answer")?;
        let answer = answer.trim();
        match answer.strip_prefix("OK") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("the node's forwarder refused {request:?}: {answer}"),
        }
    }

    /// Sends `signal` (`SIGKILL`, `SIGSTOP`, `SIGCONT`, ...) to a container's main
    /// process, named by the `containerID` a pod's status gives (`containerd://<id>`
    /// or the bare id): what a crash or a hang looks like to the kubelet.
    pub fn signal_container(&self, container_id: &str, signal: &str) -> Result<()> {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        ctr(
            &self.socket,
            &["-n", CRI_NAMESPACE, "tasks", "kill", "-s", signal, id],
        )
        .map(drop)
    }

    /// The cgroup root of this node's pods, in every v1 hierarchy (the kubelet
    /// refuses a root that does not exist, and makes `kubepods` under it).
    fn make_cgroup_root(&self) -> Result<()> {
        for hierarchy in cgroup_hierarchies() {
            let path = hierarchy.join(self.cgroup_root.trim_start_matches('/'));
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating the cgroup {}", path.display()))?;
        }
        Ok(())
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

    /// The bridge of the node's pods (`hlnode<i>`).
    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or_default()
    }

    /// The cgroup root of the node's pods (`/hookline-hlnode<i>`).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
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
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    file.path().display(),
                    crate::process::tail(&file.path(), lines)
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
        // The pods' network namespaces, from the forwarder before it goes: containerd
        // removes them only when the kubelet stops a sandbox, and the kill below
        // bypasses the kubelet.
        let namespaces: Vec<PathBuf> = self
            .ask_forwarder("LIST")
            .map(|list| list.split_whitespace().map(PathBuf::from).collect())
            .unwrap_or_default();
        if self.containerd.is_some() {
            self.remove_containers();
        }
        drop(self.containerd.take());
        drop(self.forwarder.take());
        unmount_under(&self.dir);
        for netns in namespaces {
            let _ = Command::new("umount")
                .arg(&netns)
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(&netns);
        }
        if let Some(bridge) = self.bridge.take() {
            let _ = Command::new("ip")
                .args(["link", "delete", &bridge])
                .stderr(Stdio::null())
                .status();
        }
        for hierarchy in cgroup_hierarchies() {
            remove_cgroup_tree(&hierarchy.join(self.cgroup_root.trim_start_matches('/')));
        }
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

/// A team's handler container for a worker pod template: the node's handler image
/// (tests/node/helper) listening on `port` in the pod, forwarding each delivery to
/// `record_url` (a [`crate::recorder::Recorder`], [`Node::expose`]d), taking
/// `delay_ms` per delivery, Ready once it listens.
pub fn handler_container(
    image: &str,
    port: u16,
    record_url: &str,
    delay_ms: u64,
) -> serde_json::Value {
    serde_json::json!({
        "name": "handler",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [
            {"name": "PORT", "value": port.to_string()},
            {"name": "RECORD_URL", "value": record_url},
            {"name": "DELAY_MS", "value": delay_ms.to_string()},
        ],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    })
}

/// Field manager of [`give_emulator_credentials`]' apply.
pub const CREDENTIALS_MANAGER: &str = "hookline-bench-credentials";

/// Gives the worker sidecar of Deployment `name` the emulator's AWS credentials,
/// once the operator made the Deployment. On EKS the pod identity webhook (or IRSA's)
/// injects credentials into the pod; the bench has no such webhook, so this applies
/// them under a field manager of its own, which the operator's applies leave alone.
pub async fn give_emulator_credentials(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    crate::util::wait_for(
        &format!("the Deployment {namespace}/{name}"),
        Duration::from_secs(120),
        || async { Ok(deployments.get_opt(name).await?.is_some()) },
    )
    .await?;
    let credentials = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"initContainers": [{
            "name": "hookline-worker",
            "env": [
                {"name": "AWS_ACCESS_KEY_ID", "value": "test"},
                {"name": "AWS_SECRET_ACCESS_KEY", "value": "test"},
            ],
        }]}}},
    });
    deployments
        .patch(
            name,
            &PatchParams::apply(CREDENTIALS_MANAGER),
            &Patch::Apply(&credentials),
        )
        .await
        .with_context(|| format!("adding the emulator's credentials to {namespace}/{name}"))?;
    Ok(())
}

/// Whether a pod of a worker Deployment runs the template with the emulator's
/// credentials ([`give_emulator_credentials`]); a pod of the template before them
/// crash-loops on no credentials until its ReplicaSet is scaled away.
pub fn has_emulator_credentials(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.init_containers.iter().flatten().any(|c| {
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "AWS_ACCESS_KEY_ID")
        })
    })
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What a pod's containers report, for failure messages.
pub fn pod_summary(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.container_statuses.unwrap_or_default())
        .map(|c| {
            format!(
                "{}: ready={} restarts={} state={:?}",
                c.name, c.ready, c.restart_count, c.state
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "{}: phase {:?}, ip {:?}, conditions {:?}, containers [{containers}]",
        pod.metadata.name.as_deref().unwrap_or("?"),
        status.phase,
        status.pod_ip,
        status.conditions.map(|c| c
            .into_iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect::<Vec<_>>()),
    )
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
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/net.d"
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
fn kubelet_config_yaml(
    dir: &Path,
    socket: &Path,
    cgroup_root: &str,
    healthz_port: u16,
    port: u16,
) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: {cgroup_root}
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

/// The cgroup v1 hierarchies (and the unified one) mounted under /sys/fs/cgroup.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Reserves a bridge for a node's pods: the first `hlnode<i>` that `ip link add`
/// can create (one that exists belongs to another node, or to a killed test), and
/// its subnet `10.244.<i>.0/24`.
fn reserve_bridge() -> Result<(String, String)> {
    let mut refusals = Vec::new();
    for i in 0..BRIDGES {
        let name = format!("hlnode{i}");
        let output = Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .stdin(Stdio::null())
            .output()
            .context("running ip (iproute2) to make the node's bridge")?;
        if output.status.success() {
            return Ok((name, format!("10.244.{i}.0/24")));
        }
        refusals.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    bail!(
        "no bridge for the node's pods could be made ({}); `ip -br link | grep hlnode` \
         shows the ones left, `ip link delete hlnodeN` removes one",
        refusals.join("; ")
    )
}

/// The node's CNI setup under `cni`: a bin dir with Debian's bridge, host-local and
/// loopback plugins and the forwarder's (`hookline-forward`, the helper binary under
/// that name), and the pod network: a bridge with the node's gateway, host-local
/// addresses kept under `cni/ipam`, no masquerade (nothing leaves the machine), then
/// the forwarder's plugin.
fn write_cni_config(
    cni: &Path,
    helper: &Path,
    bridge: &str,
    subnet: &str,
    forward_socket: &Path,
) -> Result<()> {
    let bin = cni.join("bin");
    for plugin in ["bridge", "host-local", "loopback"] {
        let source = Path::new("/usr/lib/cni").join(plugin);
        if !source.is_file() {
            bail!(
                "{} is missing: install Debian's containernetworking-plugins (tests/node/build.sh does)",
                source.display()
            );
        }
        link(&source, &bin.join(plugin))?;
    }
    link(helper, &bin.join("hookline-forward"))?;
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "hookline-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": cni.join("ipam"),
                },
            },
            {"type": "hookline-forward", "socket": forward_socket},
        ],
    });
    let path = cni.join("net.d/10-hookline-pods.conflist");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn link(source: &Path, link: &Path) -> Result<()> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(source, link)
        .with_context(|| format!("linking {} to {}", link.display(), source.display()))
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
