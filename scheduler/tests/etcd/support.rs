//! Real etcd members for the etcd store's tests: a single member or a cluster of several, each
//! on free loopback ports in a temporary directory, killed when dropped.
//!
//! The `etcd` binary comes from Debian's `etcd-server` package, which `scripts/test` installs;
//! `$FEDJOB_ETCD` names another binary. Without one the tests fail with a message saying so:
//! they are not skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fedjob_scheduler::store::etcd::{ClientIdentity, EtcdCredentials, EtcdTls, parse_endpoint};
use fedjob_scheduler::store::{EtcdOptions, EtcdStore};
use tonic::transport::Uri;

/// How long a new cluster may take to elect a leader and serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The etcd binary, or a panic that tells how to get one.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDJOB_ETCD") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the etcd store tests need the `etcd` binary, which is not installed: install \
             Debian's etcd-server package (`apt-get install -y etcd-server`, as scripts/test \
             does) or point $FEDJOB_ETCD at an etcd 3.4+ binary"
        )
    })
}

/// TLS files for members started with [`Settings::tls`]; made by [`TlsFiles::generate`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the
    /// `openssl` command in `dir`.
    pub fn generate(dir: &Path) -> TlsFiles {
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl (Debian package openssl) to make test certificates");
            assert!(
                output.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=fedjob-test-ca",
        ]);
        openssl(&args);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, subject) in [("server", "/CN=etcd"), ("client", "/CN=fedjob-scheduler")] {
            let mut args = vec!["req"];
            args.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
            openssl(&args);
            let cert = format!("{name}.crt");
            let ext = format!("{name}.ext");
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }

    /// The client side: the CA and the client certificate.
    pub fn client(&self) -> EtcdTls {
        EtcdTls {
            ca: self.ca.clone(),
            client: Some(ClientIdentity {
                cert: self.client_cert.clone(),
                key: self.client_key.clone(),
            }),
        }
    }
}

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Members.
    pub members: usize,
    /// Serve clients over TLS, requiring client certificates.
    pub tls: Option<TlsFiles>,
    /// More etcd flags for every member.
    pub extra_args: Vec<String>,
    /// Credentials the health check (and [`EtcdCluster::store`]) uses.
    pub credentials: Option<EtcdCredentials>,
}

/// One etcd process.
pub struct Member {
    pub name: String,
    pub client_url: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// The member's client endpoint.
    pub fn endpoint(&self) -> Uri {
        parse_endpoint(&self.client_url).unwrap()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill etcd");
            child.wait().expect("reap etcd");
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("poll etcd").is_none(),
            None => false,
        }
    }

    /// The member's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running etcd cluster of one or more members.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// One member, plain http.
    pub async fn single() -> EtcdCluster {
        Self::start(Settings {
            members: 1,
            ..Settings::default()
        })
        .await
    }

    /// Three members, plain http.
    pub async fn three() -> EtcdCluster {
        Self::start(Settings {
            members: 3,
            ..Settings::default()
        })
        .await
    }

    /// Starts the members and waits until every one serves linearizable reads. Tries again
    /// on new ports when a member dies while starting (another process took a port).
    pub async fn start(settings: Settings) -> EtcdCluster {
        init_tracing();
        let binary = etcd_binary();
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start(&binary, &settings).await {
                Ok(cluster) => return cluster,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("etcd did not start:\n{}", failures.join("\n---\n"));
    }

    async fn try_start(binary: &Path, settings: &Settings) -> Result<EtcdCluster, String> {
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(settings.members * 2);
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster: Vec<String> = (0..settings.members)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect();
        let token = format!(
            "fedjob-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let mut members = Vec::new();
        for i in 0..settings.members {
            let name = format!("m{i}");
            let client_url = format!("{scheme}://127.0.0.1:{}", ports[2 * i]);
            let log = dir.path().join(format!("{name}.log"));
            let mut command = Command::new(binary);
            command
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i)])
                .args(["--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial_cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .args(&settings.extra_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            if let Some(tls) = &settings.tls {
                command
                    .arg("--cert-file")
                    .arg(&tls.server_cert)
                    .arg("--key-file")
                    .arg(&tls.server_key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
            }
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            members.push(Member {
                name,
                client_url,
                log,
                child: Some(child),
            });
        }
        let mut cluster = EtcdCluster {
            members,
            settings: settings.clone(),
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        for i in 0..cluster.members.len() {
            loop {
                if !cluster.members[i].is_running() {
                    return Err(format!(
                        "etcd member {} exited while starting; its log:\n{}",
                        cluster.members[i].name,
                        cluster.members[i].log()
                    ));
                }
                let mut options = cluster.options_for(vec![cluster.members[i].endpoint()], "/");
                options.retry_timeout = Duration::from_secs(1);
                if let Ok(store) = EtcdStore::connect(options).await {
                    let _ = fedjob_scheduler::store::Store::close(&store).await;
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!(
                        "etcd member {} did not serve within {START_TIMEOUT:?}; its log:\n{}",
                        cluster.members[i].name,
                        cluster.members[i].log()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(cluster)
    }

    /// Every member's endpoint, in member order.
    pub fn endpoints(&self) -> Vec<Uri> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Options for a store on `endpoints` under `prefix`, with the cluster's TLS and
    /// credentials.
    pub fn options_for(&self, endpoints: Vec<Uri>, prefix: &str) -> EtcdOptions {
        let mut options = EtcdOptions::new(endpoints);
        options.prefix = prefix.to_owned();
        options.tls = self.settings.tls.as_ref().map(TlsFiles::client);
        options.credentials = self.settings.credentials.clone();
        options
    }

    /// A store on every member under `prefix`.
    pub async fn store(&self, prefix: &str) -> EtcdStore {
        self.store_on(self.endpoints(), prefix).await
    }

    /// A store on `endpoints` under `prefix`.
    pub async fn store_on(&self, endpoints: Vec<Uri>, prefix: &str) -> EtcdStore {
        EtcdStore::connect(self.options_for(endpoints, prefix))
            .await
            .unwrap_or_else(|e| panic!("connect to etcd: {e:#?}"))
    }

    /// The member whose endpoint is `endpoint` (as [`EtcdStore::current_endpoint`] says it).
    pub fn member_at(&mut self, endpoint: &str) -> &mut Member {
        let wanted = parse_endpoint(endpoint).unwrap();
        self.members
            .iter_mut()
            .find(|m| m.endpoint() == wanted)
            .unwrap_or_else(|| panic!("no member at {endpoint}"))
    }
}

/// Logs of the store (warnings by default; `RUST_LOG` says otherwise) in the test's output.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// `n` distinct loopback ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
