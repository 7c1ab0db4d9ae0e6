//! The real spec-kitty CLI from PyPI, with the kitty-sync Python package
//! installed the way a user installs it, run next to a [`TestHome`]'s daemon.
//!
//! - Venvs come from `tests/pyenv/ensure-venv`: a copy of the cached CLI venv
//!   with the wheel of `$KITTY_SYNC_WHEEL` installed (what `.ci/run` builds),
//!   or, without that variable, the package copied from `python/` with the
//!   debug binaries linked beside it (so `cargo test` alone needs no release
//!   build).
//! - The CLI's user is a real one: `HOME` is `<root>/user` and no
//!   `SPEC_KITTY_HOME` is set, so the CLI and the package find `<home>` at
//!   `~/.spec-kitty`, which is the [`TestHome`] made by [`user_home`].
//! - `tests/pyenv/observer/sitecustomize.py` records, in every Python process
//!   of the CLI, each event it produced (its fan-out seams and its emitter)
//!   and each write it made to a clock.json or a queue.db.
//! - 2.x's `init` leaves a dashboard server running: [`Cli`] ends it by the
//!   pid the CLI wrote, when dropped.
//!
//! Every command runs under [`CLI_GUARD`]; nothing asserts on elapsed time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Output, SERVICE_MANAGER_VARS, TEST_USER, TestHome, run_with_timeout};

/// The CLI versions the tests run.
pub const VERSIONS: [&str; 3] = ["2.1.3", "3.2.7", "4.0.0rc7"];
/// The kitty-sync wheel to install (`.ci/run` builds it once per run).
pub const WHEEL_ENV: &str = "KITTY_SYNC_WHEEL";
/// The longest one CLI command may take: they import a lot, and the machine
/// may be loaded.
pub const CLI_GUARD: Duration = Duration::from_secs(300);
/// Creating a venv may install the CLI from PyPI first.
const VENV_GUARD: Duration = Duration::from_secs(900);

/// The repository's root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A [`TestHome`] at `<root>/user/.spec-kitty`: `~/.spec-kitty` of the
/// CLI's user, whose `HOME` is `<root>/user`.
pub fn user_home() -> TestHome {
    TestHome::with_home_at("user/.spec-kitty")
}

fn ensure_venv(args: &[&str]) -> PathBuf {
    let mut cmd = Command::new(repo_root().join("tests/pyenv/ensure-venv"));
    cmd.args(args);
    let out = run_with_timeout(cmd, None, VENV_GUARD);
    out.assert_code(0);
    PathBuf::from(out.stdout.trim())
}

/// The cached venv of spec-kitty-cli `version`, as PyPI ships it.
pub fn plain_venv(version: &str) -> PathBuf {
    crate::pycli::PyCli::get(version).venv().to_path_buf()
}

/// A venv of spec-kitty-cli `version` with kitty-sync installed.
pub fn venv_with_kitty_sync(version: &str) -> PathBuf {
    match std::env::var(WHEEL_ENV) {
        Ok(wheel) if !wheel.is_empty() => ensure_venv(&[version, "--with-wheel", &wheel]),
        _ => {
            let bins = crate::harness::daemon_bin();
            let bin_dir = bins.parent().expect("binaries have a directory");
            let source = repo_root().join("python");
            ensure_venv(&[
                version,
                "--with-source",
                &source.display().to_string(),
                "--bin-dir",
                &bin_dir.display().to_string(),
            ])
        }
    }
}

/// One checkout driven by one CLI venv, for one user.
pub struct Cli {
    venv: PathBuf,
    version: String,
    user: PathBuf,
    repo: PathBuf,
    observe_log: PathBuf,
    env: Vec<(String, String)>,
    /// The feature (2.x) or mission (3.x, 4.0) slug, once created.
    pub slug: Option<String>,
}

impl Cli {
    /// A checkout at `<root>/<name>` (a git repository with one commit) for
    /// the CLI of `venv` (spec-kitty-cli `version`).
    pub fn new(home: &TestHome, venv: PathBuf, version: &str, name: &str) -> Self {
        let user = home
            .path()
            .parent()
            .expect("a user_home() has a parent")
            .to_path_buf();
        assert!(
            home.path().ends_with(".spec-kitty"),
            "the CLI's <home> is ~/.spec-kitty: use spec_kitty_cli::user_home()"
        );
        let repo = home.root().join(name);
        std::fs::create_dir_all(&repo).expect("create the checkout");
        let cli = Self {
            venv,
            version: version.to_owned(),
            user,
            observe_log: home.root().join(format!("{name}.observed.jsonl")),
            repo,
            env: Vec::new(),
            slug: None,
        };
        cli.git(&["init", "-q", "-b", "main"]);
        cli.git(&["config", "user.email", "tester@example.com"]);
        cli.git(&["config", "user.name", "Tester"]);
        cli.write("README.md", "demo\n");
        cli.commit("init");
        cli
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// Sets an environment variable for every command from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.current_dir(&self.repo)
            .env("HOME", &self.user)
            .env(
                "PATH",
                format!("{}:{path}", self.venv.join("bin").display()),
            )
            .env("LOGNAME", TEST_USER)
            .env("USER", TEST_USER)
            .env("SPEC_KITTY_NO_UPGRADE_CHECK", "1")
            .env("PYTHONPATH", repo_root().join("tests/pyenv/observer"))
            .env("KITTY_OBSERVE_LOG", &self.observe_log)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // The cached venvs are shared by every test and engineer: leave them as they are.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("SPEC_KITTY_HOME")
            .env_remove("KITTY_SYNCD_SOCKET")
            .env_remove("KITTY_SYNC_DISABLE")
            .env_remove("KITTY_SYNC_BIN")
            .env_remove("SPEC_KITTY_ENABLE_SAAS_SYNC")
            .env_remove("VIRTUAL_ENV");
        for var in SERVICE_MANAGER_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `spec-kitty <args>` in the checkout.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&self.venv.join("bin/spec-kitty"));
        cmd.args(args);
        run_with_timeout(cmd, None, CLI_GUARD)
    }

    /// `spec-kitty <args>`, asserting exit 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.code(),
            Some(0),
            "spec-kitty {} ({}) failed:\n{out}",
            args.join(" "),
            self.version
        );
        out
    }

    /// `git <args>` in the checkout, asserting exit 0.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(Path::new("git"));
        cmd.args(args);
        let out = run_with_timeout(cmd, None, CLI_GUARD);
        out.assert_code(0);
        out
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.repo.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file has a directory")).unwrap();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        let status = self.git(&["status", "--porcelain"]);
        if !status.stdout.trim().is_empty() {
            self.git(&["commit", "-q", "-m", message]);
        }
    }

    /// The offline command sequence of this CLI version that produces events:
    /// init, create a feature/mission, write its spec and one work package,
    /// finalize the tasks, and move the work package through its lanes (2.x:
    /// to doing, then a history note). Every command must exit 0.
    pub fn sequence(&mut self) {
        if self.version.starts_with("2.") {
            self.sequence_2x()
        } else {
            self.sequence_3x()
        }
    }

    fn sequence_2x(&mut self) {
        self.ok(&[
            "init",
            "--here",
            "--ai",
            "claude",
            "--script",
            "sh",
            "--non-interactive",
            "--force",
        ]);
        self.end_dashboard();
        self.commit("spec-kitty init");
        self.ok(&["agent", "feature", "create-feature", "demo", "--json"]);
        let slug = "001-demo".to_owned();
        self.write_work(&format!("kitty-specs/{slug}"), false);
        self.ok(&[
            "agent",
            "feature",
            "finalize-tasks",
            "--feature",
            &slug,
            "--json",
        ]);
        self.ok(&[
            "agent",
            "tasks",
            "move-task",
            "WP01",
            "--to",
            "doing",
            "--feature",
            &slug,
            "--json",
        ]);
        self.ok(&[
            "agent",
            "tasks",
            "add-history",
            "WP01",
            "--note",
            "looked at it",
            "--feature",
            &slug,
        ]);
        self.slug = Some(slug);
    }

    fn sequence_3x(&mut self) {
        self.ok(&["init", "--ai", "claude", "--non-interactive"]);
        self.commit("spec-kitty init");
        let out = self.ok(&[
            "agent",
            "mission",
            "create",
            "demo",
            "--start-branch",
            "feat/demo",
            "--json",
        ]);
        let created: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("mission create printed no JSON ({e}):\n{out}"));
        let slug = created["mission_slug"]
            .as_str()
            .unwrap_or_else(|| panic!("no mission_slug in {created}"))
            .to_owned();
        self.write_work(&format!("kitty-specs/{slug}"), true);
        self.ok(&[
            "agent",
            "mission",
            "finalize-tasks",
            "--mission",
            &slug,
            "--json",
        ]);
        for (lane, extra) in [
            ("doing", &[][..]),
            ("for_review", &["--force"][..]),
            ("approved", &["--force"][..]),
            (
                "done",
                &["--force", "--done-override-reason", "kitty-sync test"][..],
            ),
        ] {
            let mut args = vec![
                "agent",
                "tasks",
                "move-task",
                "WP01",
                "--to",
                lane,
                "--mission",
                &slug,
                "--json",
            ];
            args.extend_from_slice(extra);
            self.ok(&args);
        }
        self.slug = Some(slug);
    }

    /// spec.md with FR-001, tasks.md, and tasks/WP01-*.md, committed.
    fn write_work(&self, dir: &str, ownership: bool) {
        self.write(
            &format!("{dir}/spec.md"),
            "# Spec\n\n## Requirements\n\n- FR-001: the thing works\n",
        );
        self.write(
            &format!("{dir}/tasks.md"),
            "# Tasks\n\n## WP01: Do it\n\n- [ ] T001 do it\n",
        );
        let owned = if ownership {
            "owned_files: [\"src/**\"]\nauthoritative_surface: \"src/\"\n"
        } else {
            "lane: planned\n"
        };
        self.write(
            &format!("{dir}/tasks/WP01-do-it.md"),
            &format!(
                "---\nwork_package_id: WP01\ntitle: Do it\ndependencies: []\nsubtasks: [T001]\n\
                 requirement_refs: [\"FR-001\"]\n{owned}---\n# WP01: Do it\n\n- [ ] T001 do it\n"
            ),
        );
        self.commit("spec and tasks");
    }

    /// Every line the observer wrote, in order.
    pub fn observations(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.observe_log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("observer line {l:?}: {e}")))
            .collect()
    }

    /// The events the CLI produced, in the order it produced them.
    pub fn produced(&self) -> Vec<Value> {
        self.of_kind("produced")
    }

    /// Writes of the CLI's own Python to a clock.json or a queue.db.
    pub fn touched(&self) -> Vec<Value> {
        self.of_kind("touched")
    }

    fn of_kind(&self, kind: &str) -> Vec<Value> {
        let all = self.observations();
        let errors: Vec<&Value> = all
            .iter()
            .filter(|o| o["kind"] == "observer_error")
            .collect();
        assert!(errors.is_empty(), "the observer failed: {errors:?}");
        all.into_iter().filter(|o| o["kind"] == kind).collect()
    }

    /// 2.x's `init` starts a dashboard server for the checkout that outlives
    /// the command; it wrote its pid as the fourth line of `.kittify/.dashboard`.
    pub fn end_dashboard(&self) {
        let Ok(text) = std::fs::read_to_string(self.repo.join(".kittify/.dashboard")) else {
            return;
        };
        let Some(pid) = text
            .lines()
            .nth(3)
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return;
        };
        // Only while that pid is still the dashboard of this checkout.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("run_dashboard_server")
            && cmdline.contains(&*self.repo.to_string_lossy())
        {
            // SAFETY: kill(2) on the pid the CLI recorded for its own server.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        self.end_dashboard();
    }
}
