//! TLS, per-cluster agent identity and user tokens, with certificates made at test time by
//! `scripts/make-certs` (openssl), as the README shows.

use std::path::{Path, PathBuf};
use std::process::Command;

use fedjob_proto::v1::{self, agent_client::AgentClient};
use fedjob_scheduler::config::Config;
use fedjob_scheduler::server::{self, Running};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const FEDCTL: &str = env!("CARGO_BIN_EXE_fedctl");
const SCHEDULER: &str = env!("CARGO_BIN_EXE_fedjob-scheduler");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A CA, a scheduler certificate and certificates for c1 and c2; plus one with only a CN.
fn certificates(dir: &Path) {
    let status = Command::new(repo().join("scripts/make-certs"))
        .arg(dir)
        .args(["c1", "c2"])
        .status()
        .expect("scripts/make-certs runs (it needs openssl)");
    assert!(status.success());
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "cn.key",
    ]);
    run(&[
        "req", "-new", "-key", "cn.key", "-subj", "/CN=c3", "-out", "cn.csr",
    ]);
    std::fs::write(dir.join("cn.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cn.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "cn.ext",
        "-out",
        "cn.crt",
    ]);
}

struct Secure {
    running: Running,
    url: String,
    dir: tempfile::TempDir,
}

async fn start() -> Secure {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    std::fs::write(
        dir.path().join("tokens"),
        "admin-token,alice,admin\nview-token,bob,viewer\n",
    )
    .unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let config = Config::try_parse_from([
        "fedjob-scheduler",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &p("data"),
        "--metrics-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &p("scheduler.crt"),
        "--tls-key",
        &p("scheduler.key"),
        "--client-ca",
        &p("ca.crt"),
        "--tokens",
        &p("tokens"),
    ])
    .unwrap();
    let running = server::start(config).await.unwrap();
    let url = format!("https://localhost:{}", running.addr.port());
    Secure { running, url, dir }
}

impl Secure {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn channel(&self, identity: Option<&str>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(
                std::fs::read(self.path("ca.crt")).unwrap(),
            ))
            .domain_name("localhost");
        if let Some(name) = identity {
            let cert = std::fs::read(self.path(&format!("{name}.crt"))).unwrap();
            let key = std::fs::read(self.path(&format!("{name}.key"))).unwrap();
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn register(
        &self,
        identity: Option<&str>,
        cluster: &str,
    ) -> Result<v1::RegisterResponse, tonic::Status> {
        let mut agent = AgentClient::new(self.channel(identity).await);
        let req = v1::RegisterRequest {
            cluster: cluster.into(),
            ..Default::default()
        };
        agent.register(req).await.map(|r| r.into_inner())
    }

    fn fedctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(FEDCTL)
            .args([
                "--server",
                &self.url,
                "--ca",
                &self.path("ca.crt").display().to_string(),
            ])
            .args(args)
            .env_remove("FEDJOB_TOKEN")
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(out.stdout),
            text(out.stderr),
        )
    }
}

#[tokio::test]
async fn agents_act_only_for_the_cluster_their_certificate_names() {
    let s = start().await;
    s.register(Some("c1"), "c1")
        .await
        .expect("c1 may register as c1");
    let err = s.register(Some("c1"), "c2").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not for cluster \"c2\""),
        "{}",
        err.message()
    );
    let err = s.register(None, "c1").await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "no certificate, no agent"
    );
    s.register(Some("cn"), "c3")
        .await
        .expect("without a DNS SAN the CN names the cluster");

    // A session naming another cluster than the certificate is refused as well.
    let token = s.register(Some("c2"), "c2").await.unwrap().session;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = v1::Hello {
        cluster: "c1".into(),
        session: token,
        held: vec![],
    };
    tx.send(v1::AgentMessage {
        msg: Some(v1::agent_message::Msg::Hello(hello)),
    })
    .await
    .unwrap();
    let mut agent = AgentClient::new(s.channel(Some("c2")).await);
    let err = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let metrics = s.running.control_plane.metrics().encode();
    assert!(
        metrics.contains("fedjob_requests_refused_total{reason=\"wrong-cluster\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fedjob_requests_refused_total{reason=\"no-certificate\"} 1"),
        "{metrics}"
    );
}

// fedctl runs as a blocking child process while the scheduler runs in this test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_need_a_token_and_viewers_cannot_write() {
    let s = start().await;
    let manifest = s.path("job.yaml");
    std::fs::write(&manifest, "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: w, image: busybox}]\n").unwrap();
    let file = manifest.display().to_string();

    let (code, _, err) = s.fedctl(&["get", "jobs"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error from server (Unauthorized)"), "{err}");
    let (code, _, err) = s.fedctl(&["--token", "view-token", "create", "-f", &file]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error from server (Forbidden)") && err.contains("bob"),
        "{err}"
    );
    let (code, out, err) = s.fedctl(&["--token", "admin-token", "create", "-f", &file]);
    assert_eq!((code, out.as_str()), (0, "job.batch/j created\n"), "{err}");
    let (code, out, _) = s.fedctl(&["--token", "view-token", "get", "jobs"]);
    assert_eq!(code, 0);
    assert!(out.contains("j "), "{out}");
    let out = Command::new(FEDCTL)
        .args([
            "--server",
            &s.url,
            "--ca",
            &s.path("ca.crt").display().to_string(),
            "get",
            "jobs",
        ])
        .env("FEDJOB_TOKEN", "view-token")
        .output()
        .unwrap();
    assert!(out.status.success(), "$FEDJOB_TOKEN is read");

    // Health stays reachable for probes without any credentials.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel(None).await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fedjob.v1.Federation".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Without the CA the server is not trusted.
    let out = Command::new(FEDCTL)
        .args(["--server", &s.url, "get", "jobs"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
}

#[test]
fn plain_text_is_refused_off_loopback_unless_insecure() {
    let out = Command::new(SCHEDULER)
        .args(["--listen", "0.0.0.0:0", "--data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve plain-text gRPC on 0.0.0.0:0")
            && err.contains("--insecure"),
        "{err}"
    );
    let out = Command::new(SCHEDULER)
        .args(["--tls-cert", "x.pem"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "a certificate without its key is refused"
    );
}

/// An address of this machine that is not loopback: the one the kernel picks to reach a
/// TEST-NET address (a UDP "connect" sends nothing), else the first non-loopback IPv4 address
/// `ip` lists.
fn non_loopback_address() -> std::net::IpAddr {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routed
        .or_else(|| {
            let out = Command::new("ip")
                .args(["-o", "-4", "addr", "show"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|w| w.split('/').next()?.parse::<std::net::IpAddr>().ok())
                .find(|ip| !ip.is_loopback())
        })
        .expect("this test needs a network interface with a non-loopback address")
}

/// A child process killed when dropped, so a failing test leaves no scheduler behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SPEC §8: plain text off loopback only with `--insecure`; with it, clients reaching the
/// scheduler over that address (so from a non-loopback source) are served: an agent
/// registers, fedctl creates and reads a Job.
#[tokio::test]
async fn insecure_serves_plain_text_clients_on_a_non_loopback_address() {
    let ip = non_loopback_address();
    let port = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = std::net::SocketAddr::new(ip, port).to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let refused = Command::new(SCHEDULER)
        .args(["--listen", &listen, "--data-dir", &data])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64), "without --insecure");

    let _scheduler = KillOnDrop(
        Command::new(SCHEDULER)
            .args(["--listen", &listen, "--data-dir", &data, "--insecure"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{listen}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let channel = loop {
        match Endpoint::from_shared(url.clone()).unwrap().connect().await {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{url}: {e}"),
        }
    };
    let registered = AgentClient::new(channel)
        .register(v1::RegisterRequest {
            cluster: "c1".into(),
            ..Default::default()
        })
        .await;
    assert!(registered.is_ok(), "{registered:?}");

    let file = dir.path().join("job.yaml");
    std::fs::write(
        &file,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: remote}\nspec:\n  completions: 2\n  \
         template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: w, image: busybox}]\n",
    )
    .unwrap();
    let fedctl = |args: &[&str]| {
        Command::new(FEDCTL)
            .args(["--server", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let out = fedctl(&["create", "-f", &file.display().to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "job.batch/remote created\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fedctl(&["get", "job", "remote", "-o", "json"]);
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["spec"]["completions"], 2);
}
