//! The `--fault` grammar of `fedjob-kubesim`: `[CLUSTER:]KIND[,KEY=VALUE…]`.
//!
//! | KIND | what fails | its own keys |
//! |---|---|---|
//! | `unreachable` | connections refused, open ones dropped; back on the same port with the same state | only `after`, `for` |
//! | `429` | `Too Many Requests` | `retry-after=SECONDS` (1), `body=text\|status` (text: priority and fairness) |
//! | `500` | `InternalError` | `message=TEXT` |
//! | `503` | `ServiceUnavailable` | `message=TEXT` |
//! | `403` | RBAC denies | `user=NAME` |
//! | `slow` | answers late | `delay=DURATION` (required) |
//! | `expire` | watches end with `410 Expired`; continued lists get `410` | |
//!
//! Keys every kind but `unreachable` takes: `verb=V[+V…]`, `resource=jobs[/status]`,
//! `namespace=NS`, `path=PREFIX`, `count=N`. Every kind takes `after=DURATION` (start later)
//! and `for=DURATION` (then stop). Example: `c2:429,verb=create,resource=jobs,count=5,retry-after=2`.

use std::time::Duration;

use super::rule::{DEFAULT_USER, Fault, FaultSpec, Selector, ThrottleBody};
use fedjob_proto::duration;

/// Parses one `--fault` value: the cluster it is for (`None`: every cluster) and the fault.
pub fn parse(input: &str) -> Result<(Option<String>, FaultSpec), String> {
    let (cluster, rest) = match input.split_once(':') {
        Some((cluster, rest)) if !cluster.contains([',', '=']) => {
            if cluster.is_empty() {
                return Err(format!("{input:?}: empty cluster name before ':'"));
            }
            (Some(cluster.to_owned()), rest)
        }
        _ => (None, input),
    };
    let mut parts = rest.split(',').map(str::trim);
    let kind = parts.next().unwrap_or_default();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for part in parts.filter(|p| !p.is_empty()) {
        let pair = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected KEY=VALUE"))?;
        if keys.iter().any(|(k, _)| *k == pair.0) {
            return Err(format!("{:?} is given twice", pair.0));
        }
        keys.push(pair);
    }
    let take = |key: &str| keys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let seconds = |key: &str, default: u32| -> Result<u32, String> {
        take(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{key}={v:?}: expected a whole number of seconds"))
        })
    };
    let text = |key: &str, default: &str| take(key).unwrap_or(default).to_owned();
    let (fault, own): (Fault, &[&str]) = match kind {
        "unreachable" => (Fault::Unreachable, &[]),
        "429" => {
            let body = match take("body").unwrap_or("text") {
                "text" => ThrottleBody::PriorityAndFairness,
                "status" => ThrottleBody::Status,
                other => return Err(format!("body={other:?}: expected text or status")),
            };
            let retry_after = seconds("retry-after", 1)?;
            (
                Fault::TooManyRequests { retry_after, body },
                &["retry-after", "body"],
            )
        }
        "500" => (
            Fault::InternalError {
                message: text("message", "etcdserver: request timed out"),
            },
            &["message"],
        ),
        "503" => (
            Fault::ServiceUnavailable {
                message: text(
                    "message",
                    "the server is currently unable to handle the request",
                ),
            },
            &["message"],
        ),
        "403" => (
            Fault::Forbidden {
                user: text("user", DEFAULT_USER),
            },
            &["user"],
        ),
        "slow" => {
            let delay = take("delay").ok_or("slow needs delay=DURATION")?;
            (
                Fault::Slow {
                    delay: parse_duration("delay", delay)?,
                },
                &["delay"],
            )
        }
        "expire" => (Fault::Expire, &[]),
        other => {
            return Err(format!(
                "unknown fault {other:?}: expected unreachable, 429, 500, 503, 403, slow or expire"
            ));
        }
    };
    const TIMING: &[&str] = &["after", "for"];
    const SELECTION: &[&str] = &["verb", "resource", "namespace", "path", "count"];
    let allowed = |key: &str| {
        own.contains(&key)
            || TIMING.contains(&key)
            || (fault != Fault::Unreachable && SELECTION.contains(&key))
    };
    if let Some((key, _)) = keys.iter().find(|(k, _)| !allowed(k)) {
        return Err(format!("{kind} does not take {key:?}"));
    }
    let count = take("count")
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("count={v:?}: expected a positive number"))
        })
        .transpose()?;
    let spec = FaultSpec {
        fault,
        select: Selector {
            verbs: take("verb")
                .map(|v| v.split('+').map(str::to_owned).collect())
                .unwrap_or_default(),
            resource: take("resource").map(str::to_owned),
            namespace: take("namespace").map(str::to_owned),
            path: take("path").map(str::to_owned),
        },
        after: take("after")
            .map(|v| parse_duration("after", v))
            .transpose()?
            .unwrap_or_default(),
        lasts: take("for").map(|v| parse_duration("for", v)).transpose()?,
        count,
    };
    Ok((cluster, spec))
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|e| format!("{key}: {e}"))
}

/// The `--fault` value that [`parse`] reads back as `(cluster, spec)`.
pub fn render(cluster: Option<&str>, spec: &FaultSpec) -> String {
    let mut out = String::new();
    if let Some(cluster) = cluster {
        out.push_str(cluster);
        out.push(':');
    }
    out.push_str(spec.fault.name());
    let mut key = |k: &str, v: &str| {
        out.push(',');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    };
    match &spec.fault {
        Fault::TooManyRequests { retry_after, body } => {
            key("retry-after", &retry_after.to_string());
            let body = match body {
                ThrottleBody::PriorityAndFairness => "text",
                ThrottleBody::Status => "status",
            };
            key("body", body);
        }
        Fault::InternalError { message } | Fault::ServiceUnavailable { message } => {
            key("message", message)
        }
        Fault::Forbidden { user } => key("user", user),
        Fault::Slow { delay } => key("delay", &duration::format(*delay)),
        Fault::Unreachable | Fault::Expire => {}
    }
    if !spec.select.verbs.is_empty() {
        key("verb", &spec.select.verbs.join("+"));
    }
    for (k, v) in [
        ("resource", &spec.select.resource),
        ("namespace", &spec.select.namespace),
        ("path", &spec.select.path),
    ] {
        if let Some(v) = v {
            key(k, v);
        }
    }
    if let Some(n) = spec.count {
        key("count", &n.to_string());
    }
    if !spec.after.is_zero() {
        key("after", &duration::format(spec.after));
    }
    if let Some(d) = spec.lasts {
        key("for", &duration::format(d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_a_person_writes() {
        let (cluster, spec) =
            parse("c2:429,verb=create+patch,resource=jobs,count=5,retry-after=2").unwrap();
        assert_eq!(cluster.as_deref(), Some("c2"));
        assert_eq!(
            spec.fault,
            Fault::TooManyRequests {
                retry_after: 2,
                body: ThrottleBody::PriorityAndFairness
            }
        );
        assert_eq!(spec.select.verbs, ["create", "patch"]);
        assert_eq!(spec.select.resource.as_deref(), Some("jobs"));
        assert_eq!(spec.count, Some(5));

        let (cluster, outage) = parse("unreachable,after=10s,for=3s").unwrap();
        assert_eq!(cluster, None);
        assert_eq!(outage.after, Duration::from_secs(10));
        assert_eq!(outage.lasts, Some(Duration::from_secs(3)));

        let (_, internal) = parse("500,message=etcdserver: leader changed").unwrap();
        assert_eq!(
            internal.fault,
            Fault::InternalError {
                message: "etcdserver: leader changed".into()
            }
        );
        let (_, slow) = parse("slow,delay=1500ms,verb=list").unwrap();
        assert_eq!(
            slow.fault,
            Fault::Slow {
                delay: Duration::from_millis(1500)
            }
        );
        assert_eq!(parse("403").unwrap().1.fault, Fault::forbidden());
    }

    #[test]
    fn refuses_what_cannot_mean_anything() {
        for (input, why) in [
            ("", "unknown fault"),
            ("teapot", "unknown fault"),
            ("unreachable,count=2", "does not take \"count\""),
            ("unreachable,verb=get", "does not take \"verb\""),
            ("500,retry-after=2", "does not take \"retry-after\""),
            ("slow", "needs delay"),
            ("slow,delay=fast", "invalid duration"),
            ("429,retry-after=1.5", "whole number"),
            ("429,body=html", "expected text or status"),
            ("500,count=0", "positive number"),
            ("500,verb", "expected KEY=VALUE"),
            ("500,count=1,count=2", "given twice"),
            (":500", "empty cluster name"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
        }
    }

    fn specs() -> impl Strategy<Value = (Option<String>, FaultSpec)> {
        let word = "[a-z][a-z0-9-]{0,8}";
        let fault = prop_oneof![
            Just(Fault::Unreachable),
            (0u32..100, any::<bool>()).prop_map(|(retry_after, status)| {
                Fault::TooManyRequests {
                    retry_after,
                    body: if status {
                        ThrottleBody::Status
                    } else {
                        ThrottleBody::PriorityAndFairness
                    },
                }
            }),
            "[a-z:]([a-z: ]{0,18}[a-z:])?".prop_map(|message| Fault::InternalError { message }),
            "[a-z:]([a-z: ]{0,18}[a-z:])?"
                .prop_map(|message| Fault::ServiceUnavailable { message }),
            "[a-z:]{1,20}".prop_map(|user| Fault::Forbidden { user }),
            (1u64..100_000).prop_map(|ms| Fault::Slow {
                delay: Duration::from_millis(ms)
            }),
            Just(Fault::Expire),
        ];
        let millis = || prop::option::of((1u64..100_000).prop_map(Duration::from_millis));
        (
            prop::option::of(word),
            fault,
            prop::collection::vec("[a-z]{1,8}", 0..3),
            prop::option::of("[a-z]{1,8}(/status)?"),
            prop::option::of(word),
            prop::option::of("/[a-z/]{0,12}"),
            prop::option::of(1u64..100),
            millis(),
            millis(),
        )
            .prop_map(
                |(cluster, fault, verbs, resource, namespace, path, count, after, lasts)| {
                    let selective = fault != Fault::Unreachable;
                    let spec = FaultSpec {
                        select: if selective {
                            Selector {
                                verbs,
                                resource,
                                namespace,
                                path,
                            }
                        } else {
                            Selector::default()
                        },
                        count: count.filter(|_| selective),
                        after: after.unwrap_or_default(),
                        lasts,
                        fault,
                    };
                    (cluster, spec)
                },
            )
    }

    proptest! {
        #[test]
        fn what_is_rendered_reads_back((cluster, spec) in specs()) {
            let text = render(cluster.as_deref(), &spec);
            prop_assert_eq!(parse(&text), Ok((cluster, spec)), "{}", text);
        }
    }
}
