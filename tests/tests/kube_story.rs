//! What the federation tells kubectl besides the Jobs themselves (SPEC §9): the story of each
//! Job as core `v1` events (`kubectl describe job`, `kubectl get events -w`), the member
//! clusters as `fedjob.io/v1` Clusters (`kubectl get clusters`), and the per-cluster
//! completions of `kubectl get jobs -o wide`. The real kubectl, with a kubeconfig from `fedctl
//! kubeconfig` and no extra flags, against a scheduler over three simulated member clusters
//! with real syncers; expected numbers come from the split of SPEC §3 (9 and 18 over three
//! equal clusters: parallelism 3 and completions 6 each).

use std::process::Stdio;

use fedjob_tests::harness::federation::{Federation, Setup, WAIT, job_manifest, strings};
use fedjob_tests::harness::kubectl::{Kubectl, KubectlOutput};
use fedjob_tests::harness::{SyncerProc, eventually, free_port};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const CLUSTERS: [&str; 3] = ["c1", "c2", "c3"];
/// The label each cluster's agent registers with.
const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// A federation whose syncers register `region=…` labels and whose scheduler serves the
/// Kubernetes API; kubectl for it, and the paths kubectl uses.
async fn federation() -> (Federation, Kubectl, KubectlEnv) {
    let port = free_port();
    let mut setup = Setup::new("3s");
    setup.scheduler.extend(strings(&[
        "--kube-api-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    let mut fed = Federation::start_without_syncers(setup).await;
    for (c, region) in CLUSTERS.iter().zip(REGIONS) {
        let labels = format!("region={region}");
        let syncer = SyncerProc::start(
            &fed.scheduler.url,
            c,
            fed.kubeconfig(),
            &["--labels", &labels],
        )
        .unwrap();
        fed.syncers.insert((*c).to_owned(), syncer);
    }
    fed.wait_ready(&CLUSTERS).await;
    let env = KubectlEnv {
        kubeconfig: fed.dir.path().join("kubeconfig-story"),
        home: fed.dir.path().join("home-story"),
    };
    let kubectl = Kubectl::from_fedctl(
        &format!("http://127.0.0.1:{port}"),
        None,
        &env.kubeconfig,
        &env.home,
    )
    .await
    .unwrap();
    (fed, kubectl, env)
}

/// Where kubectl finds its kubeconfig and home, for a watch read line by line.
struct KubectlEnv {
    kubeconfig: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl KubectlEnv {
    /// `kubectl ARGS…` left running, its output read line by line (killed when dropped).
    fn spawn(&self, args: &[&str]) -> (tokio::process::Child, Lines<BufReader<ChildStdout>>) {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("KUBECACHEDIR", self.home.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl is needed by this test (scripts/test installs it)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    }
}

/// Reads lines until one satisfies `done`; every line read.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("| {line}");
            let finished = done(&line);
            seen.push(line);
            if finished {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{what}: {seen:#?}");
    seen
}

/// Asserts kubectl exited 0 and printed nothing on stderr (no warning either).
trait Clean {
    fn clean(self) -> Self;
}

impl Clean for KubectlOutput {
    fn clean(self) -> Self {
        assert_eq!((self.code, self.stderr.as_str()), (Some(0), ""), "{self}");
        self
    }
}

/// Whether a line of `kubectl get events` is Job `name`'s `Completed`.
fn completed(line: &str, name: &str) -> bool {
    let cells: Vec<&str> = line.split_whitespace().collect();
    cells.get(2) == Some(&"Completed") && cells.get(3) == Some(&format!("job/{name}").as_str())
}

/// The whitespace-separated cells of each line.
fn rows(out: &KubectlOutput) -> Vec<Vec<String>> {
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Whether `s` is an age as kubectl prints one for something a minute old at most.
fn is_age(s: &str) -> bool {
    s.strip_suffix('s')
        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n < 120))
}

/// The events of `kubectl describe`'s `Events:` section: (type, reason, from, message).
fn described_events(out: &KubectlOutput) -> Vec<(String, String, String, String)> {
    let text = &out.stdout;
    let section = text
        .split_once("\nEvents:\n")
        .unwrap_or_else(|| panic!("no Events section:\n{out}"))
        .1;
    let mut lines = section.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Type", "Reason", "Age", "From", "Message"],
        "{out}"
    );
    assert!(
        lines.next().unwrap().trim_start().starts_with("----"),
        "{out}"
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert!(is_age(cells[2]), "an age: {l}");
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[3].to_owned(),
                cells[4..].join(" "),
            )
        })
        .collect()
}

/// The story SPEC §3 and §4 tell of a Job of parallelism 9 and 18 completions over three equal
/// clusters: one shard of 3 and 6 in each, each completing its 6, the Job complete with 18.
fn story_of(name: &str) -> Vec<(String, String, String, String)> {
    let normal = |reason: &str, message: String| {
        (
            "Normal".to_owned(),
            reason.to_owned(),
            "fedjob-scheduler".to_owned(),
            message,
        )
    };
    let mut story = vec![normal(
        "SplitPlanned",
        "Planned parallelism 9 and 18 completions over 3 clusters: c1 (parallelism 3, completions 6), c2 (parallelism 3, completions 6), c3 (parallelism 3, completions 6)".to_owned(),
    )];
    for c in CLUSTERS {
        story.push(normal(
            "SuccessfulCreate",
            format!("Created shard {name} in cluster {c} (parallelism 3, completions 6)"),
        ));
    }
    for c in CLUSTERS {
        story.push(normal(
            "ShardCompleted",
            format!("Shard {name} in cluster {c} completed (6 succeeded)"),
        ));
    }
    story.push(normal(
        "Completed",
        "Job completed: 18 succeeded (c1 6, c2 6, c3 6)".to_owned(),
    ));
    story.sort();
    story
}

#[tokio::test]
async fn kubectl_tells_each_jobs_story_follows_it_and_lists_the_clusters() {
    let (fed, kubectl, env) = federation().await;

    // Discovery lists exactly what is served, and kubectl reads it without a warning.
    let out = kubectl.run(&["api-resources"]).await.clean();
    assert_eq!(
        rows(&out),
        [
            vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            vec!["events", "ev", "v1", "true", "Event"],
            vec!["jobs", "batch/v1", "true", "Job"],
            vec!["clusters", "fedjob.io/v1", "false", "Cluster"],
        ],
        "{out}"
    );

    // The clusters, as registered: Ready, no shards yet, their labels.
    let out = kubectl.run(&["get", "clusters"]).await.clean();
    let table = rows(&out);
    assert_eq!(
        table[0],
        ["NAME", "STATUS", "SHARDS", "AGE", "LABELS"],
        "{out}"
    );
    assert_eq!(table.len(), 4, "{out}");
    for (row, (c, region)) in table[1..].iter().zip(CLUSTERS.iter().zip(REGIONS)) {
        assert_eq!(row.len(), 5, "{out}");
        assert_eq!(
            [&row[0], &row[1], &row[2], &row[4]],
            [*c, "Ready", "0", &format!("region={region}")],
            "{out}"
        );
        assert!(is_age(&row[3]), "{out}");
    }

    // The first Job, to its end.
    let first = fed.write_manifest(&job_manifest("first", 9, Some(18), "1s", None));
    let out = kubectl.run(&["create", "-f", &first]).await.clean();
    assert_eq!(out.stdout, "job.batch/first created\n", "{out}");
    eventually("first is Complete", WAIT, || async {
        let out = kubectl
            .run(&["get", "job", "first", "-o", "jsonpath={.status.succeeded}"])
            .await;
        (out.stdout == "18").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));

    // Its story, in `describe`: the split, each cluster's shard created and completed, the end.
    let described = eventually("first's whole story", WAIT, || async {
        let out = kubectl.run(&["describe", "job", "first"]).await.clean();
        let mut events = described_events(&out);
        events.sort();
        (events == story_of("first")).then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert_eq!(described.len(), 8);

    // Its per-cluster completions, with `-o wide`.
    let out = kubectl.run(&["get", "jobs", "-o", "wide"]).await.clean();
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
    assert_eq!(table.len(), 2, "{out}");
    let row = &table[1];
    assert_eq!(row.len(), 8, "{out}");
    assert_eq!(
        [&row[0], &row[1], &row[4], &row[5], &row[6], &row[7]],
        [
            "first",
            "18/18",
            "w",
            "busybox",
            "<none>",
            "c1=6/6,c2=6/6,c3=6/6"
        ],
        "{out}"
    );

    // `get events -w` lists what happened so far, then follows a second Job to its end.
    let (_watch, mut lines) = env.spawn(&["get", "events", "-w"]);
    let listed = read_until(&mut lines, "first's Completed, listed", |l| {
        completed(l, "first")
    })
    .await;
    assert_eq!(
        listed[0].split_whitespace().collect::<Vec<_>>(),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    let second = fed.write_manifest(&job_manifest("second", 9, Some(18), "1s", None));
    let out = kubectl.run(&["create", "-f", &second]).await.clean();
    assert_eq!(out.stdout, "job.batch/second created\n", "{out}");
    let followed = read_until(&mut lines, "second's Completed, followed", |l| {
        completed(l, "second")
    })
    .await;
    let mut watched: Vec<(String, String, String, String)> = followed
        .iter()
        .filter(|l| l.contains("job/second"))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert!(is_age(cells[0]), "{l}");
            assert_eq!(cells[3], "job/second", "{l}");
            (
                cells[1].to_owned(),
                cells[2].to_owned(),
                "fedjob-scheduler".to_owned(),
                cells[4..].join(" "),
            )
        })
        .collect();
    watched.sort();
    assert_eq!(watched, story_of("second"), "{followed:#?}");
    assert!(
        followed.iter().all(|l| !l.contains("job/first")),
        "nothing of first again: {followed:#?}"
    );

    // The clusters now: each holds the shard of each Job; c3 cordoned.
    let out = fed.fedctl(&["cordon", "c3"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = kubectl
        .run(&["get", "clusters", "-o", "wide"])
        .await
        .clean();
    let table = rows(&out);
    assert_eq!(
        table[0],
        [
            "NAME",
            "STATUS",
            "SHARDS",
            "AGE",
            "LABELS",
            "CONNECTED",
            "CAPACITY"
        ],
        "{out}"
    );
    assert_eq!(table.len(), 4, "{out}");
    let statuses = ["Ready", "Ready", "Ready,SchedulingDisabled"];
    for (i, row) in table[1..].iter().enumerate() {
        assert_eq!(row.len(), 7, "{out}");
        assert_eq!(
            [&row[0], &row[1], &row[2], &row[4], &row[5]],
            [
                CLUSTERS[i],
                statuses[i],
                "2",
                &format!("region={}", REGIONS[i]),
                "true"
            ],
            "{out}"
        );
    }
    let out = kubectl
        .run(&["get", "cluster", "c3", "-o", "json"])
        .await
        .clean();
    let c3: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            &c3["kind"],
            &c3["apiVersion"],
            &c3["metadata"]["name"],
            &c3["metadata"]["labels"],
            &c3["spec"]["unschedulable"],
            &c3["status"]["state"],
            &c3["status"]["connected"],
            &c3["status"]["shards"],
        ),
        (
            &"Cluster".into(),
            &"fedjob.io/v1".into(),
            &"c3".into(),
            &serde_json::json!({"region": "ap"}),
            &true.into(),
            &"Ready".into(),
            &true.into(),
            &2.into(),
        ),
        "{out}"
    );
}
