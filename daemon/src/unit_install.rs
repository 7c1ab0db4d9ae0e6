//! `kitty-syncd install` and `uninstall`: render the systemd user units or the
//! launchd agent from the templates in `systemd/` and `launchd/` with this
//! binary's real path and this user's home, write them, and have the service
//! manager enable and start them; with `--completions` and `--man`, also the
//! shell completions and man pages of both binaries ([`kitty_cli_common::docs`]).
//! `--dry-run` prints exactly what would be written and run.

use std::path::{Path, PathBuf};
use std::process::Command;

use kitty_proto::home::Home;
use kitty_proto::service::{self as names, LAUNCHD_LABEL, SYSTEMD_SERVICE, SYSTEMD_SOCKET};

const SERVICE_TEMPLATE: &str = include_str!("../../systemd/kitty-syncd.service");
const SOCKET_TEMPLATE: &str = include_str!("../../systemd/kitty-syncd.socket");
const PLIST_TEMPLATE: &str = include_str!("../../launchd/dev.spec-kitty.kitty-syncd.plist");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Systemd,
    Launchd,
}

impl Kind {
    pub fn for_this_os() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Self::Systemd => "systemctl",
            Self::Launchd => "launchctl",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Systemd => "systemd user service",
            Self::Launchd => "launchd agent",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "{tool} is not on PATH, so the {kind} cannot be {verb}; nothing was changed. \
             `kitty-syncd install --dry-run` shows the files, and `kitty-syncd run` starts the daemon by hand"
    )]
    NoTool {
        tool: &'static str,
        kind: &'static str,
        verb: &'static str,
    },
    /// Something about this machine that the service cannot be made for.
    #[error("{0}")]
    Path(String),
    #[error("cannot find this binary's path")]
    Binary(#[source] std::io::Error),
    #[error(transparent)]
    Home(#[from] kitty_proto::home::HomeError),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

/// What this machine and user look like, for rendering.
#[derive(Debug, Clone)]
pub struct Context {
    pub binary: PathBuf,
    pub user_home: PathBuf,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub state: Home,
    pub socket: PathBuf,
    pub uid: u32,
}

impl Context {
    pub fn from_env() -> Result<Self, ServiceError> {
        let binary = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(ServiceError::Binary)?;
        let user_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| ServiceError::Path("HOME is not set".into()))?;
        let state = Home::from_env()?;
        let socket = state.socket_path()?;
        Ok(Self {
            binary,
            user_home,
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
            xdg_data_home: std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            state,
            socket,
            uid: kitty_store::sys::uid(),
        })
    }
}

/// Directories to create (0700), files to write (or remove) and commands to
/// run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<(PathBuf, String)>,
    /// Completions and man pages: written (or removed) with the files, and
    /// named rather than shown in a dry run.
    pub extras: Vec<Extra>,
    pub commands: Vec<Vec<String>>,
}

/// What to install besides the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    pub completions: bool,
    pub man: bool,
}

impl Extras {
    pub const ALL: Extras = Extras {
        completions: true,
        man: true,
    };
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub what: String,
}

/// The completions and man pages of both binaries that `want` asks for.
fn extra_files(ctx: &Context, want: Extras) -> Vec<Extra> {
    use kitty_cli_common::docs::{self, Shell};
    let commands = [
        <kitty_cli_common::client_cli::Cli as clap::CommandFactory>::command(),
        <crate::cli::Cli as clap::CommandFactory>::command(),
    ];
    let (data, config) = (ctx.xdg_data_home.as_deref(), ctx.xdg_config_home.as_deref());
    let mut out = Vec::new();
    for cmd in commands {
        let bin = cmd.get_name().to_owned();
        if want.completions {
            for shell in Shell::ALL {
                out.push(Extra {
                    path: docs::completion_path(&ctx.user_home, data, config, shell, &bin),
                    bytes: docs::completions(cmd.clone(), shell),
                    what: format!("{} completions of {bin}", shell.name()),
                });
            }
        }
        if want.man {
            out.push(Extra {
                path: docs::man_path(&ctx.user_home, data, &bin),
                bytes: docs::man(cmd.clone()),
                what: format!("man page of {bin}"),
            });
        }
    }
    out
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn unit_dir(ctx: &Context) -> PathBuf {
    names::systemd_user_dir(&ctx.user_home, ctx.xdg_config_home.as_deref())
}

/// A path as a systemd unit may hold it: `%` doubled; whitespace, quotes and
/// backslashes refused rather than half-quoted.
fn systemd_path(p: &Path) -> Result<String, ServiceError> {
    let s = p
        .to_str()
        .ok_or_else(|| ServiceError::Path(format!("{} is not UTF-8", p.display())))?;
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(ServiceError::Path(format!(
            "{s} contains spaces, quotes or backslashes, which a systemd unit cannot hold safely; \
             move it, or set SPEC_KITTY_HOME / KITTY_SYNCD_SOCKET to a plain path"
        )));
    }
    Ok(s.replace('%', "%%"))
}

/// The directories `PrivateTmp=yes` replaces with empty private ones.
const PRIVATE_TMP_DIRS: &[&str] = &["/tmp", "/var/tmp"];

/// The first of `paths` that a private /tmp would hide from the service, with
/// symlinks in its existing part resolved (`/tmp` may be reached by another name).
fn under_tmp<'a>(paths: &[&'a Path]) -> Option<&'a Path> {
    let hidden = |q: &Path| PRIVATE_TMP_DIRS.iter().any(|t| q.starts_with(t));
    paths.iter().copied().find(|p| {
        let real = p.ancestors().find_map(|a| {
            let rest = p.strip_prefix(a).ok()?;
            a.canonicalize().ok().map(|c| c.join(rest))
        });
        hidden(p) || real.is_some_and(|r| hidden(&r))
    })
}

/// `PrivateTmp=yes`, or a comment saying why the unit goes without: with the
/// state directory under /tmp, `ReadWritePaths=` names a path that does not
/// exist in the private /tmp and the service fails with status 226/NAMESPACE.
fn private_tmp_line(ctx: &Context) -> String {
    match under_tmp(&[ctx.state.dir(), &ctx.socket, &ctx.binary]) {
        None => "PrivateTmp=yes".into(),
        Some(p) => format!(
            "# PrivateTmp= left out: {} is under a directory it would hide.",
            p.display()
        )
        .replace('%', "%%"),
    }
}

fn xml_escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn install_plan(kind: Kind, ctx: &Context, extras: Extras) -> Result<Plan, ServiceError> {
    let mut plan = service_plan(kind, ctx)?;
    plan.extras = extra_files(ctx, extras);
    Ok(plan)
}

fn service_plan(kind: Kind, ctx: &Context) -> Result<Plan, ServiceError> {
    match kind {
        Kind::Systemd => {
            let fill = |t: &str| -> Result<String, ServiceError> {
                Ok(t.replace("@BINARY@", &systemd_path(&ctx.binary)?)
                    .replace("@STATE_DIR@", &systemd_path(ctx.state.dir())?)
                    .replace("@SOCKET@", &systemd_path(&ctx.socket)?)
                    .replace("@PRIVATE_TMP@", &private_tmp_line(ctx)))
            };
            let dir = unit_dir(ctx);
            Ok(Plan {
                // ReadWritePaths= must exist before the first start.
                dirs: vec![ctx.state.dir().to_path_buf()],
                extras: vec![],
                files: vec![
                    (dir.join(SYSTEMD_SERVICE), fill(SERVICE_TEMPLATE)?),
                    (dir.join(SYSTEMD_SOCKET), fill(SOCKET_TEMPLATE)?),
                ],
                commands: vec![
                    cmd(&["systemctl", "--user", "daemon-reload"]),
                    cmd(&[
                        "systemctl",
                        "--user",
                        "enable",
                        "--now",
                        SYSTEMD_SOCKET,
                        SYSTEMD_SERVICE,
                    ]),
                ],
            })
        }
        Kind::Launchd => {
            let plist = names::launchd_plist(&ctx.user_home);
            let text = PLIST_TEMPLATE
                .replace("@BINARY@", &xml_escape(&ctx.binary))
                .replace("@STATE_DIR@", &xml_escape(ctx.state.dir()))
                .replace("@SOCKET@", &xml_escape(&ctx.socket))
                .replace(
                    "@LOG_DIR@",
                    &xml_escape(&names::launchd_log_dir(&ctx.user_home)),
                );
            let domain = format!("gui/{}", ctx.uid);
            Ok(Plan {
                dirs: vec![names::launchd_log_dir(&ctx.user_home)],
                extras: vec![],
                commands: vec![cmd(&[
                    "launchctl",
                    "bootstrap",
                    &domain,
                    &plist.to_string_lossy(),
                ])],
                files: vec![(plist, text)],
            })
        }
    }
}

/// Removes the service and whatever completions and man pages are there.
pub fn uninstall_plan(kind: Kind, ctx: &Context) -> Plan {
    let mut plan = uninstall_service_plan(kind, ctx);
    plan.extras = extra_files(ctx, Extras::ALL)
        .into_iter()
        .map(|e| Extra { bytes: vec![], ..e })
        .collect();
    plan
}

fn uninstall_service_plan(kind: Kind, ctx: &Context) -> Plan {
    match kind {
        Kind::Systemd => {
            let dir = unit_dir(ctx);
            Plan {
                dirs: vec![],
                extras: vec![],
                files: vec![
                    (dir.join(SYSTEMD_SERVICE), String::new()),
                    (dir.join(SYSTEMD_SOCKET), String::new()),
                ],
                commands: vec![
                    cmd(&[
                        "systemctl",
                        "--user",
                        "disable",
                        "--now",
                        SYSTEMD_SERVICE,
                        SYSTEMD_SOCKET,
                    ]),
                    cmd(&["systemctl", "--user", "daemon-reload"]),
                ],
            }
        }
        Kind::Launchd => Plan {
            dirs: vec![],
            extras: vec![],
            files: vec![(names::launchd_plist(&ctx.user_home), String::new())],
            commands: vec![cmd(&[
                "launchctl",
                "bootout",
                &format!("gui/{}/{LAUNCHD_LABEL}", ctx.uid),
            ])],
        },
    }
}

/// The dry-run text: every file with its content, then every command.
pub fn describe_install(plan: &Plan) -> String {
    let mut out = String::new();
    for dir in &plan.dirs {
        out.push_str(&format!("==> create {}\n", dir.display()));
    }
    for (path, text) in &plan.files {
        out.push_str(&format!("==> write {}\n{text}", path.display()));
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    for e in &plan.extras {
        out.push_str(&format!(
            "==> write {} ({}, {} bytes)\n",
            e.path.display(),
            e.what,
            e.bytes.len()
        ));
    }
    for c in &plan.commands {
        out.push_str(&format!("==> run {}\n", c.join(" ")));
    }
    out
}

pub fn describe_uninstall(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.commands {
        out.push_str(&format!("==> run {}\n", c.join(" ")));
    }
    for (path, _) in &plan.files {
        out.push_str(&format!("==> remove {}\n", path.display()));
    }
    for e in &plan.extras {
        out.push_str(&format!("==> remove {} (if there)\n", e.path.display()));
    }
    out
}

/// A completion script or man page: its directory made as the shell expects
/// it (mode 0755 by the umask: nothing secret), the file replaced whole.
fn write_extra(e: &Extra) -> Result<(), ServiceError> {
    let io = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| ServiceError::Io { what, path, source }
    };
    if let Some(dir) = e.path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let tmp = e.path.with_extension("kitty-tmp");
    std::fs::write(&tmp, &e.bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &e.path).map_err(io("write", &e.path))
}

fn require_tool(kind: Kind, verb: &'static str) -> Result<(), ServiceError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(kind.tool()).is_file()));
    if found {
        Ok(())
    } else {
        Err(ServiceError::NoTool {
            tool: kind.tool(),
            kind: kind.name(),
            verb,
        })
    }
}

fn run(c: &[String]) -> Result<(), ServiceError> {
    let out = Command::new(&c[0])
        .args(&c[1..])
        .output()
        .map_err(|source| ServiceError::Io {
            what: "run",
            path: c[0].clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(ServiceError::Command {
        command: c.join(" "),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

pub fn install(kind: Kind, ctx: &Context, extras: Extras) -> Result<String, ServiceError> {
    let plan = install_plan(kind, ctx, extras)?;
    require_tool(kind, "enabled")?;
    for dir in &plan.dirs {
        kitty_store::fsutil::ensure_private_dir(dir).map_err(|source| ServiceError::Io {
            what: "create",
            path: dir.display().to_string(),
            source,
        })?;
    }
    for (path, text) in &plan.files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
                what: "create",
                path: dir.display().to_string(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| ServiceError::Io {
            what: "write",
            path: path.display().to_string(),
            source,
        })?;
    }
    for e in &plan.extras {
        write_extra(e)?;
    }
    if kind == Kind::Launchd {
        // A loaded agent refuses a second bootstrap; unload it first, and
        // ignore the failure when it was not loaded.
        let _ = run(&uninstall_plan(kind, ctx).commands[0]);
    }
    for c in &plan.commands {
        run(c)?;
    }
    Ok(describe_install(&plan))
}

pub fn uninstall(kind: Kind, ctx: &Context) -> Result<String, ServiceError> {
    let plan = uninstall_plan(kind, ctx);
    require_tool(kind, "disabled")?;
    let mut failures = Vec::new();
    // Keep going past a failed command: the unit may be stopped already, and
    // the files should go either way. The queue and clock are never touched.
    for c in &plan.commands {
        if let Err(e) = run(c) {
            failures.push(kitty_cli_common::error_chain(&e));
        }
    }
    let extras = plan.extras.iter().map(|e| &e.path);
    for path in plan.files.iter().map(|(p, _)| p).chain(extras) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServiceError::Io {
                    what: "remove",
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    if !failures.is_empty() {
        return Err(ServiceError::Path(format!(
            "the files are removed, but the service manager reported: {}",
            failures.join("; ")
        )));
    }
    Ok(describe_uninstall(&plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> Context {
        Context {
            binary: PathBuf::from("/opt/kitty/bin/kitty-syncd"),
            user_home: dir.to_path_buf(),
            xdg_config_home: None,
            xdg_data_home: None,
            state: Home::new(dir.join(".spec-kitty")),
            socket: dir.join(".spec-kitty/kitty-syncd.sock"),
            uid: 501,
        }
    }

    #[test]
    fn systemd_units_are_filled() {
        let plan = install_plan(
            Kind::Systemd,
            &ctx(Path::new("/home/al%ice")),
            Extras::default(),
        )
        .unwrap();
        let (path, service) = &plan.files[0];
        assert_eq!(
            path,
            Path::new("/home/al%ice/.config/systemd/user/kitty-syncd.service")
        );
        assert!(service.contains("ExecStart=/opt/kitty/bin/kitty-syncd run"));
        assert!(service.contains("ReadWritePaths=/home/al%%ice/.spec-kitty"));
        assert!(service.contains("\nPrivateTmp=yes\n"), "{service}");
        assert!(!service.contains('@'), "{service}");
        assert_eq!(plan.dirs, vec![PathBuf::from("/home/al%ice/.spec-kitty")]);
        assert!(
            plan.files[1]
                .1
                .contains("ListenStream=/home/al%%ice/.spec-kitty/kitty-syncd.sock")
        );
    }

    #[test]
    fn a_state_dir_socket_or_binary_under_tmp_gets_no_private_tmp() {
        let directives = |c: &Context| -> Vec<String> {
            let plan = install_plan(Kind::Systemd, c, Extras::default()).unwrap();
            plan.files[0]
                .1
                .lines()
                .filter(|l| l.starts_with("PrivateTmp"))
                .map(str::to_owned)
                .collect()
        };
        let mut c = ctx(Path::new("/home/alice"));
        assert_eq!(directives(&c), vec!["PrivateTmp=yes"]);
        c.state = Home::new(PathBuf::from("/tmp/kitty-state"));
        assert!(directives(&c).is_empty());
        let service = &install_plan(Kind::Systemd, &c, Extras::default())
            .unwrap()
            .files[0]
            .1;
        assert!(service.contains("/tmp/kitty-state is under"), "{service}");
        let mut c = ctx(Path::new("/home/alice"));
        c.socket = PathBuf::from("/var/tmp/k.sock");
        assert!(directives(&c).is_empty());
        let mut c = ctx(Path::new("/home/alice"));
        c.binary = PathBuf::from("/tmp/bin/kitty-syncd");
        assert!(directives(&c).is_empty());
        // A name that merely begins with "tmp" is not under /tmp.
        c.binary = PathBuf::from("/tmpfoo/kitty-syncd");
        assert_eq!(directives(&c), vec!["PrivateTmp=yes"]);
    }

    #[test]
    fn completions_and_man_pages_of_both_binaries_go_where_the_shells_look() {
        let mut c = ctx(Path::new("/home/alice"));
        c.xdg_data_home = Some(PathBuf::from("/data"));
        let plan = install_plan(Kind::Systemd, &c, Extras::ALL).unwrap();
        let paths: Vec<String> = plan
            .extras
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/data/bash-completion/completions/kitty-sync",
                "/data/zsh/site-functions/_kitty-sync",
                "/home/alice/.config/fish/completions/kitty-sync.fish",
                "/data/man/man1/kitty-sync.1",
                "/data/bash-completion/completions/kitty-syncd",
                "/data/zsh/site-functions/_kitty-syncd",
                "/home/alice/.config/fish/completions/kitty-syncd.fish",
                "/data/man/man1/kitty-syncd.1",
            ]
        );
        assert!(plan.extras.iter().all(|e| !e.bytes.is_empty()));
        let only_man = install_plan(
            Kind::Systemd,
            &c,
            Extras {
                completions: false,
                man: true,
            },
        );
        assert_eq!(only_man.unwrap().extras.len(), 2);
        assert!(
            install_plan(Kind::Systemd, &c, Extras::default())
                .unwrap()
                .extras
                .is_empty()
        );
        // Uninstall takes away whatever of them is there.
        assert_eq!(uninstall_plan(Kind::Systemd, &c).extras.len(), 8);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let err = install_plan(
            Kind::Systemd,
            &ctx(Path::new("/home/a b")),
            Extras::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("spaces"), "{err}");
    }

    #[test]
    fn plist_is_valid_xml_with_every_key() {
        let plan = install_plan(
            Kind::Launchd,
            &ctx(Path::new("/Users/a&b")),
            Extras::default(),
        )
        .unwrap();
        let (path, text) = &plan.files[0];
        assert_eq!(
            path,
            Path::new("/Users/a&b/Library/LaunchAgents/dev.spec-kitty.kitty-syncd.plist")
        );
        let v: plist::Value = plist::from_bytes(text.as_bytes()).unwrap();
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some(LAUNCHD_LABEL));
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        assert_eq!(d["ProcessType"].as_string(), Some("Background"));
        let keep = d["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(keep["SuccessfulExit"].as_boolean(), Some(false));
        let args = d["ProgramArguments"].as_array().unwrap();
        assert_eq!(args[0].as_string(), Some("/opt/kitty/bin/kitty-syncd"));
        assert_eq!(args[1].as_string(), Some("run"));
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(
            env["SPEC_KITTY_HOME"].as_string(),
            Some("/Users/a&b/.spec-kitty")
        );
        assert!(
            d["StandardErrorPath"]
                .as_string()
                .unwrap()
                .starts_with("/Users/a&b/Library/Logs/")
        );
        assert_eq!(
            plan.commands[0],
            cmd(&["launchctl", "bootstrap", "gui/501", &path.to_string_lossy()])
        );
    }
}
