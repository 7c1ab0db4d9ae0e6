//! The real spec-kitty CLI from PyPI, for tests of a home the CLI writes too.
//!
//! [`PyCli::get`] finds (building once) a cached virtualenv of one CLI version
//! with `tests/pyenv/ensure-venv`, in `$KITTY_PYENV_CACHE` (default
//! `target/pyenvs`). [`PyCli::python`] runs that venv's Python with a HOME of
//! the test's own: the CLI keeps its state in `$HOME/.spec-kitty` and writes
//! agent directories into `$HOME`, so it never sees the real one. Nothing of
//! the caller's environment leaks in beyond `PATH`; the test points the CLI's
//! server at loopback in config.toml, so it reaches nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Output, TEST_USER, run_with_guard, run_with_timeout};

/// One installed version of `spec-kitty-cli`.
#[derive(Debug, Clone)]
pub struct PyCli {
    version: String,
    venv: PathBuf,
}

impl PyCli {
    /// The venv of `version`; panics with the installer's output when it
    /// cannot be built.
    pub fn get(version: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pyenv/ensure-venv");
        let mut cmd = Command::new(&script);
        cmd.arg(version);
        // Building a venv downloads from PyPI: allow it more than the usual guard.
        let out = run_with_timeout(cmd, None, Duration::from_secs(600));
        assert_eq!(
            out.code(),
            Some(0),
            "{} {version} failed:\n{out}",
            script.display()
        );
        let venv = PathBuf::from(out.stdout.trim());
        assert!(
            venv.join("bin/python").is_file(),
            "no python in {}",
            venv.display()
        );
        Self {
            version: version.to_owned(),
            venv,
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// A command running the venv's Python with `$HOME` = `home`, in `home`,
    /// as [`TEST_USER`], without the upgrade check.
    pub fn command(&self, home: &Path) -> Command {
        let mut cmd = Command::new(self.venv.join("bin/python"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("LOGNAME", TEST_USER)
            .env("USER", TEST_USER)
            .env("LANG", "C.UTF-8")
            .env("SPEC_KITTY_NO_UPGRADE_CHECK", "1")
            // The venv is shared by every test and engineer: leave it as it is.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(home);
        cmd
    }

    /// Runs `python -c <code>` (see [`Self::command`]) to completion.
    pub fn python(&self, home: &Path, code: &str) -> Output {
        let mut cmd = self.command(home);
        cmd.arg("-c").arg(code);
        run_with_guard(cmd, None)
    }

    /// `specify_cli.sync.events.emit_wp_created(wp_id, title, feature_slug)`
    /// in a process of its own (the CLI loads clock.json once per process);
    /// returns the event it built, as JSON. Panics when none was emitted.
    pub fn emit_wp_created(&self, home: &Path, wp_id: &str) -> serde_json::Value {
        let code = format!(
            "import json, sys\n\
             from specify_cli.sync.events import emit_wp_created\n\
             e = emit_wp_created({wp_id:?}, 'From the CLI', '028-shared-home')\n\
             sys.stdout.write('\\nEVENT ' + json.dumps(e) + '\\n')\n"
        );
        let out = self.python(home, &code);
        out.assert_code(0);
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("EVENT "))
            .unwrap_or_else(|| panic!("the CLI printed no event:\n{out}"));
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{out}"));
        assert!(event.is_object(), "the CLI emitted nothing:\n{out}");
        event
    }
}
