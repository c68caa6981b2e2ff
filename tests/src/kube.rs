//! A real Kubernetes control plane on loopback: etcd and kube-apiserver built from
//! the upstream Go modules (see `tests/kube-bench/`), with TLS, RBAC, an admin
//! identity and service-account signing keys, and Hookline's CRDs installed.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::process::{Supervised, free_port, wait_until};

/// Field manager the bench uses for what it applies.
pub const FIELD_MANAGER: &str = "hookline-bench";

/// The running control plane. Dropping it stops kube-apiserver, then etcd.
#[derive(Debug)]
pub struct KubeCluster {
    // Declaration order is drop order: the API server goes before its storage.
    apiserver: Supervised,
    etcd: Supervised,
    etcd_client_port: u16,
    server_url: String,
    kubeconfig_path: PathBuf,
    pki_dir: PathBuf,
    version: String,
}

static NAMESPACE_SEQ: AtomicU32 = AtomicU32::new(0);

impl KubeCluster {
    /// Starts etcd and kube-apiserver from `bin_dir`, keeping all state in `dir`,
    /// and installs Hookline's CRDs.
    pub async fn start(bin_dir: &Path, dir: &Path) -> Result<Self> {
        let cluster = Self::start_bare(bin_dir, dir).await?;
        cluster.install_crds(&cluster.client().await?).await?;
        Ok(cluster)
    }

    /// Starts etcd and kube-apiserver without Hookline's CRDs (as a new cluster
    /// is before `helm install`).
    pub async fn start_bare(bin_dir: &Path, dir: &Path) -> Result<Self> {
        let pki_dir = dir.join("pki");
        let pki = Pki::write(&pki_dir)?;

        let etcd_client_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = Supervised::spawn(
            "etcd",
            &bin_dir.join("etcd"),
            [
                "--name=bench".to_owned(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=bench={peer_url}"),
                // The data is thrown away with the bench; fsync only costs time.
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &[],
            dir.join("etcd.log"),
        )?;
        wait_until(
            &mut etcd,
            "accepting connections",
            Duration::from_secs(30),
            || port_open(etcd_client_port),
        )
        .await?;

        let port = free_port()?;
        let server_url = format!("https://127.0.0.1:{port}");
        let mut apiserver = Supervised::spawn(
            "kube-apiserver",
            &bin_dir.join("kube-apiserver"),
            [
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", dir.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                "--authorization-mode=RBAC".to_owned(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                format!(
                    "--service-account-key-file={}",
                    pki.service_account_pub.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.service_account_key.display()
                ),
                "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
                // Endpoints may not hold loopback addresses, so the reconciler of the
                // `kubernetes` Service would fail forever on this bench.
                "--endpoint-reconciler-type=none".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &[],
            dir.join("kube-apiserver.log"),
        )?;

        let kubeconfig_path = dir.join("kubeconfig");
        std::fs::write(&kubeconfig_path, pki.kubeconfig(&server_url))
            .with_context(|| format!("writing {}", kubeconfig_path.display()))?;
        let client = client_from(&kubeconfig_path).await?;

        wait_until(
            &mut apiserver,
            "ready (/readyz)",
            Duration::from_secs(90),
            || {
                let client = client.clone();
                async move { readyz(&client).await }
            },
        )
        .await?;

        let version = client
            .apiserver_version()
            .await
            .context("reading the API server's /version")?
            .git_version;

        Ok(Self {
            apiserver,
            etcd,
            etcd_client_port,
            server_url,
            kubeconfig_path,
            pki_dir,
            version,
        })
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A kubeconfig file with the admin identity (group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The certificates' directory: `ca.crt` and the service-account signing key
    /// `service-account.key`, which a controller-manager on this cluster needs.
    pub fn pki_dir(&self) -> &Path {
        &self.pki_dir
    }

    /// The `gitVersion` the API server reports, e.g. `v1.37.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A new admin client. Each test makes its own: a client's connections belong to
    /// the runtime that made them, and every `#[tokio::test]` has its own runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from(&self.kubeconfig_path).await
    }

    /// Creates a namespace named `<prefix>-<unique suffix>` and returns its name, so
    /// tests sharing this API server never see each other's objects.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> Result<String> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NAMESPACE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(name)
    }

    /// Stops kube-apiserver, then etcd, with SIGKILL (an outage, not a clean
    /// shutdown): clients see their connections reset and then refused.
    pub fn stop(&mut self) -> Result<()> {
        self.apiserver.kill()?;
        self.etcd.kill()
    }

    /// Starts etcd and kube-apiserver again after [`KubeCluster::stop`], on the same
    /// ports, certificates and data directory, so clients reconnect to the same URL
    /// and find every object as it was; returns once `/readyz` answers `ok`.
    pub async fn restart(&mut self) -> Result<()> {
        self.etcd.restart()?;
        let port = self.etcd_client_port;
        wait_until(
            &mut self.etcd,
            "accepting connections again",
            Duration::from_secs(30),
            || port_open(port),
        )
        .await?;
        self.apiserver.restart()?;
        let client = client_from(&self.kubeconfig_path).await?;
        wait_until(
            &mut self.apiserver,
            "ready again (/readyz)",
            Duration::from_secs(90),
            || {
                let client = client.clone();
                async move { readyz(&client).await }
            },
        )
        .await
    }

    /// The kube-apiserver process, e.g. to stop it with SIGSTOP (a partition: its
    /// connections stay open and answer nothing).
    pub fn apiserver(&self) -> &Supervised {
        &self.apiserver
    }

    /// Process ids of etcd and kube-apiserver, for measurements.
    pub fn pids(&self) -> [u32; 2] {
        [self.etcd.pid(), self.apiserver.pid()]
    }

    async fn install_crds(&self, client: &kube::Client) -> Result<()> {
        let api = Api::<CustomResourceDefinition>::all(client.clone());
        for crd in hookline_crds::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("installing CRD {name}"))?;
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .with_context(|| format!("CRD {name} was not Established within 30 s"))?
            .with_context(|| format!("watching CRD {name}"))?;
        }
        for resource in hookline_resources() {
            wait_until_served(client, &resource).await?;
        }
        Ok(())
    }
}

/// The API resources of Hookline's CRDs, for tests that reach them untyped.
pub fn hookline_resources() -> [ApiResource; 2] {
    [
        ApiResource::erase::<hookline_crds::WebhookGateway>(&()),
        ApiResource::erase::<hookline_crds::Webhook>(&()),
    ]
}

/// Waits until the API server serves `resource`. A CRD's `Established` condition
/// comes before every handler of the API server knows the new resource: for a
/// moment after it, a request can still answer 404 "page not found" (CI saw this
/// right after `helm install` created two CRDs of one group, one served and the
/// other not yet). A list is what every client does first, so a list succeeding is
/// the signal; bounded at 30 s.
pub async fn wait_until_served(client: &kube::Client, resource: &ApiResource) -> Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let what = format!("the API server to serve {}", resource.plural);
    crate::util::wait_for(&what, Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
                Err(error) => Err(error).context("listing a Hookline resource"),
            }
        }
    })
    .await
}

async fn client_from(kubeconfig_path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path)
        .with_context(|| format!("reading {}", kubeconfig_path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("building a client config from the bench kubeconfig")?;
    kube::Client::try_from(config).context("building a Kubernetes client")
}

async fn readyz(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_ok()
}

/// The bench's certificates: one CA that signs the API server's serving certificate
/// and the admin's client certificate, plus the service-account signing key.
struct Pki {
    ca_cert: PathBuf,
    ca_pem: String,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert_pem: String,
    admin_key_pem: String,
    service_account_key: PathBuf,
    service_account_pub: PathBuf,
}

impl Pki {
    fn write(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "hookline-bench-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("self-signing the CA")?;
        let ca = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().context("generating the serving key")?;
        let mut serving = CertificateParams::new(vec!["localhost".to_owned()])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving
            .signed_by(&serving_key, &ca)
            .context("signing the serving certificate")?;

        // Kubernetes reads user and groups from CN and O of a client certificate.
        let admin_key = KeyPair::generate().context("generating the admin key")?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "hookline-bench-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin
            .signed_by(&admin_key, &ca)
            .context("signing the admin certificate")?;

        let service_account_key =
            KeyPair::generate().context("generating the service-account signing key")?;

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            ca_pem: ca_cert.pem(),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            service_account_key: dir.join("service-account.key"),
            service_account_pub: dir.join("service-account.pub"),
        };
        for (path, pem) in [
            (&pki.ca_cert, pki.ca_pem.clone()),
            (&pki.serving_cert, serving_cert.pem()),
            (&pki.serving_key, serving_key.serialize_pem()),
            (
                &pki.service_account_key,
                service_account_key.serialize_pem(),
            ),
            (
                &pki.service_account_pub,
                service_account_key.public_key_pem(),
            ),
        ] {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(pki)
    }

    fn kubeconfig(&self, server_url: &str) -> String {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: hookline-bench
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: hookline-bench-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: hookline-bench
  context:
    cluster: hookline-bench
    user: hookline-bench-admin
current-context: hookline-bench
",
            ca = b64(&self.ca_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }
}

/// Fails unless `bin_dir` holds both binaries the bench needs.
pub fn check_binaries(bin_dir: &Path) -> Result<()> {
    for name in ["etcd", "kube-apiserver"] {
        if !bin_dir.join(name).is_file() {
            bail!(
                "{} is missing; run tests/kube-bench/build.sh",
                bin_dir.join(name).display()
            );
        }
    }
    Ok(())
}
