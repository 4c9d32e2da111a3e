//! Labels, annotations and names shared by the scheduler and the syncer, and the one
//! implementation of the DNS-1123 name rules (Job names, namespaces, cluster names).
//!
//! A shard is an ordinary `batch/v1` Job in a member cluster; these keys are how the
//! syncer recognises it again after a restart, and how a user finds it with kubectl.

/// Label holding the federated Job's name.
pub const JOB_LABEL: &str = "fedjob.io/job";
/// Label holding the federated Job's uid: the proof that fedjob created a local Job.
pub const JOB_UID_LABEL: &str = "fedjob.io/job-uid";
/// Label marking every Job that fedjob manages.
pub const MANAGED_BY_LABEL: &str = "fedjob.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "fedjob";
/// Label selector that finds every shard in a cluster.
pub const MANAGED_SELECTOR: &str = "fedjob.io/managed-by=fedjob";
/// Annotation recording the revision of the assignment a shard was last applied from.
pub const ASSIGNMENT_REVISION_ANNOTATION: &str = "fedjob.io/assignment-revision";
/// Annotation recording the fencing epoch a shard was planned in.
pub const EPOCH_ANNOTATION: &str = "fedjob.io/epoch";
/// Annotation on a shard the federation stopped by suspending it because the federated Job no
/// longer needs it (it finished); the value says why. The shard is kept with its counts.
pub const STOPPED_ANNOTATION: &str = "fedjob.io/stopped";
/// Annotation holding a federated Job's placement preferences (SPEC §3).
pub const PREFERENCES_ANNOTATION: &str = "federation.kubernetes.io/job-preferences";
/// Field manager of the syncer's server-side applies.
pub const FIELD_MANAGER: &str = "fedjob-syncer";

/// Name of the `index`-th shard (1-based) of Job `job` in one cluster: `job`, `job-2`, `job-3`, ….
pub fn shard_name(job: &str, index: u32) -> String {
    if index <= 1 {
        job.to_owned()
    } else {
        format!("{job}-{index}")
    }
}

// ------------------------------------------------------------------ DNS-1123 names

/// Longest DNS-1123 label (a namespace, a container name, a cluster name).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (an object name such as a Job's).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: the characters of a DNS-1123 label, whatever its length.
fn is_label_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 label: 1 to 63 lower-case alphanumerics or `-`, starting and
/// ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX && is_label_shaped(s)
}

/// Whether `s` is a DNS-1123 subdomain: labels joined by `.`, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_label_shaped)
}

/// The API server's message for a value that breaks a pattern (apimachinery's `RegexError`).
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        examples.join(" or ")
    )
}

/// The rules a DNS-1123 label breaks, in the API server's words (`IsDNS1123Label`); empty when
/// `s` is one.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut rules = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        rules.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_label_shaped(s) {
        rules.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    rules
}

/// The rules a DNS-1123 subdomain breaks, in the API server's words (`IsDNS1123Subdomain`);
/// empty when `s` is one.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut rules = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        rules.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(is_label_shaped) {
        rules.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    rules
}

/// Checks a member cluster's name, which must be a DNS-1123 label (SPEC §6); the error is the
/// rule broken, in the API server's words.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let rules = dns1123_label(name);
    if rules.is_empty() {
        Ok(())
    } else {
        Err(rules.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_shard_keeps_the_job_name() {
        assert_eq!(shard_name("myjob", 1), "myjob");
        assert_eq!(shard_name("myjob", 2), "myjob-2");
        assert_eq!(shard_name("myjob", 13), "myjob-13");
    }

    #[test]
    fn dns1123_labels() {
        for good in ["a", "c1", "a-b-9", "123-abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
            assert!(dns1123_label(good).is_empty(), "{good}");
            assert_eq!(check_cluster_name(good), Ok(()));
        }
        for bad in ["", "A", "a.b", "a-", "-a", "a_b", "é", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
            assert!(check_cluster_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            dns1123_label("Team_A"),
            [
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
              and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
              regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
        assert_eq!(
            dns1123_label(&"A".repeat(64)).len(),
            2,
            "both rules, in order"
        );
    }

    #[test]
    fn dns1123_subdomains() {
        for good in [
            "a",
            "my-job.v2",
            "a.b.c",
            &"a".repeat(100),
            "a.".repeat(126).trim_end_matches('.'),
        ] {
            assert!(is_dns1123_subdomain(good), "{good}");
            assert!(dns1123_subdomain(good).is_empty(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "My_Job", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert_eq!(
            dns1123_subdomain("Bad_Name"),
            [
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
              or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex \
              used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    proptest! {
        #[test]
        fn the_predicates_and_the_messages_agree(name in "[a-z0-9.A_-]{0,70}") {
            prop_assert_eq!(is_dns1123_label(&name), dns1123_label(&name).is_empty());
            prop_assert_eq!(is_dns1123_subdomain(&name), dns1123_subdomain(&name).is_empty());
            if is_dns1123_label(&name) {
                prop_assert!(is_dns1123_subdomain(&name), "a label is a subdomain");
            }
        }
    }
}
