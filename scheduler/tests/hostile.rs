//! Hostile input against the real server over gRPC: random manifests, patches and counts never
//! crash it and never store anything refused; limits hold; agents that break the protocol or
//! report for shards they do not run are refused without affecting other clusters; a flood of
//! creates does not starve heartbeats.

mod support;

use std::time::Duration;

use fedjob_proto::json::to_struct;
use fedjob_proto::v1::{self, AssignmentAction, ShardPhase};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};
use support::{TestAgent, client, create, get_json, manifest, start};
use tonic::Code;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..20).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 ._/:-]{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_owned()),
                    Just("spec".to_owned()),
                    Just("name".to_owned()),
                    Just("template".to_owned()),
                    Just("containers".to_owned()),
                    Just("image".to_owned()),
                    Just("parallelism".to_owned()),
                    Just("completions".to_owned()),
                    Just("labels".to_owned()),
                    Just("restartPolicy".to_owned()),
                    Just("annotations".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid Job with one random subtree grafted somewhere.
fn mutated_job() -> impl Strategy<Value = Value> {
    let paths = prop_oneof![
        Just("/spec"),
        Just("/spec/template"),
        Just("/spec/template/spec"),
        Just("/metadata"),
        Just("/metadata/annotations"),
        Just("/spec/template/spec/containers/0"),
    ];
    (paths, "[a-zA-Z]{1,12}", json_value(), 0u32..1000).prop_map(|(path, field, value, n)| {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("fuzz-{n}")},
            "spec": {"parallelism": 1, "completions": 1, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox"}]}}}
        });
        if let Some(Value::Object(target)) = job.pointer_mut(path) {
            target.insert(field, value);
        }
        job
    })
}

fn acceptable(code: Code) -> bool {
    matches!(
        code,
        Code::Ok | Code::InvalidArgument | Code::AlreadyExists | Code::NotFound | Code::Aborted
    )
}

#[test]
fn random_requests_never_crash_the_server_nor_store_what_was_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(start(Duration::from_secs(30)));
    let mut api = rt.block_on(client(&s.url));
    rt.block_on(create(&mut api, manifest("seed", 2, Some(4), None)))
        .unwrap();
    let accepted = std::cell::RefCell::new(std::collections::BTreeSet::from(["seed".to_owned()]));
    let name_of = |job: &v1::FederatedJob| {
        fedjob_scheduler::api::convert::federated_job_json(job)["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(mutated_job(), json_value(), "\\PC{0,300}", -3i32..5),
            |(job, random, text, count)| {
                let mut api = api.clone();
                let name = job["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let outcome = rt.block_on(async {
                    let as_struct = v1::CreateJobRequest {
                        job: to_struct(&job),
                        ..Default::default()
                    };
                    let r1 = api.create_job(as_struct).await;
                    let as_text = v1::CreateJobRequest {
                        manifest: text,
                        ..Default::default()
                    };
                    let r2 = api.create_job(as_text).await;
                    let as_random = v1::CreateJobRequest {
                        job: to_struct(&random),
                        ..Default::default()
                    };
                    let r3 = api.create_job(as_random).await;
                    let patch = v1::PatchJobRequest {
                        name: "seed".into(),
                        patch: random.to_string(),
                        ..Default::default()
                    };
                    let r4 = api.patch_job(patch).await;
                    let scale = v1::ScaleJobRequest {
                        name: "seed".into(),
                        completions: Some(count),
                        ..Default::default()
                    };
                    let r5 = api.scale_job(scale).await;
                    (r1, r2, r3, r4, r5)
                });
                let (r1, r2, r3, r4, r5) = outcome;
                for created in [&r1, &r2, &r3].into_iter().flatten() {
                    accepted.borrow_mut().insert(name_of(created.get_ref()));
                }
                let _ = name;
                for code in [
                    r1.err().map(|e| e.code()),
                    r2.as_ref().err().map(|e| e.code()),
                    r3.as_ref().err().map(|e| e.code()),
                    r4.err().map(|e| e.code()),
                    r5.as_ref().err().map(|e| e.code()),
                ]
                .into_iter()
                .flatten()
                {
                    prop_assert!(acceptable(code), "unexpected {:?}", code);
                }
                if count < 0 {
                    prop_assert_eq!(r5.err().map(|e| e.code()), Some(Code::InvalidArgument));
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut api = api.clone();
    let list = rt
        .block_on(api.list_jobs(v1::ListJobsRequest {
            all_namespaces: true,
            ..Default::default()
        }))
        .unwrap();
    let stored: std::collections::BTreeSet<String> = list
        .into_inner()
        .items
        .iter()
        .map(|j| {
            fedjob_scheduler::api::convert::federated_job_json(j)["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        stored,
        accepted.into_inner(),
        "exactly what was acknowledged is stored"
    );
    rt.block_on(s.running.shutdown()).unwrap();
}

#[tokio::test]
async fn limits_hold_with_a_clear_error() {
    let s = start(Duration::from_secs(30)).await;
    let mut api = client(&s.url).await;
    let huge = "x".repeat(17 * 1024 * 1024);
    let err = api
        .create_job(v1::CreateJobRequest {
            manifest: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    // tonic answers an over-long message with OUT_OF_RANGE and says what the limit is.
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert!(err.message().contains("limit"), "{}", err.message());

    let clusters: serde_json::Map<String, Value> = (0..1001)
        .map(|i| (format!("c{i}"), json!({"weight": 1})))
        .collect();
    let prefs = json!({ "clusters": clusters }).to_string();
    let err = create(&mut api, manifest("many", 1, Some(1), Some(&prefs)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1000"), "{}", err.message());

    let err = create(&mut api, manifest(&"a".repeat(57), 1, Some(1), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("metadata.name"), "{}", err.message());

    let mut job: Value = serde_yaml::from_str(&manifest("labels", 1, Some(1), None)).unwrap();
    job["metadata"]["labels"] = (0..65)
        .map(|i| (format!("l{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let err = api
        .create_job(v1::CreateJobRequest {
            job: to_struct(&job),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("metadata.labels"),
        "{}",
        err.message()
    );
    let list = api
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn an_agent_breaking_the_protocol_is_refused_and_others_go_on() {
    let s = start(Duration::from_secs(30)).await;
    let mut good = TestAgent::connect(&s.url, "good").await;
    let mut api = client(&s.url).await;
    create(&mut api, manifest("job", 2, Some(2), None))
        .await
        .unwrap();
    good.until("good's shard", |a| a.shards_of("job").contains_key("job"))
        .await;

    // A message without a body, after hello: refused, its stream ends.
    let mut agent = v1::agent_client::AgentClient::connect(s.url.clone())
        .await
        .unwrap();
    let reg = agent
        .register(v1::RegisterRequest {
            cluster: "rogue".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = v1::Hello {
        cluster: "rogue".into(),
        session: reg.session,
        held: vec![],
    };
    tx.send(v1::AgentMessage {
        msg: Some(v1::agent_message::Msg::Hello(hello)),
    })
    .await
    .unwrap();
    let mut stream = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(v1::AgentMessage { msg: None }).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    })
    .await
    .expect("the rogue stream ends");
    assert_eq!(ended.map(|e| e.code()), Some(Code::InvalidArgument));

    // Status for a shard another cluster runs: the sender is told to forget it; the other
    // cluster's shard is untouched.
    let mut liar = TestAgent::connect(&s.url, "liar").await;
    let theirs = good.shards_of("job")["job"].clone();
    liar.report(vec![TestAgent::status(
        &theirs,
        ShardPhase::Complete,
        0,
        2,
        0,
    )])
    .await;
    liar.until("told to forget", |a| {
        a.log
            .iter()
            .any(|x| x.shard == "job" && x.action == AssignmentAction::Forget as i32)
    })
    .await;
    let job = get_json(&mut api, "job").await;
    assert!(
        job["status"]["succeeded"].is_null(),
        "a report for another cluster's shard counts nothing: {job}"
    );

    // The good agent still works.
    good.complete_all("job").await;
    support::eventually("good's report counts", || {
        let mut api = api.clone();
        async move { get_json(&mut api, "job").await["status"]["succeeded"] == 2 }
    })
    .await;
    let metrics = s.running.control_plane.metrics().encode();
    assert!(
        metrics.contains("fedjob_requests_refused_total{reason=\"protocol\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_creates_does_not_starve_heartbeats() {
    let grace = Duration::from_millis(600);
    let s = start(grace).await;
    let _agent = TestAgent::connect(&s.url, "c1").await;
    let api = client(&s.url).await;
    let flood: Vec<_> = (0..32)
        .map(|t| {
            let mut api = api.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                for i in 0..60 {
                    if create(
                        &mut api,
                        manifest(&format!("flood-{t}-{i}"), 1, Some(1), None),
                    )
                    .await
                    .is_ok()
                    {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut watcher = client(&s.url).await;
    let mut samples = 0;
    let mut not_ready = 0;
    while !flood.iter().all(|f| f.is_finished()) {
        let list = watcher
            .list_clusters(v1::ListClustersRequest {})
            .await
            .unwrap()
            .into_inner();
        samples += 1;
        not_ready += list.items.iter().filter(|c| c.state != "Ready").count();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut created = 0;
    for f in flood {
        created += f.await.unwrap();
    }
    println!(
        "{created} creates in the flood; cluster NotReady in {not_ready} of {samples} samples"
    );
    assert_eq!(created, 32 * 60);
    assert!(samples > 3, "the flood was too short to tell");
    assert_eq!(not_ready, 0, "heartbeats were starved by the flood");
}
