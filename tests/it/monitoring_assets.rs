//! The monitoring assets under `deploy/` against real tools and a real daemon: Debian's
//! `promtool` accepts the alert rules and passes their unit tests, the Grafana dashboard
//! is importable JSON, the docs name every alert, and every series the rules and the
//! dashboard select is on a running daemon's `/metrics` (so no alert or panel watches a
//! name sluice does not export, or a label value it never sets).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Daemon, repo_root};

const RULES: &str = "deploy/prometheus/sluice-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/sluice-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/sluice.json";

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs `promtool ARGS` in the repository root; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool (Debian package `prometheus`, installed by tests/env/up.sh): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", RULES]);
    let alerts = alert_names().len();
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );
    promtool(&["test", "rules", RULE_TESTS]);
    // Each alert has a unit test.
    let tests = read(RULE_TESTS);
    for name in alert_names() {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{RULE_TESTS} has no test of {name}"
        );
    }
}

/// The `alert:` names of the rules file.
fn alert_names() -> Vec<String> {
    read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Every `expr:` of the rules file (one line, or a `|` block below it).
fn rule_exprs() -> Vec<String> {
    let text = read(RULES);
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .map(|l| l.trim())
                .collect();
            out.push(block.join("\n"));
        } else {
            out.push(rest.to_owned());
        }
    }
    assert_eq!(out.len(), alert_names().len(), "one expr per alert");
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every PromQL string of the dashboard: panel targets and query variables.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard(), &mut out);
    out
}

#[test]
fn the_dashboard_is_importable_grafana_json() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{}",
        d["schemaVersion"]
    );
    assert!(d["uid"].is_string() && d["title"].is_string());
    assert!(
        d["id"].is_null(),
        "an imported dashboard gets its id from Grafana"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {vars:?}"
    );
    let mut ids = BTreeSet::new();
    let mut targets = 0;
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(
            w > 0 && x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some(),
            "{title}: {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let ts = p["targets"].as_array().expect("targets");
        assert!(!ts.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in ts {
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: duplicate refId"
            );
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("sluice_")),
                "{title}: {t}"
            );
            targets += 1;
        }
    }
    assert!(targets >= 20, "{targets} queries");
}

#[test]
fn the_docs_point_at_the_files_and_name_every_alert() {
    let docs = read("docs/operations.md");
    for path in [RULES, RULE_TESTS, DASHBOARD, "promtool test rules"] {
        assert!(
            docs.contains(path),
            "docs/operations.md does not mention {path}"
        );
    }
    for name in alert_names() {
        assert!(
            docs.contains(&name),
            "docs/operations.md does not name {name}"
        );
    }
    // The file is the one copy of the rules: the docs quote none that could drift.
    assert!(
        !docs.contains("- alert:"),
        "docs/operations.md copies rules; point at {RULES}"
    );
}

/// One label matcher of a selector: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// One vector selector of `sluice_*`: its name, matchers, and whether `rate()`,
/// `irate()` or `increase()` takes it directly.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
    rated: bool,
}

/// The `sluice_*` selectors of a PromQL expression (enough PromQL for these files).
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let quoted = |i: usize| {
        let end = expr[i + 1..].find('"').expect("closing quote") + i + 1;
        (expr[i + 1..end].to_owned(), end + 1)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            i = quoted(i).1;
            continue;
        }
        if !(ident(b[i]) && (i == 0 || !ident(b[i - 1]))) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && ident(b[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !name.starts_with("sluice_") {
            continue;
        }
        let before = expr[..start].trim_end();
        let rated = ["rate(", "increase("].iter().any(|f| before.ends_with(f));
        let mut matchers = Vec::new();
        let mut j = skip_ws(i);
        if j < b.len() && b[j] == b'{' {
            j = skip_ws(j + 1);
            while b[j] != b'}' {
                let ls = j;
                while ident(b[j]) {
                    j += 1;
                }
                let label = expr[ls..j].to_owned();
                j = skip_ws(j);
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| expr[j..].starts_with(op))
                    .unwrap_or_else(|| panic!("no matcher operator at {:?}", &expr[j..]));
                let (value, after) = quoted(skip_ws(j + op.len()));
                matchers.push(Matcher {
                    label,
                    op: op.to_owned(),
                    value,
                });
                j = skip_ws(after);
                if b[j] == b',' {
                    j = skip_ws(j + 1);
                }
            }
            i = j + 1;
        }
        out.push(Selector {
            name: name.to_owned(),
            matchers,
            rated,
        });
    }
    out
}

/// One sample of a scrape: its name and labels.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples and the `# TYPE` of each family of a text exposition.
fn parse_scrape(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                types.insert(n.to_owned(), k.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line");
        let mut labels = BTreeMap::new();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').expect("closing brace")];
            // Label values here carry no `",` (image references, host names, words).
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
            }
        }
        samples.push(Sample {
            name: line[..name_end].to_owned(),
            labels,
        });
    }
    (samples, types)
}

/// Whether `m` holds for `value` (`""` for a label the sample lacks). Regular expressions
/// are limited to alternations of plain words, which is all these files use.
fn holds(m: &Matcher, value: &str) -> bool {
    let words = || {
        m.value.split('|').inspect(|w| {
            assert!(
                w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:./-".contains(c)),
                "matcher {m:?}: only alternations of words are supported"
            );
        })
    };
    match m.op.as_str() {
        "=" => value == m.value,
        "!=" => value != m.value,
        "=~" => words().any(|w| w == value),
        "!~" => !words().any(|w| w == value),
        op => panic!("operator {op}"),
    }
}

/// Labels Prometheus adds to every series of a scrape target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// What `text` lacks for `sel`: its family, the right type, or a sample it selects.
fn problems(sel: &Selector, samples: &[Sample], types: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| sel.name.strip_suffix(s))
        .filter(|b| types.get(*b).is_some_and(|t| t == "histogram"));
    let family = base.unwrap_or(&sel.name);
    match types.get(family).map(String::as_str) {
        None => out.push(format!("{family}: not exported")),
        Some("histogram") if base.is_none() => {
            out.push(format!(
                "{}: a histogram is read as _bucket, _sum or _count",
                sel.name
            ));
        }
        Some("gauge") if sel.rated => {
            out.push(format!("{}: rate()/increase() of a gauge", sel.name))
        }
        _ => {}
    }
    let of_name: Vec<&Sample> = samples.iter().filter(|s| s.name == sel.name).collect();
    // `job` and `instance` are the scrape target's, added by Prometheus.
    let own: Vec<&Matcher> = sel
        .matchers
        .iter()
        .filter(|m| !TARGET_LABELS.contains(&m.label.as_str()))
        .collect();
    // Grafana variables (`$host`) match whatever the dashboard offers.
    let fixed: Vec<&Matcher> = own
        .iter()
        .copied()
        .filter(|m| !m.value.contains('$'))
        .collect();
    for m in &own {
        if !of_name.iter().any(|s| s.labels.contains_key(&m.label)) {
            out.push(format!("{}: no label {}", sel.name, m.label));
        }
    }
    let selected = of_name.iter().any(|s| {
        fixed
            .iter()
            .all(|m| holds(m, s.labels.get(&m.label).map_or("", String::as_str)))
    });
    if !selected {
        out.push(format!("{} {:?}: selects no series", sel.name, fixed));
    }
    // Each value a rule or panel names is there from the start (exported at zero), so
    // `increase()` sees its first change; only what a registry's answer creates is not.
    for m in fixed.iter().filter(|m| m.op == "=" || m.op == "=~") {
        for word in m.value.split('|') {
            let seen = of_name
                .iter()
                .any(|s| s.labels.get(&m.label).is_some_and(|v| v == word));
            if !seen && !CREATED_BY_AN_ANSWER.contains(&(sel.name.as_str(), &m.label, word)) {
                out.push(format!(
                    "{}: no series with {}=\"{word}\"",
                    sel.name, m.label
                ));
            }
        }
    }
    out
}

/// Label values that exist only once something answered: a registry that needs the GET
/// fallback (the local one answers HEAD).
const CREATED_BY_AN_ANSWER: [(&str, &str, &str); 1] =
    [("sluice_registry_requests_total", "kind", "get")];

/// The daemon of these checks: one workspace whose image is in the local registry (so
/// the watcher probes it), and a webhook sink (so the notifier's counters exist).
async fn daemon_with_a_tracked_image_and_a_sink() -> (crate::reconciler::Env, Daemon) {
    let mut e = crate::reconciler::env("mon").await;
    e.fixture("good", "stable");
    let config = e.dir.path().join("sluice.toml");
    // Port 9 (discard) is closed here: deliveries fail, which the counters also show.
    std::fs::write(
        &config,
        "[notifications]\npoll_interval = \"200ms\"\nretries = 0\n\n\
         [[notifications.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let mut env: Vec<(&str, &str)> = crate::reconciler::TEST_ENV.to_vec();
    env.push(("SLUICE_CONFIG", &config));
    let d = Daemon::start(e.dir.path(), &env);
    (e, d)
}

#[tokio::test]
async fn every_series_the_rules_and_dashboard_select_is_exported_by_a_running_daemon() {
    let mut wanted: Vec<(String, Selector)> = Vec::new();
    for expr in rule_exprs().iter().chain(dashboard_exprs().iter()) {
        let found = selectors(expr);
        assert!(!found.is_empty(), "no sluice metric in {expr}");
        wanted.extend(found.into_iter().map(|s| (expr.clone(), s)));
    }
    let names: BTreeSet<&str> = wanted.iter().map(|(_, s)| s.name.as_str()).collect();
    for name in [
        "sluice_rollout_transitions_total",
        "sluice_workspaces",
        "sluice_image_last_probe_success_timestamp_seconds",
        "sluice_registry_requests_total",
        "sluice_notifications_total",
        // The HA and many-hosts alerts' metrics need no such setup to be checked here:
        // a plain daemon exports `sluice_leader` (1 on SQLite) and the heartbeat age of
        // its built-in host, whose in-process agent heartbeats like any other.
        "sluice_leader",
        "sluice_agent_heartbeat_age_seconds",
        "sluice_update_downtime_seconds_bucket",
        "sluice_controller_tick_seconds_bucket",
    ] {
        assert!(names.contains(name), "the parser missed {name}: {names:?}");
    }

    let (_env, daemon) = daemon_with_a_tracked_image_and_a_sink().await;
    // The watcher probes the new workspace's image within its first passes.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (text, missing) = loop {
        let text = reqwest::get(daemon.url("/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body");
        let (samples, types) = parse_scrape(&text);
        let missing: BTreeSet<String> = wanted
            .iter()
            .flat_map(|(expr, s)| {
                problems(s, &samples, &types)
                    .into_iter()
                    .map(move |p| format!("{p}\n    in {expr}"))
            })
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (text, missing);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "the rules or the dashboard select what the daemon does not export:\n{}\n\n/metrics:\n{text}",
        missing.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    // And Prometheus's own parser and linter accept the exposition as it is.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write the scrape to promtool");
    let out = lint.wait_with_output().expect("promtool check metrics");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
