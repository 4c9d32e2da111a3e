//! The seed's promise, with the real kubectl: `kubectl --context=federation-cluster …` against
//! the scheduler's Kubernetes API (`--kube-api-listen`), over three simulated member clusters
//! with real syncers, all separate processes over loopback TCP. kubectl gets a kubeconfig
//! written by `fedctl kubeconfig` and no extra flags; every step asserts kubectl's exit code and
//! output, and the exact state of the member clusters as their own API servers show it.

use std::collections::BTreeMap;

use fedjob_tests::harness::federation::repo;
use fedjob_tests::harness::federation::{
    Federation, Setup, WAIT, job_manifest, spec_completions, spec_parallelism, strings, succeeded,
};
use fedjob_tests::harness::kubectl::{Kubectl, KubectlOutput};
use fedjob_tests::harness::{SyncerProc, bin, eventually, fedctl, free_port};
use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

/// One federation at a time: three at once would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A federation whose scheduler also serves the Kubernetes API; its URL.
async fn federation(pod_duration: &str) -> (Federation, String) {
    let port = free_port();
    let mut setup = Setup::new("3s");
    setup.pod_duration = pod_duration.to_owned();
    setup.scheduler.extend(strings(&[
        "--kube-api-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    (
        Federation::start(setup).await,
        format!("http://127.0.0.1:{port}"),
    )
}

/// kubectl with the kubeconfig `fedctl kubeconfig` writes (with `token`), in its own home.
async fn kubectl(fed: &Federation, url: &str, token: Option<&str>, who: &str) -> Kubectl {
    let dir = fed.dir.path();
    Kubectl::from_fedctl(
        url,
        token,
        &dir.join(format!("kubeconfig-{who}")),
        &dir.join(format!("home-{who}")),
    )
    .await
    .unwrap()
}

/// The member cluster Jobs that are shards of `name`, by local name, once there are `n`.
async fn shards(fed: &Federation, cluster: &str, name: &str, n: usize) -> BTreeMap<String, Job> {
    eventually(
        &format!("{n} shard(s) of {name} in {cluster}"),
        WAIT,
        || async {
            let s = fed.shards_named(cluster, name).await;
            (s.len() == n).then_some(s)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()))
}

/// Waits until every cluster's shards of `name` satisfy `check`.
async fn until_shards(fed: &Federation, name: &str, what: &str, check: impl Fn(&Job) -> bool) {
    for c in CLUSTERS {
        eventually(&format!("{c}: {what}"), WAIT, || async {
            let s = fed.shards_named(c, name).await;
            (!s.is_empty() && s.values().all(&check)).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    }
}

fn uid(job: &Job) -> String {
    job.metadata.uid.clone().unwrap()
}

fn image(job: &Job) -> String {
    let spec = job.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    pod.containers[0].image.clone().unwrap()
}

/// The whitespace-separated cells of each line kubectl printed.
fn rows(out: &KubectlOutput) -> Vec<Vec<String>> {
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Exit 0 and nothing on stderr: no warning about discovery, OpenAPI or validation.
fn quiet(out: KubectlOutput) -> KubectlOutput {
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{out}");
    out
}

fn assert_output(out: &KubectlOutput, code: i32, stdout: &str, stderr: &str) {
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(code), stdout, stderr),
        "{out}"
    );
}

fn write_job(fed: &Federation, job: &Value) -> String {
    fed.write_manifest(job)
}

#[tokio::test]
async fn kubectl_creates_gets_watches_waits_and_deletes_leaving_the_shards() {
    let _serial = SERIAL.lock().await;
    let (fed, url) = federation("2s").await;
    let kubectl = kubectl(&fed, &url, None, "user").await;
    let file = write_job(&fed, &job_manifest("myjob", 9, Some(18), "2s", None));

    let out = kubectl.run(&["create", "-f", &file]).await;
    assert_output(&out, 0, "job.batch/myjob created\n", "");
    // SPEC §3: 9 and 18 over three equal clusters are 3 and 6 each, one shard named myjob.
    let mut local_uids = BTreeMap::new();
    for c in CLUSTERS {
        let s = shards(&fed, c, "myjob", 1).await;
        let local = &s["myjob"];
        assert_eq!(
            (spec_parallelism(local), spec_completions(local)),
            (Some(3), Some(6)),
            "{c}"
        );
        local_uids.insert(c, uid(local));
    }

    let out = quiet(kubectl.run(&["get", "job", "myjob"]).await);
    let table = rows(&out);
    assert_eq!(
        table[0],
        ["NAME", "COMPLETIONS", "DURATION", "AGE"],
        "{out}"
    );
    assert_eq!(table.len(), 2, "{out}");
    assert_eq!(table[1][0], "myjob", "{out}");
    assert!(table[1][1].ends_with("/18"), "{out}");

    let out = quiet(kubectl.run(&["get", "jobs", "-o", "wide"]).await);
    let table = rows(&out);
    assert_eq!(
        table[0],
        [
            "NAME",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR",
            "CLUSTERS"
        ],
        "{out}"
    );
    let row = &table[1];
    assert_eq!(row[0], "myjob", "{out}");
    let n = row.len();
    assert_eq!(&row[n - 4..n - 1], ["w", "busybox", "<none>"], "{out}");
    let per_cluster: Vec<(&str, &str)> = row[n - 1]
        .split(',')
        .map(|c| c.split_once('=').unwrap())
        .collect();
    assert_eq!(
        per_cluster.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        CLUSTERS,
        "{out}"
    );
    assert!(per_cluster.iter().all(|(_, s)| s.ends_with("/6")), "{out}");

    // The watch shows the Job's progress up to 18 of 18.
    let lines = kubectl
        .watch_until(&["get", "jobs", "-w"], WAIT, |line| {
            line.starts_with("myjob ") && line.split_whitespace().nth(1) == Some("18/18")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert!(
        lines.len() >= 3,
        "at least the first row, a change and 18/18: {lines:?}"
    );

    let out = kubectl
        .run(&[
            "wait",
            "--for=condition=Complete",
            "job/myjob",
            "--timeout=60s",
        ])
        .await;
    assert_output(&out, 0, "job.batch/myjob condition met\n", "");
    for c in CLUSTERS {
        let s = shards(&fed, c, "myjob", 1).await;
        assert_eq!(succeeded(&s["myjob"]), 6, "{c}");
    }

    // Orphaning delete: the federated Job goes, its shards stay (SPEC §7).
    let out = kubectl
        .run(&["delete", "job", "myjob", "--cascade=orphan"])
        .await;
    assert_output(&out, 0, "job.batch \"myjob\" deleted\n", "");
    let out = kubectl.run(&["get", "job", "myjob"]).await;
    assert_output(
        &out,
        1,
        "",
        "Error from server (NotFound): jobs.batch \"myjob\" not found\n",
    );
    // Once the syncers ran a later Job's assignments, they have seen the delete too.
    let file = write_job(&fed, &job_manifest("later", 3, Some(3), "100ms", None));
    assert_output(
        &kubectl.run(&["create", "-f", &file]).await,
        0,
        "job.batch/later created\n",
        "",
    );
    for c in CLUSTERS {
        shards(&fed, c, "later", 1).await;
        let s = fed.shards_named(c, "myjob").await;
        assert_eq!(s.len(), 1, "{c}: the orphaned shard stays");
        assert_eq!(uid(&s["myjob"]), local_uids[c], "{c}: the same local Job");
        assert_eq!(succeeded(&s["myjob"]), 6, "{c}");
    }

    // The seed's command verbatim: kubectl v1.32 sends `propagationPolicy: Background` by
    // default (k8s-facts/kubectl/09-delete.txt), which SPEC §9 makes a cascade: the shards of
    // `later` go, the orphaned shards of `myjob` stay.
    let out = kubectl.run(&["delete", "job", "later"]).await;
    assert_output(&out, 0, "job.batch \"later\" deleted\n", "");
    for c in CLUSTERS {
        let s = fed.shards_named(c, "later").await;
        assert!(s.is_empty(), "{c}: shards left: {:?}", s.keys());
        let s = fed.shards_named(c, "myjob").await;
        assert_eq!(uid(&s["myjob"]), local_uids[c], "{c}: the orphan stays");
    }
}

#[tokio::test]
async fn kubectl_applies_patches_is_refused_a_template_change_and_deletes_in_cascade() {
    let _serial = SERIAL.lock().await;
    let (fed, url) = federation("60s").await;
    let kubectl = kubectl(&fed, &url, None, "user").await;
    let mut job = job_manifest("apply-me", 3, Some(300), "60s", None);
    let file = write_job(&fed, &job);

    let out = kubectl.run(&["apply", "-f", &file]).await;
    assert_output(&out, 0, "job.batch/apply-me created\n", "");
    let mut local_uids = BTreeMap::new();
    for c in CLUSTERS {
        let s = shards(&fed, c, "apply-me", 1).await;
        let local = &s["apply-me"];
        assert_eq!(
            (spec_parallelism(local), spec_completions(local)),
            (Some(1), Some(100)),
            "{c}"
        );
        local_uids.insert(c, uid(local));
    }

    // The second apply changes parallelism: 6 over three clusters, shards patched in place.
    job["spec"]["parallelism"] = 6.into();
    let file = write_job(&fed, &job);
    let out = kubectl.run(&["apply", "-f", &file]).await;
    assert_output(&out, 0, "job.batch/apply-me configured\n", "");
    until_shards(&fed, "apply-me", "parallelism 2", |j| {
        spec_parallelism(j) == Some(2)
    })
    .await;

    let out = kubectl
        .run(&[
            "patch",
            "job",
            "apply-me",
            "-p",
            r#"{"spec":{"parallelism":9}}"#,
        ])
        .await;
    assert_output(&out, 0, "job.batch/apply-me patched\n", "");
    until_shards(&fed, "apply-me", "parallelism 3", |j| {
        spec_parallelism(j) == Some(3)
    })
    .await;
    for c in CLUSTERS {
        let s = fed.shards_named(c, "apply-me").await;
        assert_eq!(s.len(), 1, "{c}");
        let local = &s["apply-me"];
        assert_eq!(
            uid(local),
            local_uids[c],
            "{c}: patched in place, not replaced"
        );
        assert_eq!(spec_completions(local), Some(100), "{c}");
    }

    // A member cluster refuses a change of the pod template, and so does the federation.
    let out = kubectl
        .run(&[
            "patch",
            "job",
            "apply-me",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"w","image":"alpine"}]}}}}"#,
        ])
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(
        out.stderr
            .starts_with("The Job \"apply-me\" is invalid: spec.template: Invalid value: ")
            && out.stderr.ends_with(": field is immutable\n"),
        "{out}"
    );
    // Completions stay changeable: the federation keeps the total by adding shards.
    let out = kubectl
        .run(&[
            "patch",
            "job",
            "apply-me",
            "-p",
            r#"{"spec":{"completions":330}}"#,
        ])
        .await;
    assert_output(&out, 0, "job.batch/apply-me patched\n", "");
    let total = eventually("330 completions planned in the clusters", WAIT, || async {
        let mut total = 0;
        for c in CLUSTERS {
            total += fed
                .shards_named(c, "apply-me")
                .await
                .values()
                .map(|j| spec_completions(j).unwrap_or(0))
                .sum::<i32>();
        }
        (total == 330).then_some(total)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert_eq!(total, 330);
    for c in CLUSTERS {
        let s = fed.shards_named(c, "apply-me").await;
        assert_eq!(
            uid(&s["apply-me"]),
            local_uids[c],
            "{c}: the first shard runs on"
        );
        assert!(
            s.values().all(|j| image(j) == "busybox"),
            "{c}: template unchanged"
        );
    }

    // A cascading delete: kubectl returns once the federated Job is gone, which is once every
    // cluster confirmed its shards deleted.
    let out = kubectl
        .run(&["delete", "job", "apply-me", "--cascade=background"])
        .await;
    assert_output(&out, 0, "job.batch \"apply-me\" deleted\n", "");
    for c in CLUSTERS {
        let s = fed.shards_named(c, "apply-me").await;
        assert!(s.is_empty(), "{c}: shards left: {:?}", s.keys());
    }
    let out = kubectl.run(&["get", "job", "apply-me"]).await;
    assert_output(
        &out,
        1,
        "",
        "Error from server (NotFound): jobs.batch \"apply-me\" not found\n",
    );
}

/// A CA, the scheduler's certificate, one per cluster for its syncer, and one naming the user
/// `alice` (made by `scripts/make-certs`, as the README shows).
fn certificates(dir: &std::path::Path) {
    let mut names = CLUSTERS.to_vec();
    names.push("alice");
    let status = std::process::Command::new(repo().join("scripts/make-certs"))
        .arg(dir)
        .args(names)
        .status()
        .expect("scripts/make-certs runs (it needs openssl)");
    assert!(status.success());
}

#[tokio::test]
async fn kubectl_needs_a_token_or_certificate_and_a_viewer_may_only_read() {
    let _serial = SERIAL.lock().await;
    // kubectl sends a bearer token only over TLS, so this federation serves TLS.
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cert = |name: &str| certs.path().join(name).display().to_string();
    std::fs::write(
        certs.path().join("tokens"),
        "admin-token,alice,admin\nviewer-token,bob,viewer\n",
    )
    .unwrap();
    let port = free_port();
    let mut setup = Setup::new("3s");
    setup.pod_duration = "60s".to_owned();
    setup.scheduler.extend(strings(&[
        "--kube-api-listen",
        &format!("127.0.0.1:{port}"),
        "--tokens",
        &cert("tokens"),
        "--tls-cert",
        &cert("scheduler.crt"),
        "--tls-key",
        &cert("scheduler.key"),
        "--client-ca",
        &cert("ca.crt"),
    ]));
    let mut fed = Federation::start_without_syncers(setup).await;
    let grpc = format!("https://127.0.0.1:{}", fed.port);
    for c in CLUSTERS {
        let flags = [
            "--tls-ca".to_owned(),
            cert("ca.crt"),
            "--tls-cert".to_owned(),
            cert(&format!("{c}.crt")),
            "--tls-key".to_owned(),
            cert(&format!("{c}.key")),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let syncer = SyncerProc::start(&grpc, c, fed.kubeconfig(), &flags).unwrap();
        fed.syncers.insert(c.to_owned(), syncer);
    }
    let ca = cert("ca.crt");
    eventually("Ready, connected clusters", WAIT, || async {
        let args = [
            "--ca",
            &ca,
            "--token",
            "admin-token",
            "get",
            "clusters",
            "-o",
            "json",
        ];
        let out = fedctl(&grpc, &args).await.ok()?;
        let items = serde_json::from_str::<Value>(&out.stdout).ok()?["items"].clone();
        let ready = items
            .as_array()?
            .iter()
            .filter(|c| c["state"] == "Ready" && c["connected"] == true)
            .count();
        (ready == CLUSTERS.len()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    let url = format!("https://127.0.0.1:{port}");
    let dir = fed.dir.path().to_owned();
    let with = |who: &str, token: Option<&'static str>| {
        let (url, ca, dir) = (url.clone(), ca.clone(), dir.clone());
        let who = who.to_owned();
        async move {
            let mut args = vec!["--ca".to_owned(), ca];
            if let Some(t) = token {
                args.extend(["--token".to_owned(), t.to_owned()]);
            }
            args.extend(["kubeconfig".to_owned(), "--kube-api".to_owned(), url]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = tokio::process::Command::new(bin("fedctl").unwrap())
                .args(&args)
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "fedctl kubeconfig");
            let path = dir.join(format!("kubeconfig-{who}"));
            std::fs::write(&path, &out.stdout).unwrap();
            (
                path.clone(),
                Kubectl::new(&path, &dir.join(format!("home-{who}"))),
            )
        }
    };
    let (_, admin) = with("admin", Some("admin-token")).await;
    let (_, viewer) = with("viewer", Some("viewer-token")).await;
    let (unknown, nobody) = with("nobody", Some("not-a-token")).await;

    // An unknown token: kubectl's discovery sees the 401 first and words it so, as against any
    // API server.
    let out = nobody.run(&["get", "jobs"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");
    assert!(
        out.stderr.ends_with(
            "error: You must be logged in to the server (the server has asked for the client to provide credentials)\n"
        ),
        "{out}"
    );

    let file = write_job(&fed, &job_manifest("guarded", 3, Some(30), "60s", None));
    let out = admin.run(&["create", "-f", &file]).await;
    assert_output(&out, 0, "job.batch/guarded created\n", "");
    let mut before = BTreeMap::new();
    for c in CLUSTERS {
        let s = shards(&fed, c, "guarded", 1).await;
        before.insert(c, (uid(&s["guarded"]), spec_parallelism(&s["guarded"])));
    }

    let out = quiet(viewer.run(&["get", "job", "guarded"]).await);
    assert_eq!(rows(&out)[1][0], "guarded", "{out}");
    let refusal = |verb: &str| {
        format!(
            "Error from server (Forbidden): jobs.batch \"guarded\" is forbidden: User \"bob\" cannot {verb} resource \"jobs\" in API group \"batch\" in the namespace \"default\": user \"bob\" is a viewer: it may get, list, describe, plan and watch, not change\n"
        )
    };
    let out = viewer.run(&["delete", "job", "guarded"]).await;
    assert_output(&out, 1, "", &refusal("delete"));
    let out = viewer
        .run(&[
            "patch",
            "job",
            "guarded",
            "-p",
            r#"{"spec":{"parallelism":6}}"#,
        ])
        .await;
    assert_output(&out, 1, "", &refusal("patch"));

    // Nothing changed: the federated Job and its shards are as they were.
    let out = admin
        .run(&[
            "get",
            "job",
            "guarded",
            "-o",
            "jsonpath={.spec.parallelism}",
        ])
        .await;
    assert_output(&out, 0, "3", "");
    for c in CLUSTERS {
        let s = fed.shards_named(c, "guarded").await;
        assert_eq!(s.len(), 1, "{c}");
        let now = (uid(&s["guarded"]), spec_parallelism(&s["guarded"]));
        assert_eq!(now, before[c], "{c}");
    }

    // A client certificate signed by --client-ca that names alice acts as alice, an admin.
    let mut config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&unknown).unwrap()).unwrap();
    let pem = |name: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(cert(name)).unwrap())
    };
    config["users"][0]["user"] = serde_json::json!({
        "client-certificate-data": pem("alice.crt"),
        "client-key-data": pem("alice.key"),
    });
    let path = dir.join("kubeconfig-alice-certificate");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let alice = Kubectl::new(&path, &dir.join("home-alice"));
    let out = alice
        .run(&[
            "patch",
            "job",
            "guarded",
            "-p",
            r#"{"spec":{"parallelism":6}}"#,
        ])
        .await;
    assert_output(&out, 0, "job.batch/guarded patched\n", "");
    until_shards(&fed, "guarded", "parallelism 2", |j| {
        spec_parallelism(j) == Some(2)
    })
    .await;
}
