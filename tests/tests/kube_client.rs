//! A kube-rs program against the federation's Kubernetes API, as any Rust operator would run:
//! `Api<Job>` from the kube crate's own configuration loading, reading the kubeconfig that
//! `fedctl kubeconfig` writes. Create, a `watcher` until the Job is Complete, server-side apply
//! (a conflict, then `force`), and deletes with a propagation policy, each checked in the
//! member clusters.

use std::collections::BTreeMap;

use fedjob_tests::harness::federation::{
    Federation, Setup, WAIT, job_manifest, spec_completions, spec_parallelism, strings, succeeded,
};
use fedjob_tests::harness::{bin, eventually, free_port};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];

/// The member cluster shards of `name`, once every cluster has `n`.
async fn shards(fed: &Federation, name: &str, n: usize) -> BTreeMap<String, BTreeMap<String, Job>> {
    let mut all = BTreeMap::new();
    for c in CLUSTERS {
        let s = eventually(&format!("{n} shard(s) of {name} in {c}"), WAIT, || async {
            let s = fed.shards_named(c, name).await;
            (s.len() == n).then_some(s)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
        all.insert(c.to_owned(), s);
    }
    all
}

fn is_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

#[tokio::test]
async fn a_kube_rs_client_creates_watches_applies_and_deletes() {
    let port = free_port();
    let mut setup = Setup::new("3s");
    setup.pod_duration = "300ms".to_owned();
    setup.scheduler.extend(strings(&[
        "--kube-api-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    let fed = Federation::start(setup).await;

    // The kubeconfig `fedctl kubeconfig` prints, loaded as kube-rs loads any kubeconfig.
    let out = tokio::process::Command::new(bin("fedctl").unwrap())
        .args([
            "kubeconfig",
            "--kube-api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let path = fed.dir.path().join("federation.kubeconfig");
    std::fs::write(&path, &out.stdout).unwrap();
    let options = KubeConfigOptions {
        context: Some("federation-cluster".to_owned()),
        ..Default::default()
    };
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&path).unwrap(), &options)
            .await
            .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client);

    // Create, then a watcher until Complete.
    let job: Job = serde_json::from_value(job_manifest("rs", 6, Some(12), "300ms", None)).unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert!(created.metadata.resource_version.is_some());
    let mut stream = watcher(
        jobs.clone(),
        watcher::Config::default().fields("metadata.name=rs"),
    )
    .applied_objects()
    .try_filter(|j| std::future::ready(is_complete(j)))
    .boxed();
    let complete = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no Complete within {WAIT:?}\n{}", fed.logs()))
        .unwrap()
        .unwrap();
    assert_eq!(complete.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(complete.status.as_ref().unwrap().succeeded, Some(12));
    for (c, s) in shards(&fed, "rs", 1).await {
        assert_eq!(
            (
                spec_parallelism(&s["rs"]),
                spec_completions(&s["rs"]),
                succeeded(&s["rs"])
            ),
            (Some(2), Some(4), 4),
            "{c}"
        );
    }

    // Deleting with propagationPolicy Orphan leaves the shards in their clusters.
    jobs.delete("rs", &DeleteParams::orphan()).await.unwrap();
    assert!(jobs.get_opt("rs").await.unwrap().is_none());

    // Server-side apply: the first apply creates the Job, owned by its manager.
    let mut applied = job_manifest("ssa", 3, Some(300), "60s", None);
    let by_ci = PatchParams::apply("ci-pipeline");
    let ssa = jobs
        .patch("ssa", &by_ci, &Patch::Apply(&applied))
        .await
        .unwrap();
    let managers: Vec<(String, String)> = ssa
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|e| (e.manager.unwrap(), e.operation.unwrap()))
        .collect();
    assert_eq!(managers, [("ci-pipeline".to_owned(), "Apply".to_owned())]);
    let first = shards(&fed, "ssa", 1).await;
    // Another manager's apply of a field ci-pipeline owns is a conflict…
    applied["spec"]["parallelism"] = json!(6);
    let err = jobs
        .patch(
            "ssa",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"ci-pipeline\": .spec.parallelism"
    );
    // …which `force` takes over: the shards are patched in place.
    let forced = jobs
        .patch(
            "ssa",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().parallelism, Some(6));
    for c in CLUSTERS {
        eventually(
            &format!("{c}: the shard at parallelism 2"),
            WAIT,
            || async {
                let s = fed.shards_named(c, "ssa").await;
                let j = s.get("ssa")?;
                (spec_parallelism(j) == Some(2)).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
        let s = fed.shards_named(c, "ssa").await;
        assert_eq!(
            s["ssa"].metadata.uid, first[c]["ssa"].metadata.uid,
            "{c}: patched in place"
        );
    }

    // Deleting with propagationPolicy Background deletes the shards too; the Job stays,
    // terminating, until every cluster confirmed.
    let deleted = jobs
        .delete("ssa", &DeleteParams::background())
        .await
        .unwrap();
    let terminating = deleted.left().expect("the Job, terminating");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    eventually("the federated Job gone", WAIT, || async {
        jobs.get_opt("ssa").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    for c in CLUSTERS {
        assert!(fed.shards_named(c, "ssa").await.is_empty(), "{c}");
        // The orphaned shards of the first Job are still there.
        assert_eq!(fed.shards_named(c, "rs").await.len(), 1, "{c}");
    }
}
