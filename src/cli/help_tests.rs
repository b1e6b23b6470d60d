//! Every command of the CLI, at every level, says in one line what it does and shows an
//! example: a new subcommand without them fails here.

use clap::CommandFactory as _;

use super::Cli;

/// Every command under `cmd`, with its full name (`sluice rollout list`).
fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands() {
        let name = format!("{prefix} {}", sub.get_name());
        out.push((name.clone(), sub.clone()));
        walk(sub, &name, out);
    }
}

#[test]
fn every_subcommand_has_a_one_line_about_and_an_example() {
    let root = Cli::command();
    let mut all = Vec::new();
    walk(&root, "sluice", &mut all);
    assert!(
        all.len() > 40,
        "the walk reaches nested commands: {}",
        all.len()
    );
    let mut missing = Vec::new();
    for (name, cmd) in std::iter::once(("sluice".to_owned(), root.clone())).chain(all) {
        let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
        if about.trim().is_empty() || about.trim().contains('\n') {
            missing.push(format!("{name}: no one-line about ({about:?})"));
        }
        let after = cmd
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        let example = after.starts_with("Example:") || after.starts_with("Examples:");
        // The example runs the command it documents.
        if !example || !runs(&after, &name) {
            missing.push(format!("{name}: no example of itself ({after:?})"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Whether an example line runs `name`, with global options between `sluice` and the
/// command (`sluice --config sluice.toml config check`).
fn runs(after: &str, name: &str) -> bool {
    let words: Vec<&str> = name.split(' ').skip(1).collect();
    after.lines().any(|line| {
        let line = line.trim();
        line.starts_with("sluice ") && {
            let rest: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with("--") && !w.contains('.'))
                .collect();
            rest.starts_with(&words)
        }
    })
}

#[test]
fn help_shows_the_about_and_the_example() {
    let mut root = Cli::command();
    let rollout = root.find_subcommand_mut("rollout").expect("rollout");
    let list = rollout.find_subcommand_mut("list").expect("rollout list");
    let help = list.render_help().to_string();
    assert!(help.contains("List rollouts"), "{help}");
    assert!(help.contains("Example:\n  sluice rollout list"), "{help}");
}
