//! The architecture invariants of `ARCHITECTURE.md`, checked against the sources.
//!
//! Each test reads `src/` as text and fails, naming the file and line, when a rule is
//! broken. They are deliberately plain string scans: a rule a reader can check with
//! `grep` is one a newcomer can keep.

use std::path::{Path, PathBuf};

/// One source file: its path from the repository root (`src/...`) and its text with any
/// trailing `#[cfg(test)]` module cut off (unit tests may use what production code may
/// not, e.g. `Utc::now()` to build fixtures).
struct Source {
    rel: String,
    production: String,
    whole: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Unit-test files, and the test doubles compiled only with `cfg(test)` or the
/// `test-support` feature (see `in_memory_fakes_are_compiled_only_for_tests`).
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("_tests.rs")
        || rel.ends_with("/tests.rs")
        || rel.ends_with("/fake.rs")
        || rel == "src/runtime/contract.rs"
}

fn production_part(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                next.trim_start().starts_with("mod ") || next.contains("#[path")
            })
        {
            // The test module (and everything after it) is not production code.
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = rel(&path);
            let whole = std::fs::read_to_string(&path).expect("read source");
            let production = if is_test_file(&rel) {
                String::new()
            } else {
                production_part(&whole)
            };
            out.push(Source {
                rel,
                production,
                whole,
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .expect("under the root")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every line of `text` containing one of `needles`, as `file:line: text`.
fn hits(rel: &str, text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(n, l)| format!("{rel}:{}: {}", n + 1, l.trim()))
        .collect()
}

fn assert_none(offenders: &[String], rule: &str) {
    assert!(offenders.is_empty(), "{rule}:\n{}", offenders.join("\n"));
}

/// The pure core: state machines, planners and schedules. Listed by path so the list
/// itself fails when a file moves without the invariant following it.
const PURE_CORE: &[&str] = &[
    "src/domain/",
    "src/rollout/machine.rs",
    "src/rollout/plan.rs",
    "src/rollout/plan_waves.rs",
    "src/rollout/hosts.rs",
    "src/rollout/decide/",
    "src/rollout/targets.rs",
    "src/rollout/strategy.rs",
    "src/rollout/analysis.rs",
    "src/reconciler/phases.rs",
    "src/watcher/schedule.rs",
    "src/snapshot/retention.rs",
];

#[test]
fn the_pure_core_performs_no_io_and_reads_no_clock() {
    let all = sources();
    let mut offenders = Vec::new();
    for path in PURE_CORE {
        let matching: Vec<&Source> = all.iter().filter(|s| s.rel.starts_with(path)).collect();
        assert!(
            !matching.is_empty(),
            "{path} is listed as pure core but does not exist: update this list and ARCHITECTURE.md"
        );
        for s in matching {
            offenders.extend(hits(
                &s.rel,
                &s.production,
                &[
                    "tokio::",
                    "sqlx::",
                    "bollard::",
                    "reqwest::",
                    "hyper::",
                    "std::fs",
                    "std::net",
                    "std::process",
                    "Store,",
                    "Store}",
                    "store::Store",
                    "StoreError",
                    "crate::runtime",
                    "SystemTime::now",
                    "Utc::now",
                    "Local::now",
                    "Instant::now",
                    "async fn",
                ],
            ));
        }
    }
    assert_none(
        &offenders,
        "the pure core (ARCHITECTURE.md) performs no I/O and reads no clock; pass `now` in",
    );
}

#[test]
fn sql_lives_only_in_the_store() {
    const SQL: &[&str] = &[
        "\"SELECT ",
        "\"INSERT INTO",
        "\"UPDATE ",
        "\"DELETE FROM",
        "\"CREATE TABLE",
        "\"ALTER TABLE",
        "\"PRAGMA",
        "sqlx::query",
    ];
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !s.rel.starts_with("src/store/"))
        .flat_map(|s| hits(&s.rel, &s.whole, SQL))
        .collect();
    assert_none(
        &offenders,
        "SQL belongs in src/store/ (tests included: go through a store function)",
    );
}

#[test]
fn only_the_reconciler_and_the_runtime_speak_docker() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !s.rel.starts_with("src/runtime/") && !s.rel.starts_with("src/reconciler/"))
        .flat_map(|s| hits(&s.rel, &s.production, &["bollard"]))
        .collect();
    assert_none(
        &offenders,
        "only src/reconciler/ and src/runtime/ may use bollard; others go through ContainerRuntime",
    );
}

#[test]
fn wall_clock_time_comes_from_the_clock() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| s.rel != "src/clock.rs")
        .flat_map(|s| {
            hits(
                &s.rel,
                &s.production,
                &["Utc::now", "SystemTime::now", "Local::now"],
            )
        })
        .collect();
    assert_none(
        &offenders,
        "read the time from the one `Clock` (src/clock.rs), adapters included",
    );
}

#[test]
fn the_controller_never_calls_the_operator_layer() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| s.rel.starts_with("src/rollout/controller"))
        .flat_map(|s| hits(&s.rel, &s.production, &["ops::", "Ops", ".ops"]))
        .collect();
    assert_none(
        &offenders,
        "the controller reads, decides and writes through the store; it never calls rollout::ops",
    );
}

#[test]
fn http_lives_only_in_the_api() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| {
            s.rel.starts_with("src/rollout/")
                || s.rel.starts_with("src/store/")
                || s.rel.starts_with("src/domain/")
                || s.rel.starts_with("src/reconciler/")
        })
        .flat_map(|s| {
            hits(
                &s.rel,
                &s.production,
                &["axum", "http_status", "StatusCode", "ApiError"],
            )
        })
        .collect();
    assert_none(
        &offenders,
        "HTTP status codes and error codes live only in src/api/",
    );
}

#[test]
fn every_served_route_comes_from_the_documented_table() {
    // The router is built only by walking `api::routes::all()`, the table the OpenAPI
    // document is built from: no route is added beside it.
    let mut offenders = Vec::new();
    for s in sources() {
        for hit in hits(
            &s.rel,
            &s.production,
            &[
                ".route(",
                ".nest(",
                ".route_service(",
                ".nest_service(",
                ".fallback_service(",
            ],
        ) {
            let from_table = (s.rel == "src/api/mod.rs"
                && hit.contains(".route(op.path, handler)"))
                || (s.rel == "src/ui/mod.rs"
                    && hit.contains(".route(page.path, (page.handler)())"));
            if !from_table {
                offenders.push(hit);
            }
        }
    }
    assert_none(
        &offenders,
        "routes are added only from api::routes::all() (src/api/mod.rs), so each is documented",
    );
    let api = std::fs::read_to_string(root().join("src/api/mod.rs")).unwrap();
    assert!(
        api.contains("for op in routes::all()"),
        "src/api/mod.rs builds the router from the table"
    );
}

#[test]
fn the_store_speaks_domain_types_not_status_strings() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| s.rel.starts_with("src/store/"))
        .flat_map(|s| {
            hits(
                &s.rel,
                &s.production,
                &[
                    "pub status: String",
                    "pub state: String",
                    "pub phase: String",
                    "pub health: String",
                    "pub kind: String",
                    "pub outcome: String",
                    "status: Option<&'static str>",
                    "status: Option<&str>",
                ],
            )
        })
        .collect();
    assert_none(
        &offenders,
        "store rows carry domain enums (src/domain/); status words exist only in SQL",
    );
}

#[test]
fn every_store_file_says_what_it_holds_and_who_writes_it() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| s.rel.starts_with("src/store/") && !is_test_file(&s.rel))
        .filter(|s| {
            let header: String = s
                .whole
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            header.is_empty() || !header.contains("writ")
        })
        .map(|s| s.rel.clone())
        .collect();
    assert_none(
        &offenders,
        "each store file opens with a //! header naming its table(s) and who writes them",
    );
}

/// Source files a person reads in one sitting. Unit-test files may run longer.
const MAX_LINES: usize = 400;

#[test]
fn no_source_file_is_longer_than_a_sitting() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !is_test_file(&s.rel))
        .filter_map(|s| {
            let n = s.production.lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", s.rel))
        })
        .collect();
    assert_none(
        &offenders,
        &format!("split files over {MAX_LINES} lines (tests excluded) by concern"),
    );
}

/// Files that may sleep, each with why: a sleep inside one step, not a loop's schedule.
/// Every long-lived loop is a `task::Task` run by `src/task/`, which owns all waiting.
const MAY_SLEEP: &[(&str, &str)] = &[
    (
        "src/task/",
        "the one driver: wake-ups, requeues and backoff",
    ),
    (
        "src/reconciler/saga",
        "retries of one update step while Docker is briefly away",
    ),
    (
        "src/reconciler/health.rs",
        "polls one health gate until it passes or times out",
    ),
    (
        "src/runtime/docker_exec.rs",
        "polls one exec (a command probe) until it exits or times out",
    ),
    ("src/notify/", "retries one webhook delivery with backoff"),
    (
        "src/fault.rs",
        "test build only: holds a process at a fault point",
    ),
    ("src/cli/", "the client: `rollout watch` redraws"),
    (
        "src/api/workspaces.rs",
        "a delete waits, bounded, for the reconciler to record the retirement",
    ),
    (
        "src/startup.rs",
        "the HTTP drain deadline and the progress log while stopping",
    ),
    (
        "src/api/event_stream.rs",
        "one event stream's connection polls the audit table while its client listens",
    ),
];

#[test]
fn only_the_task_driver_schedules_loops() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !MAY_SLEEP.iter().any(|(p, _)| s.rel.starts_with(p)))
        .flat_map(|s| {
            hits(
                &s.rel,
                &s.production,
                &["time::sleep", "sleep_until", "time::interval"],
            )
        })
        .collect();
    assert_none(
        &offenders,
        "long-lived loops are task::Task impls run by src/task/; no hand-written sleep loops",
    );
}

#[test]
fn the_code_map_names_every_folder() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            let rel = rel(&path);
            if path.is_dir() {
                if !map.contains(&format!("`{rel}/`")) {
                    missing.push(format!("{rel}/"));
                }
                stack.push(path);
            } else if dir == root().join("src") && !map.contains(&format!("`{rel}`")) {
                missing.push(rel);
            }
        }
    }
    missing.sort();
    assert_none(
        &missing,
        "ARCHITECTURE.md's code map must name every folder under src/ and every file in src/",
    );
}

#[test]
fn in_memory_fakes_are_compiled_only_for_tests() {
    let mut offenders = Vec::new();
    for module in ["src/runtime/mod.rs", "src/registry/mod.rs"] {
        let text = std::fs::read_to_string(root().join(module)).expect("read module");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let declares_fake = (t.starts_with("mod fake") || t.starts_with("pub mod fake"))
                || (t.starts_with("mod contract") || t.starts_with("pub mod contract"));
            let guarded = i > 0 && lines[i - 1].contains("feature = \"test-support\"");
            if declares_fake && !guarded {
                offenders.push(format!("{module}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    if manifest
        .lines()
        .any(|l| l.trim_start().starts_with("default") && l.contains("test-support"))
    {
        offenders.push("Cargo.toml: test-support is a default feature".to_owned());
    }
    assert_none(
        &offenders,
        "fakes and contract suites sit behind cfg(any(test, feature = \"test-support\"))",
    );
}
