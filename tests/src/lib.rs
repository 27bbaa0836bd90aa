//! Helpers shared by the black-box tests in `tests/blackbox/`: a temporary
//! database and a runner for the real `creditgate` binary that returns its
//! exit code and parsed `--json` output. The tests know the binary only
//! through its command line (and later its HTTP port), never its internals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary directory holding one database, deleted on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The process exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output, parsed as JSON when it is JSON, else `Null`.
    pub json: Value,
    /// Standard output as text.
    pub stdout: String,
    /// Standard error as text.
    pub stderr: String,
}

impl Sandbox {
    /// A fresh sandbox for the binary at `bin` (pass
    /// `env!("CARGO_BIN_EXE_creditgate")`).
    pub fn new(bin: &str) -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            bin: PathBuf::from(bin),
        }
    }

    /// The database path every command of this sandbox uses.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("creditgate.db")
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command for the binary with `--db` set to this sandbox's database.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--db").arg(self.db()).args(args);
        command.env_remove("CREDITGATE_DB");
        command
    }

    /// Runs the binary with `args` and `--json`.
    pub fn json(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Runs the binary with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .output()
            .expect("run the creditgate binary");
        Run::from(output)
    }

    /// Runs `--json` and expects success; returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let run = self.json(args);
        assert_eq!(run.code, 0, "creditgate {args:?} failed: {run:?}");
        run.json
    }

    /// Creates an account and returns its id.
    pub fn account(&self, name: &str) -> String {
        let created = self.ok(&["accounts", "create", "--name", name]);
        created["id"].as_str().expect("account id").to_owned()
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        Run {
            code: output.status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
