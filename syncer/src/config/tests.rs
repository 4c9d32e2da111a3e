//! The flags, parsed and checked: every refusal names its flag and exits 64.

use super::*;

fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
    let mut args = vec!["fedjob-syncer", "--scheduler", "http://127.0.0.1:50051"];
    if !extra.iter().any(|a| a.starts_with("--cluster-name")) {
        args.extend_from_slice(&["--cluster-name", "c1"]);
    }
    args.extend_from_slice(extra);
    Config::from_args(args)
}

#[test]
fn defaults() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.schedulers, vec!["http://127.0.0.1:50051"]);
    assert_eq!(c.cluster_name, "c1");
    assert_eq!(c.kube, KubeSource::InCluster);
    assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
    assert!(c.labels.is_empty());
    assert!(!c.create_namespaces);
    assert_eq!(c.namespace, None);
    assert_eq!(c.workers, 16);
    assert_eq!(c.tls, None);
    assert_eq!(c.self_fence_after, None, "self-fencing is off by default");
    assert_eq!(c.cluster_request_timeout, Duration::from_secs(60));
}

#[test]
fn cluster_request_timeout() {
    let c = parse(&["--cluster-request-timeout", "1500ms"]).unwrap();
    assert_eq!(c.cluster_request_timeout, Duration::from_millis(1500));
    for bad in ["0s", "soon"] {
        let e = parse(&["--cluster-request-timeout", bad]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(
            e.to_string()
                .starts_with("invalid value for --cluster-request-timeout"),
            "{e}"
        );
    }
}

#[test]
fn capacity_bytes_per_heartbeat() {
    assert_eq!(parse(&[]).unwrap().capacity_bytes_per_heartbeat, 2048);
    let c = parse(&["--report-capacity", "--capacity-bytes-per-heartbeat", "0"]).unwrap();
    assert_eq!(
        (c.report_capacity, c.capacity_bytes_per_heartbeat),
        (true, 0)
    );
    for bad in ["-1", "2KiB"] {
        let flag = format!("--capacity-bytes-per-heartbeat={bad}");
        let e = parse(&[&flag]).unwrap_err();
        assert_eq!(e.exit_code(), 64, "{bad}");
        assert!(
            e.to_string().contains("--capacity-bytes-per-heartbeat"),
            "{e}"
        );
    }
}

#[test]
fn self_fence_after() {
    let c = parse(&["--heartbeat-interval", "500ms", "--self-fence-after", "2s"]).unwrap();
    assert_eq!(c.self_fence_after, Some(Duration::from_secs(2)));
    let c = parse(&["--self-fence-after", "1m"]).unwrap();
    assert_eq!(c.self_fence_after, Some(Duration::from_secs(60)));
    let short = parse(&["--self-fence-after", "9s"]).unwrap_err();
    assert_eq!(short.exit_code(), 64);
    let text = short.to_string();
    assert!(
        text.contains("--self-fence-after") && text.contains("twice --heartbeat-interval"),
        "{text}"
    );
    let bad = parse(&["--self-fence-after", "soon"]).unwrap_err();
    assert!(bad.to_string().contains("--self-fence-after"), "{bad}");
}

#[test]
fn every_flag() {
    let c = Config::from_args([
        "fedjob-syncer",
        "--scheduler",
        "http://a:1,http://b:2",
        "--cluster-name",
        "gce-asia-east1a",
        "--kubeconfig",
        "/tmp/kc",
        "--context",
        "c1",
        "--labels",
        "region=asia,fedjob.io/tier=gold",
        "--heartbeat-interval",
        "250ms",
        "--create-namespaces",
        "--namespace",
        "team-a",
        "--workers",
        "4",
        "--shutdown-grace",
        "1m30s",
        "--insecure",
    ])
    .unwrap();
    assert_eq!(c.schedulers, vec!["http://a:1", "http://b:2"]);
    assert_eq!(
        c.kube,
        KubeSource::Kubeconfig {
            path: Some("/tmp/kc".into()),
            context: Some("c1".into())
        }
    );
    assert_eq!(c.labels.get("region").map(String::as_str), Some("asia"));
    assert_eq!(
        c.labels.get("fedjob.io/tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(c.heartbeat_interval, Duration::from_millis(250));
    assert!(c.create_namespaces);
    assert_eq!(c.namespace.as_deref(), Some("team-a"));
    assert_eq!(c.workers, 4);
    assert_eq!(c.shutdown_grace, Duration::from_secs(90));
}

#[test]
fn context_alone_uses_the_default_kubeconfig() {
    let c = parse(&["--context", "kind-c1"]).unwrap();
    assert_eq!(
        c.kube,
        KubeSource::Kubeconfig {
            path: None,
            context: Some("kind-c1".into())
        }
    );
}

#[test]
fn bad_values_are_usage_errors() {
    for (extra, flag) in [
        (&["--cluster-name", "Bad_Name"][..], "cluster-name"),
        (&["--cluster-name=-x"][..], "cluster-name"),
        (&["--labels", "novalue"][..], "labels"),
        (&["--labels", "a=b,a=c"][..], "labels"),
        (&["--labels", "bad key=v"][..], "labels"),
        (&["--labels", "k=-v"][..], "labels"),
        (&["--heartbeat-interval", "soon"][..], "heartbeat-interval"),
        (&["--heartbeat-interval", "1ms"][..], "heartbeat-interval"),
        (&["--namespace", "Team"][..], "namespace"),
        (&["--workers", "0"][..], "workers"),
    ] {
        let err = parse(extra).unwrap_err();
        assert_eq!(err.exit_code(), 64, "{extra:?}");
        match err {
            ConfigError::Invalid { flag: f, .. } => assert_eq!(f, flag, "{extra:?}"),
            other => panic!("{extra:?}: {other}"),
        }
    }
}

#[test]
fn metrics_listen_is_an_address() {
    let c = parse(&["--metrics-listen", "0.0.0.0:9090"]).unwrap();
    assert_eq!(c.metrics_listen, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(parse(&[]).unwrap().metrics_listen, None, "off by default");
    let err = parse(&["--metrics-listen", "9090"]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Cli(e) if e.to_string().contains("--metrics-listen")),
        "{err}"
    );
}

#[test]
fn bad_scheduler_urls() {
    for url in [
        "127.0.0.1:50051",
        "ftp://x",
        "http://",
        ",",
        "https://s:1",
        "http://scheduler.example.com:50051",
        "http://10.0.0.1:50051",
    ] {
        let err = Config::from_args(["fedjob-syncer", "--scheduler", url, "--cluster-name", "c1"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 64, "{url}");
    }
}

#[test]
fn missing_required_flags_exit_64_and_help_exits_0() {
    let err = Config::from_args(["fedjob-syncer", "--cluster-name", "c1"]).unwrap_err();
    assert!(matches!(err, ConfigError::Cli(_)));
    assert_eq!(err.exit_code(), 64);
    let help = Config::from_args(["fedjob-syncer", "--help"]).unwrap_err();
    assert_eq!(help.exit_code(), 0);
}

#[test]
fn plain_text_only_to_loopback_unless_insecure() {
    for url in [
        "http://127.0.0.1:1",
        "http://localhost:1",
        "http://[::1]:1",
        "http://127.8.9.1:1",
    ] {
        assert!(
            Config::from_args(["fedjob-syncer", "--scheduler", url, "--cluster-name", "c1"])
                .is_ok(),
            "{url}"
        );
    }
    let remote = Config::from_args([
        "fedjob-syncer",
        "--scheduler",
        "http://10.0.0.1:1",
        "--cluster-name",
        "c1",
        "--insecure",
    ]);
    assert!(remote.is_ok());
}

#[test]
fn tls_flags() {
    let dir = std::env::temp_dir().join(format!("fedjob-syncer-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let p = |f: &str| dir.join(f).display().to_string();
    let with = |extra: &[&str]| {
        let mut args = vec![
            "fedjob-syncer".to_owned(),
            "--cluster-name".into(),
            "c1".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Config::from_args(args)
    };
    let c = with(&[
        "--scheduler",
        "https://s:1",
        "--tls-ca",
        &p("ca.pem"),
        "--tls-cert",
        &p("cert.pem"),
        "--tls-key",
        &p("key.pem"),
    ])
    .unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.ca, b"ca.pem");
    assert_eq!(
        tls.identity,
        Some((b"cert.pem".to_vec(), b"key.pem".to_vec()))
    );
    assert!(
        !format!("{tls:?}").contains("key.pem"),
        "key material is never printed"
    );

    for bad in [
        vec![
            "--scheduler",
            "https://s:1",
            "--tls-cert",
            &p("cert.pem"),
            "--tls-key",
            &p("key.pem"),
        ],
        vec!["--scheduler", "https://s:1", "--tls-ca", &p("missing.pem")],
        vec![
            "--scheduler",
            "http://127.0.0.1:1",
            "--tls-ca",
            &p("ca.pem"),
        ],
        vec![
            "--scheduler",
            "https://s:1",
            "--tls-ca",
            &p("ca.pem"),
            "--tls-cert",
            &p("cert.pem"),
        ],
    ] {
        let err = with(&bad).unwrap_err();
        assert_eq!(err.exit_code(), 64, "{bad:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_are_go_durations_and_errors_name_the_flag() {
    let c = parse(&["--heartbeat-interval", "1m30s", "--shutdown-grace", "0"]).unwrap();
    assert_eq!(c.heartbeat_interval, Duration::from_secs(90));
    assert_eq!(c.shutdown_grace, Duration::ZERO);
    for (flag, value) in [
        ("--heartbeat-interval", "2"),
        ("--shutdown-grace", "-5s"),
        ("--self-fence-after", "soon"),
    ] {
        let err = parse(&[&format!("{flag}={value}")]).unwrap_err();
        assert_eq!(err.exit_code(), 64);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "invalid value for {flag}: invalid duration \"{value}\""
            )),
            "{text}"
        );
    }
}

#[test]
fn cluster_names_and_namespaces_are_dns_labels() {
    for good in ["c1", "a-b-9", &"a".repeat(63)] {
        assert!(
            parse(&["--cluster-name", good, "--namespace", good]).is_ok(),
            "{good}"
        );
    }
    for bad in ["", "a.b", "a-", "Team_A", &"a".repeat(64)] {
        for flag in ["--cluster-name", "--namespace"] {
            let err = parse(&[flag, bad]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid value for {flag}: {bad:?}: "))
                    && (text.contains("RFC 1123 label") || text.contains("no more than 63")),
                "{text}"
            );
        }
    }
}
