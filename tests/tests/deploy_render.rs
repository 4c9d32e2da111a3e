//! The manifests under `deploy/` as a cluster and the scheduler would read them: each kustomize
//! directory is rendered by the real `kubectl kustomize`, every object is decoded as its
//! `k8s-openapi` type with unknown fields refused (a misspelt field fails here, not at `kubectl
//! apply` time), and the scheduler's container is checked against the scheduler itself: its
//! arguments are parsed by the scheduler's own `Config` parser (with the Secret files they name
//! stood in by temporary files), the files they name are in the Secrets mounted there, and the
//! Services, probes and listen flags agree on the ports.
//!
//! kubectl must be installed (`scripts/test` installs it when missing).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use fedjob_scheduler::config::{Args, Config, StoreConfig};
use fedjob_scheduler::model::manifest::unknown_fields;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, Probe, Service, ServiceAccount, Volume,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The namespace every namespaced object of the scheduler's manifests lives in.
const NAMESPACE: &str = "fedjob-system";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// `kubectl kustomize DIR`, as documents.
fn render(dir: &str) -> Vec<Value> {
    let path = repository().join(dir);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl is not installed or does not run ({e}): install it (scripts/test does)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `object` as a `T`, refusing what `T` does not have (as `kubectl apply`'s strict field
/// validation does).
fn decode<T: DeserializeOwned + Serialize>(object: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| format!("{e}"))?;
    let unknown = unknown_fields(object, &serde_json::to_value(&typed).expect("serializable"));
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(format!("unknown fields: {unknown:?}"))
    }
}

/// The objects of a rendering, decoded by kind.
#[derive(Default)]
struct Objects {
    kinds: Vec<String>,
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    services: Vec<Service>,
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    disruption_budgets: Vec<PodDisruptionBudget>,
}

impl Objects {
    fn decode(documents: &[Value]) -> Result<Self, String> {
        let mut objects = Objects::default();
        for doc in documents {
            let kind = format!(
                "{}/{}",
                doc["apiVersion"].as_str().unwrap_or_default(),
                doc["kind"].as_str().unwrap_or_default()
            );
            let name = format!("{kind} {}", doc["metadata"]["name"]);
            let context = |e: String| format!("{name}: {e}");
            match kind.as_str() {
                "v1/Namespace" => objects.namespaces.push(decode(doc).map_err(context)?),
                "v1/ServiceAccount" => objects.service_accounts.push(decode(doc).map_err(context)?),
                "v1/Service" => objects.services.push(decode(doc).map_err(context)?),
                "apps/v1/StatefulSet" => objects.stateful_sets.push(decode(doc).map_err(context)?),
                "apps/v1/Deployment" => objects.deployments.push(decode(doc).map_err(context)?),
                "policy/v1/PodDisruptionBudget" => objects
                    .disruption_budgets
                    .push(decode(doc).map_err(context)?),
                "rbac.authorization.k8s.io/v1/ClusterRole" => {
                    decode::<ClusterRole>(doc).map_err(context)?;
                }
                "rbac.authorization.k8s.io/v1/ClusterRoleBinding" => {
                    decode::<ClusterRoleBinding>(doc).map_err(context)?;
                }
                "rbac.authorization.k8s.io/v1/RoleBinding" => {
                    decode::<RoleBinding>(doc).map_err(context)?;
                }
                _ => return Err(format!("{name}: a kind this test does not know")),
            }
            objects.kinds.push(kind);
        }
        Ok(objects)
    }
}

/// What the scheduler's StatefulSet runs, as the scheduler reads its arguments.
struct Scheduler {
    replicas: i32,
    config: Config,
    /// The container's ports by name.
    ports: BTreeMap<String, i32>,
}

/// A temporary file standing in for one the container reads from a Secret.
fn stand_in(dir: &Path, flag: &str, content: &str) -> PathBuf {
    let path = dir.join(flag);
    std::fs::write(&path, content).expect("temporary file");
    path
}

/// Checks that `path` is a file of a Secret mounted in `container` (the key listed in the
/// volume's `items`, when it lists them).
fn from_secret(path: &Path, container: &Container, volumes: &[Volume]) -> Result<(), String> {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| path.parent() == Some(Path::new(&m.mount_path)))
        .ok_or_else(|| format!("{}: no volume is mounted at its directory", path.display()))?;
    let volume = volumes
        .iter()
        .find(|v| v.name == mount.name)
        .ok_or_else(|| format!("volume {} is mounted but not declared", mount.name))?;
    let secret = volume
        .secret
        .as_ref()
        .ok_or_else(|| format!("{}: volume {} is not a Secret", path.display(), mount.name))?;
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    if let Some(items) = &secret.items
        && !items.iter().any(|i| i.path == file)
    {
        return Err(format!(
            "{}: Secret {:?} does not project {file}",
            path.display(),
            secret.secret_name
        ));
    }
    Ok(())
}

/// The scheduler's container of `sts`, its arguments parsed and checked by the scheduler.
fn scheduler(sts: &StatefulSet) -> Result<Scheduler, String> {
    let spec = sts.spec.as_ref().ok_or("no spec")?;
    let pod: &PodSpec = spec.template.spec.as_ref().ok_or("no pod spec")?;
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "scheduler")
        .ok_or("no container named scheduler")?;
    if !container
        .image
        .as_deref()
        .unwrap_or_default()
        .contains("fedjob-scheduler")
    {
        return Err(format!(
            "image {:?} is not fedjob-scheduler",
            container.image
        ));
    }
    if container.command.is_some() {
        return Err("command overrides the image's entrypoint (fedjob-scheduler)".into());
    }
    let args = container.args.clone().unwrap_or_default();
    let argv = std::iter::once("fedjob-scheduler").chain(args.iter().map(String::as_str));
    let mut parsed = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let security = &mut parsed.security;
    for (flag, path, content) in [
        ("tls-cert", &mut security.tls_cert, "CERTIFICATE"),
        ("tls-key", &mut security.tls_key, "KEY"),
        ("client-ca", &mut security.client_ca, "CA"),
        ("tokens", &mut security.tokens, "secret,admin,admin\n"),
        ("etcd-ca", &mut parsed.etcd.ca, "CA"),
        ("etcd-cert", &mut parsed.etcd.cert, "CERTIFICATE"),
        ("etcd-key", &mut parsed.etcd.key, "KEY"),
    ] {
        if let Some(p) = path {
            from_secret(p, container, volumes).map_err(|e| format!("--{flag}: {e}"))?;
            *path = Some(stand_in(dir.path(), flag, content));
        }
    }
    let config = Config::try_from(parsed).map_err(|e| e.to_string())?;
    if let StoreConfig::Embedded { data_dir } = &config.store {
        // The store must be on the claim, not in the container's (read-only) filesystem.
        let claims: Vec<&str> = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        let on_claim = container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| claims.contains(&m.name.as_str()) && data_dir.starts_with(&m.mount_path));
        if !on_claim {
            return Err(format!(
                "--data-dir {} is not on a volume claim ({claims:?})",
                data_dir.display()
            ));
        }
    }
    let ports = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    let scheduler = Scheduler {
        replicas: spec.replicas.unwrap_or(1),
        config,
        ports,
    };
    scheduler.check_listeners()?;
    for (what, probe) in [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
    ] {
        let probe = probe.as_ref().ok_or(format!("no {what}"))?;
        scheduler.check_probe(what, probe)?;
    }
    Ok(scheduler)
}

impl Scheduler {
    /// Each listener the flags open is a declared container port of the right name.
    fn check_listeners(&self) -> Result<(), String> {
        let listeners: [(&str, Option<SocketAddr>); 3] = [
            ("grpc", Some(self.config.listen)),
            ("kube-api", self.config.kube_api_listen),
            ("metrics", self.config.metrics_listen),
        ];
        for (name, addr) in listeners {
            let addr = addr.ok_or(format!("the {name} listener is not enabled"))?;
            if addr.ip().is_loopback() {
                return Err(format!(
                    "{name} listens on {addr}: unreachable from outside the pod"
                ));
            }
            let declared = self.ports.get(name).copied();
            if declared != Some(i32::from(addr.port())) {
                return Err(format!(
                    "{name} listens on port {} but the container declares {declared:?}",
                    addr.port()
                ));
            }
        }
        if self.ports.len() != listeners.len() {
            return Err(format!("ports {:?}: one is not listened on", self.ports));
        }
        Ok(())
    }

    /// The container port a Service or probe names (by name or number).
    fn port(&self, port: &IntOrString) -> Option<(&str, i32)> {
        self.ports
            .iter()
            .find(|(name, number)| match port {
                IntOrString::String(s) => *name == s,
                IntOrString::Int(n) => *number == n,
            })
            .map(|(name, number)| (name.as_str(), *number))
    }

    /// A probe's port is served, with TLS where the scheduler serves TLS.
    fn check_probe(&self, what: &str, probe: &Probe) -> Result<(), String> {
        let get = probe
            .http_get
            .as_ref()
            .ok_or(format!("{what} is not an HTTP GET"))?;
        let (name, _) = self.port(&get.port).ok_or(format!(
            "{what} probes port {:?}, not a container port",
            get.port
        ))?;
        // Health paths each listener answers without credentials.
        let served: &[&str] = match name {
            "metrics" => &["/healthz"],
            "kube-api" => &["/healthz", "/livez", "/readyz"],
            _ => &[],
        };
        if !served.contains(&get.path.as_deref().unwrap_or("/")) {
            return Err(format!("{what}: {name} does not serve {:?}", get.path));
        }
        let https = get.scheme.as_deref() == Some("HTTPS");
        let tls = name == "kube-api" && self.config.tls.is_some();
        if https != tls {
            return Err(format!(
                "{what}: scheme {:?} but TLS is {tls} on {name}",
                get.scheme
            ));
        }
        Ok(())
    }

    /// Every port of a Service selecting the scheduler's pods reaches the container port of the
    /// same name.
    fn check_service(
        &self,
        service: &Service,
        pod_labels: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let name = service.metadata.name.clone().unwrap_or_default();
        let spec = service
            .spec
            .as_ref()
            .ok_or(format!("Service {name}: no spec"))?;
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() || !selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
            return Err(format!(
                "Service {name}: selector {selector:?} does not select the scheduler's pods {pod_labels:?}"
            ));
        }
        for port in spec.ports.iter().flatten() {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            let (container_port, _) = self.port(&target).ok_or(format!(
                "Service {name}: port {:?} targets {target:?}, not a container port",
                port.name
            ))?;
            if port.name.as_deref() != Some(container_port) {
                return Err(format!(
                    "Service {name}: port {:?} reaches the container's {container_port}",
                    port.name
                ));
            }
        }
        Ok(())
    }
}

/// Everything this test checks on the scheduler's rendering: the objects decoded, then the
/// StatefulSet's scheduler, its Services and its namespace.
fn check_scheduler(documents: &[Value]) -> Result<(Objects, Scheduler), String> {
    let objects = Objects::decode(documents)?;
    let [sts] = objects.stateful_sets.as_slice() else {
        return Err(format!(
            "{} StatefulSets, not one",
            objects.stateful_sets.len()
        ));
    };
    let scheduler = scheduler(sts)?;
    let spec = sts.spec.as_ref().expect("checked");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selected = spec.selector.match_labels.clone().unwrap_or_default();
    if !selected.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
        return Err("the StatefulSet's selector does not select its own pods".into());
    }
    let governing = objects
        .services
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(spec.service_name.as_deref().unwrap_or_default())
        })
        .ok_or(format!(
            "serviceName {:?} is not a Service here",
            spec.service_name
        ))?;
    if governing
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        != Some("None")
    {
        return Err("the governing Service is not headless".into());
    }
    let mut exposed = Vec::new();
    for service in &objects.services {
        scheduler.check_service(service, &pod_labels)?;
        for port in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
            exposed.push((
                service.metadata.name.clone().unwrap_or_default(),
                port.name.clone().unwrap_or_default(),
            ));
        }
    }
    for needed in ["grpc", "kube-api"] {
        if !exposed
            .iter()
            .any(|(service, port)| service == "fedjob-scheduler" && port == needed)
        {
            return Err(format!("Service fedjob-scheduler does not expose {needed}"));
        }
    }
    let pod = spec.template.spec.as_ref().expect("checked");
    let account = pod.service_account_name.as_deref().unwrap_or("default");
    if !objects
        .service_accounts
        .iter()
        .any(|a| a.metadata.name.as_deref() == Some(account))
    {
        return Err(format!("serviceAccountName {account} is not created here"));
    }
    let namespaced = objects
        .services
        .iter()
        .map(|s| &s.metadata)
        .chain(objects.service_accounts.iter().map(|a| &a.metadata))
        .chain(objects.disruption_budgets.iter().map(|b| &b.metadata))
        .chain([&sts.metadata]);
    for meta in namespaced {
        if meta.namespace.as_deref() != Some(NAMESPACE) {
            return Err(format!(
                "{:?} is in namespace {:?}",
                meta.name, meta.namespace
            ));
        }
    }
    if objects
        .namespaces
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect::<Vec<_>>()
        != [NAMESPACE]
    {
        return Err(format!("the namespace {NAMESPACE} is not created (once)"));
    }
    Ok((objects, scheduler))
}

#[test]
fn the_base_runs_one_scheduler_on_its_embedded_store() {
    let (objects, scheduler) =
        check_scheduler(&render("deploy/scheduler/base")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        objects.kinds,
        [
            "v1/Namespace",
            "v1/ServiceAccount",
            "v1/Service",
            "v1/Service",
            "apps/v1/StatefulSet"
        ]
    );
    // One process owns the embedded store.
    assert_eq!(scheduler.replicas, 1);
    assert!(
        matches!(&scheduler.config.store, StoreConfig::Embedded { data_dir } if data_dir == Path::new("/var/lib/fedjob")),
        "{:?}",
        scheduler.config.store
    );
    // TLS from its Secret, with agents' client certificates checked; users need a token.
    let tls = scheduler.config.tls.as_ref().expect("TLS");
    assert!(tls.client_ca.is_some());
    assert!(scheduler.config.tokens.is_some());
    assert_eq!(
        scheduler.ports,
        BTreeMap::from([
            ("grpc".to_owned(), 50051),
            ("kube-api".to_owned(), 6443),
            ("metrics".to_owned(), 9090)
        ])
    );
}

#[test]
fn the_etcd_overlay_runs_several_replicas_on_etcd() {
    let (objects, scheduler) =
        check_scheduler(&render("deploy/scheduler/etcd")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scheduler.replicas, 3);
    let StoreConfig::Etcd { options, .. } = &scheduler.config.store else {
        panic!("not on etcd: {:?}", scheduler.config.store);
    };
    assert_eq!(options.endpoints.len(), 3);
    let sts = &objects.stateful_sets[0];
    let spec = sts.spec.as_ref().unwrap();
    assert!(
        spec.volume_claim_templates.is_none(),
        "no volume in etcd mode"
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    // A drain takes one replica at a time, and the budget covers the scheduler's pods.
    let [budget] = objects.disruption_budgets.as_slice() else {
        panic!("one PodDisruptionBudget");
    };
    let budget = budget.spec.as_ref().unwrap();
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        budget
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        spec.selector.match_labels
    );
}

#[test]
fn the_syncer_manifests_decode() {
    let objects = Objects::decode(&render("deploy")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects.deployments.len(), 1);
}

/// Each check above can fail: mistakes made on purpose in the rendered base are each found.
#[test]
fn mistakes_in_the_manifests_are_found() {
    let base = render("deploy/scheduler/base");
    let sts_at = base
        .iter()
        .position(|d| d["kind"] == "StatefulSet")
        .unwrap();
    let service_at = base
        .iter()
        .position(|d| d["kind"] == "Service" && d["metadata"]["name"] == "fedjob-scheduler")
        .unwrap();
    let container = "/spec/template/spec/containers/0";
    let broken = |at: usize, pointer: &str, edit: &dyn Fn(&mut Value)| {
        let mut documents = base.clone();
        let target = documents[at]
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}"));
        edit(target);
        match check_scheduler(&documents) {
            Ok(_) => panic!("{pointer}: the mistake was not found"),
            Err(e) => e,
        }
    };
    let arg = |from: &'static str, to: &'static str| {
        move |v: &mut Value| {
            let args = v.as_array_mut().unwrap();
            let at = args
                .iter()
                .position(|a| a == from)
                .unwrap_or_else(|| panic!("{from}"));
            args[at] = Value::from(to);
        }
    };

    let e = broken(sts_at, &format!("{container}/ports/0"), &|p| {
        p["containerPorts"] = p["containerPort"].take();
        p.as_object_mut().unwrap().remove("containerPort");
    });
    assert!(e.contains("containerPorts"), "{e}");
    let e = broken(
        sts_at,
        &format!("{container}/args"),
        &arg(
            "--kube-api-listen=0.0.0.0:6443",
            "--kube-api-lisen=0.0.0.0:6443",
        ),
    );
    assert!(e.contains("--kube-api-lisen"), "{e}");
    let e = broken(
        sts_at,
        &format!("{container}/args"),
        &arg(
            "--kube-api-listen=0.0.0.0:6443",
            "--kube-api-listen=0.0.0.0:6444",
        ),
    );
    assert!(e.contains("kube-api listens on port 6444"), "{e}");
    let e = broken(
        sts_at,
        &format!("{container}/args"),
        &arg(
            "--tls-cert=/etc/fedjob/tls/tls.crt",
            "--tls-cert=/etc/fedjob/tls/cert.pem",
        ),
    );
    assert!(e.contains("does not project cert.pem"), "{e}");
    let e = broken(
        sts_at,
        &format!("{container}/args"),
        &arg("--data-dir=/var/lib/fedjob", "--data-dir=/data"),
    );
    assert!(
        e.contains("--data-dir /data is not on a volume claim"),
        "{e}"
    );
    // Plain text on every address: the scheduler itself refuses to start.
    let e = broken(sts_at, &format!("{container}/args"), &|v| {
        v.as_array_mut().unwrap().retain(|a| {
            !a.as_str().unwrap().starts_with("--tls-")
                && !a.as_str().unwrap().starts_with("--client-ca")
        })
    });
    assert!(e.contains("--insecure"), "{e}");
    let e = broken(
        sts_at,
        &format!("{container}/readinessProbe/httpGet/scheme"),
        &|s| *s = "HTTP".into(),
    );
    assert!(e.contains("readinessProbe: scheme"), "{e}");
    let e = broken(service_at, "/spec/ports/1/targetPort", &|p| {
        *p = "kubeapi".into()
    });
    assert!(e.contains("targets String(\"kubeapi\")"), "{e}");
    let e = broken(service_at, "/spec/selector", &|s| {
        s["app.kubernetes.io/name"] = "fedjob-syncer".into()
    });
    assert!(e.contains("does not select the scheduler's pods"), "{e}");
}
