//! Shell completions (clap_complete) and man pages (clap_mangen), generated
//! from the clap definitions of both binaries, and where a user's shell and
//! `man` look for them (`kitty-syncd install --completions --man` puts them
//! there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    fn generator(self) -> clap_complete::Shell {
        match self {
            Self::Bash => clap_complete::Shell::Bash,
            Self::Zsh => clap_complete::Shell::Zsh,
            Self::Fish => clap_complete::Shell::Fish,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bash => "bash",
            Self::Zsh => "zsh",
            Self::Fish => "fish",
        }
    }
}

/// The completion script of `cmd` (completing the binary named like it).
pub fn completions(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell.generator(), &mut cmd, name.clone(), &mut out);
    if shell == Shell::Bash && name.contains('-') {
        out = fix_bash_hyphenated_bin(&out, &name);
    }
    out
}

/// clap_complete's bash script spells the state of a hyphenated binary two
/// ways (clap-rs/clap#6421, open): the loop that walks the words writes
/// `kitty__sync__subcmd__tail`, the arms that complete each subcommand match
/// `kitty__subcmd__sync__subcmd__tail`, so nothing after a subcommand ever
/// completes. The arms are the only place the second spelling occurs.
fn fix_bash_hyphenated_bin(script: &[u8], bin: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    text.replace(&bin.replace('-', "__subcmd__"), &bin.replace('-', "__"))
        .into_bytes()
}

/// The man page (section 1, roff) of `cmd`.
pub fn man(cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .expect("rendering into memory cannot fail");
    out
}

fn print(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

/// `<binary> completions <shell>`.
pub fn print_completions<C: CommandFactory>(shell: Shell) -> ExitCode {
    print(&completions(C::command(), shell))
}

/// `<binary> man`.
pub fn print_man<C: CommandFactory>() -> ExitCode {
    print(&man(C::command()))
}

/// `$XDG_DATA_HOME`, else `~/.local/share` (a relative value is ignored, as
/// the XDG rules say).
fn data_home(user_home: &Path, xdg_data_home: Option<&Path>) -> PathBuf {
    xdg_data_home
        .filter(|p| p.is_absolute())
        .map_or_else(|| user_home.join(".local/share"), Path::to_path_buf)
}

fn config_home(user_home: &Path, xdg_config_home: Option<&Path>) -> PathBuf {
    xdg_config_home
        .filter(|p| p.is_absolute())
        .map_or_else(|| user_home.join(".config"), Path::to_path_buf)
}

/// Where each shell loads a user's completions from:
/// - bash (bash-completion 2): `<data>/bash-completion/completions/<bin>`, loaded on demand;
/// - zsh: `<data>/zsh/site-functions/_<bin>`, once that directory is in `fpath`;
/// - fish: `<config>/fish/completions/<bin>.fish`, loaded on demand.
pub fn completion_path(
    user_home: &Path,
    xdg_data_home: Option<&Path>,
    xdg_config_home: Option<&Path>,
    shell: Shell,
    bin: &str,
) -> PathBuf {
    match shell {
        Shell::Bash => data_home(user_home, xdg_data_home)
            .join("bash-completion/completions")
            .join(bin),
        Shell::Zsh => data_home(user_home, xdg_data_home)
            .join("zsh/site-functions")
            .join(format!("_{bin}")),
        Shell::Fish => config_home(user_home, xdg_config_home)
            .join("fish/completions")
            .join(format!("{bin}.fish")),
    }
}

/// `<data>/man/man1/<bin>.1`: `man` finds it when `~/.local/bin` is on PATH
/// (man-db and macOS derive `../share/man` from each PATH entry).
pub fn man_path(user_home: &Path, xdg_data_home: Option<&Path>, bin: &str) -> PathBuf {
    data_home(user_home, xdg_data_home)
        .join("man/man1")
        .join(format!("{bin}.1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_xdg() {
        let home = Path::new("/home/a");
        assert_eq!(
            completion_path(home, None, None, Shell::Bash, "kitty-sync"),
            Path::new("/home/a/.local/share/bash-completion/completions/kitty-sync")
        );
        assert_eq!(
            completion_path(home, Some(Path::new("/x")), None, Shell::Zsh, "kitty-sync"),
            Path::new("/x/zsh/site-functions/_kitty-sync")
        );
        assert_eq!(
            completion_path(
                home,
                None,
                Some(Path::new("rel")),
                Shell::Fish,
                "kitty-syncd"
            ),
            Path::new("/home/a/.config/fish/completions/kitty-syncd.fish")
        );
        assert_eq!(
            man_path(home, None, "kitty-syncd"),
            Path::new("/home/a/.local/share/man/man1/kitty-syncd.1")
        );
    }

    #[test]
    fn generated_from_the_clap_definition() {
        let bash =
            String::from_utf8(completions(crate::client_cli::Cli::command(), Shell::Bash)).unwrap();
        for word in ["kitty-sync", "emit", "tail", "--since-start", "completions"] {
            assert!(bash.contains(word), "{word}");
        }
        let page = String::from_utf8(man(crate::client_cli::Cli::command())).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..80.min(page.len())]);
        assert!(page.contains(".TH kitty-sync 1"), "{page}");
        assert!(page.contains("tail"));
    }
}
