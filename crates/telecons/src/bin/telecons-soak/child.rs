//! The instance the soak kills (`--kill`): the real `telecons serve` as a child process,
//! configured by its environment, on a fixed loopback port, SIGKILLed mid-burst and started
//! again on the same port. Its clients learn of the kill here: they wait for the restart
//! before they retry, or look up in the database what a request cut by the kill did.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, watch};

/// How long the child may take to answer `/-/ready` after a start.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a client waits for the restart after a failed request.
const RESTART_WITHIN: Duration = Duration::from_secs(120);

/// Where the killed instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotKilledYet,
    Down,
    Restarted,
}

/// `telecons serve` as a child process.
pub struct ChildInstance {
    pub base: String,
    program: PathBuf,
    vars: Vec<(String, String)>,
    process: Mutex<Option<Child>>,
    phase: watch::Sender<Phase>,
}

/// A client's view of the kill.
#[derive(Clone)]
pub struct KillWatch(watch::Receiver<Phase>);

impl KillWatch {
    /// Waits until the killed instance is serving again (at once if it is).
    pub async fn restarted(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(
            RESTART_WITHIN,
            self.0.wait_for(|phase| *phase == Phase::Restarted),
        )
        .await
        .context("the killed instance did not come back in time")?
        .context("the killed instance is gone")?;
        Ok(())
    }
}

impl ChildInstance {
    /// Starts the `telecons` binary beside this one with `serve`, configured by `vars`
    /// (and nothing else of this process's environment) on `port`, and waits until ready.
    pub async fn start(vars: Vec<(String, String)>, port: u16) -> anyhow::Result<ChildInstance> {
        let program = std::env::current_exe()?.with_file_name("telecons");
        if !program.exists() {
            bail!(
                "--kill runs {} as a child process: build it too (cargo build -p telecons --bins)",
                program.display()
            );
        }
        let child = ChildInstance {
            base: format!("http://127.0.0.1:{port}"),
            program,
            vars,
            process: Mutex::new(None),
            phase: watch::Sender::new(Phase::NotKilledYet),
        };
        let process = child.spawn_until_ready().await?;
        *child.process.lock().await = Some(process);
        Ok(child)
    }

    pub fn watch(&self) -> KillWatch {
        KillWatch(self.phase.subscribe())
    }

    async fn spawn_until_ready(&self) -> anyhow::Result<Child> {
        let mut process = Command::new(&self.program)
            .arg("serve")
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", self.base);
        let started = Instant::now();
        loop {
            if let Some(status) = process.try_wait()? {
                bail!("the child instance exited at start-up: {status}");
            }
            if http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(process);
            }
            if started.elapsed() > READY_WITHIN {
                bail!("the child instance was not ready within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then the same instance again on the same port, ready. How long it was down.
    pub async fn kill_and_restart(&self) -> anyhow::Result<Duration> {
        let mut process = self.process.lock().await;
        let killed_at = Instant::now();
        if let Some(mut running) = process.take() {
            // `kill` is SIGKILL on Unix: no shutdown, requests and transactions cut.
            running
                .kill()
                .await
                .context("cannot kill the child instance")?;
        }
        self.phase.send_replace(Phase::Down);
        *process = Some(self.spawn_until_ready().await?);
        self.phase.send_replace(Phase::Restarted);
        Ok(killed_at.elapsed())
    }

    /// Stops it for good (SIGKILL: by then it has nothing left to do).
    pub async fn stop(&self) -> anyhow::Result<()> {
        if let Some(mut running) = self.process.lock().await.take() {
            running.kill().await?;
        }
        Ok(())
    }
}

/// A loopback port free now, for a process that will bind it (again after a restart).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
