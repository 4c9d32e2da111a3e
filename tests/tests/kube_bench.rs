//! A smoke run of `fedjob-bench --api kube` at a tiny size: every create through the Kubernetes
//! API and through gRPC is acknowledged, in the rounds asked for, and both APIs' figures are in
//! the report side by side. No timing is asserted: CI machines are shared.

use std::time::Duration;

use fedjob_tests::harness::bin;
use serde_json::Value;

#[tokio::test]
async fn the_bench_compares_creates_through_the_kubernetes_api_with_grpc() {
    let args = [
        "--api",
        "kube",
        "--clusters",
        "2",
        "--jobs",
        "10",
        "--clients",
        "2",
        "--status-sample",
        "2",
    ];
    let run = tokio::process::Command::new(bin("fedjob-bench").unwrap())
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("fedjob-bench finishes within 5 minutes")
        .expect("fedjob-bench starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}:\n{stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["params"]["api"], "kube", "{report:#}");
    let r = &report["results"];
    // The main load, through gRPC, as without --api kube.
    assert_eq!(r["creates"]["acknowledged"], 10, "{r:#}");
    let cmp = &r["api_comparison"];
    assert_eq!(
        (&cmp["rounds"], &cmp["jobs_per_api"]),
        (&4.into(), &10.into())
    );
    for api in ["grpc", "kube"] {
        let a = &cmp[api];
        assert_eq!(
            (&a["acknowledged"], &a["errors"], &a["first_error"]),
            (&10.into(), &0.into(), &Value::Null),
            "{api}: {cmp:#}"
        );
        assert_eq!(a["latency"]["count"], 10, "{api}: {cmp:#}");
        assert!(a["per_second"].as_f64().unwrap() > 0.0, "{api}: {cmp:#}");
        assert!(a["scheduler_cpu_us_per_create"].is_number(), "{cmp:#}");
    }
    for ratio in [
        "kube_over_grpc_cpu_per_create",
        "kube_over_grpc_p99",
        "kube_over_grpc_per_second",
    ] {
        assert!(cmp[ratio].is_number(), "{ratio}: {cmp:#}");
    }
    assert_eq!(
        stderr
            .matches("fedjob-bench: api comparison round ")
            .count(),
        4,
        "{stderr}"
    );
}
