//! Issue 11: shell completions and man pages of both binaries, generated from
//! their clap definitions. bash really completes with the scripts (subcommands
//! and, after one, its options); the man pages render with man(1). Where zsh,
//! fish or man are not installed, that part says so and is skipped.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kitty_tests::harness::*;

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The completion script `<bin> completions <shell>` prints.
fn script(home: &TestHome, bin: &Path, shell: &str) -> String {
    let mut cmd = home.command(bin);
    cmd.args(["completions", shell]);
    let out = run_with_guard(cmd, None);
    out.assert_code(0);
    assert!(!out.stdout.is_empty());
    out.stdout
}

/// What bash offers for the last of `words` with the script loaded, as a
/// user's Tab would ask for it.
fn bash_complete(home: &TestHome, script_path: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         f=$(complete -p {bin} | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" {bin} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script_path.display(),
        bin = words[0],
        words = quoted.join(" "),
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &program])
        .current_dir(home.root());
    let out = run_with_guard(cmd, None);
    out.assert_code(0);
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_subcommands_and_their_options_for_both_binaries() {
    let home = TestHome::new();
    for (bin, cases) in [
        (
            client_bin(),
            vec![
                (vec!["kitty-sync", "ta"], vec!["tail"]),
                (vec!["kitty-sync", "tail", "--s"], vec!["--since-start"]),
                (vec!["kitty-sync", "queue", "ret"], vec!["retry-dead"]),
                (
                    vec!["kitty-sync", "emit", "--payload"],
                    vec!["--payload", "--payload-file"],
                ),
                (vec!["kitty-sync", "completions", "fi"], vec!["fish"]),
            ],
        ),
        (
            daemon_bin(),
            vec![
                (vec!["kitty-syncd", "ins"], vec!["install"]),
                (
                    vec!["kitty-syncd", "install", "--comp"],
                    vec!["--completions"],
                ),
            ],
        ),
    ] {
        let text = script(&home, &bin, "bash");
        let path = home.root().join(format!(
            "{}.bash",
            bin.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&path, &text).unwrap();
        let mut check = Command::new("bash");
        check.arg("-n").arg(&path);
        run_with_guard(check, None).assert_code(0);
        for (words, want) in cases {
            let got = bash_complete(&home, &path, &words);
            assert_eq!(got, want, "completing {words:?}");
        }
    }
}

#[test]
fn zsh_and_fish_scripts_are_made_for_both_binaries() {
    let home = TestHome::new();
    for bin in [client_bin(), daemon_bin()] {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let zsh = script(&home, &bin, "zsh");
        assert!(zsh.starts_with(&format!("#compdef {name}")), "{name}");
        let fish = script(&home, &bin, "fish");
        assert!(fish.contains(&format!("complete -c {name}")), "{name}");
        for (shell, text) in [("zsh", &zsh), ("fish", &fish)] {
            if !installed(shell) {
                eprintln!(
                    "SKIPPED: {shell} is not installed; its script for {name} was not parsed"
                );
                continue;
            }
            let path = home.root().join(format!("{name}.{shell}"));
            std::fs::write(&path, text).unwrap();
            let mut cmd = Command::new(shell);
            cmd.arg("-n").arg(&path);
            run_with_guard(cmd, None).assert_code(0);
        }
    }
}

#[test]
fn man_pages_render_and_name_every_subcommand() {
    let home = TestHome::new();
    for (bin, about, subcommands) in [
        (
            client_bin(),
            "Hands spec-kitty events to kitty-syncd",
            &[
                "emit",
                "status",
                "tail",
                "sync",
                "queue",
                "completions",
                "man",
            ][..],
        ),
        (
            daemon_bin(),
            "Owns spec-kitty's Lamport clock",
            &[
                "run",
                "status",
                "install",
                "uninstall",
                "completions",
                "man",
            ][..],
        ),
    ] {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let mut cmd = home.command(&bin);
        cmd.arg("man");
        let page = run_with_guard(cmd, None);
        page.assert_code(0);
        assert!(page.stdout.contains(&format!(".TH {name} 1")), "{name}");
        if !installed("man") {
            eprintln!("SKIPPED: man is not installed; the page of {name} was not rendered");
            continue;
        }
        let mut man = Command::new("man");
        man.args(["-l", "-"])
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = man.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.stdout.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NAME") && text.contains(about), "{text}");
        for sub in subcommands {
            assert!(
                text.contains(&format!("{name}-{sub}(1)")),
                "{name}: {sub} missing:\n{text}"
            );
        }
    }
}
