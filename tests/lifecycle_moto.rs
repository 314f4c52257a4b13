//! `status`, `destroy-redis`, `deploy-redis --replace` and interrupted deploys against the moto
//! EC2 emulator on loopback, through the real `xtask-aws` binary.

#[path = "support/emulator.rs"]
mod emulator;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{AttributeBooleanValue, InstanceAttributeName, InstanceStateName, IpPermission, IpRange};
use camino::Utf8Path;
use emulator::{Emulator, TEST_SETTINGS, describe, snapshot};
use xtask_aws::status::DRIFT_EXIT_CODE;

/// How long an interrupted deploy may take to exit before the test fails.
const EXIT_AFTER_SIGNAL_LIMIT: Duration = Duration::from_secs(20);

/// How long the deploy may take to launch and reach its wait loop.
const REACH_WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Settings that wait for the console's completion line, which moto never prints, so the
/// deploy waits until it is stopped.
fn settings_waiting_for_console() -> String {
    TEST_SETTINGS.replace("readiness: status-checks", "readiness: redis-ping")
}

async fn deploy(emulator: &Emulator) -> Output {
    let output = emulator.run(&["deploy-redis"]);
    assert!(output.status.success(), "deploy failed: {}", describe(&output));
    output
}

/// Returns a value of `generated/deployment.yaml`.
fn record_field(emulator: &Emulator, key: &str) -> String {
    let record: serde_yaml::Value = serde_yaml::from_str(&emulator.read_output("generated/deployment.yaml")).unwrap();
    record[key].as_str().unwrap_or_else(|| panic!("record has no {key}: {record:?}")).to_owned()
}

/// Returns `REDIS_IP` of the options file.
fn options_redis_ip(emulator: &Emulator) -> String {
    let text = emulator.read_output("openemr/.ebextensions/00-options.config");
    let options: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let redis_ip = &options["option_settings"]["aws:elasticbeanstalk:application:environment"]["REDIS_IP"];
    redis_ip.as_str().unwrap_or_else(|| panic!("no REDIS_IP in the options file:\n{text}")).to_owned()
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Copies the templates and appends a comment line to `redis.conf.j2`, which changes the user
/// data and nothing else.
fn changed_templates(emulator: &Emulator) -> camino::Utf8PathBuf {
    let templates = emulator.copy_templates("changed-templates");
    let redis_conf = templates.join("redis.conf.j2");
    let mut text = std::fs::read_to_string(&redis_conf).unwrap();
    text.push_str("# An extra comment line, so that the user data differs from the running instance's.\n");
    std::fs::write(&redis_conf, text).unwrap();
    templates
}

// ---------------------------------------------------------------------------------------------
// Interruption

/// A `deploy-redis` child process whose stderr lines arrive on a channel as they are printed.
/// Dropping it kills the process, so a failed test leaves nothing running.
struct WatchedDeploy {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<Vec<String>>>,
}

impl WatchedDeploy {
    fn start(emulator: &Emulator) -> WatchedDeploy {
        let mut child = emulator
            .command(&["deploy-redis", "--timeout", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xtask-aws starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line.clone());
                seen.push(line);
            }
            seen
        });
        WatchedDeploy { child, lines, reader: Some(reader) }
    }

    /// Waits for a stderr line that contains `text` and returns the lines so far.
    fn wait_for_line(&mut self, text: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(error) => panic!("no stderr line with {text:?} ({error}); stderr so far:\n{}", seen.join("\n")),
            }
        }
    }

    /// Sends `signal` (such as `INT`) with the system's `kill` command.
    fn send_signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill -{signal} {} failed: {status}", self.child.id());
    }

    /// Waits for the exit, failing the test after `limit`, and returns the status and all stderr.
    fn wait_for_exit(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the deploy") {
                break status;
            }
            assert!(Instant::now() < deadline, "deploy-redis still runs {} s after the signal", limit.as_secs());
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = self.reader.take().expect("reader thread").join().expect("stderr reader");
        (status, lines.join("\n"))
    }
}

impl Drop for WatchedDeploy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the id in "launched instance i-… (…)".
fn launched_instance_id(stderr: &str) -> String {
    let line = stderr.lines().find(|line| line.starts_with("launched instance ")).unwrap_or_else(|| panic!("no launch line:\n{stderr}"));
    line.trim_start_matches("launched instance ").split_whitespace().next().unwrap().to_owned()
}

/// Interrupts a deploy that waits for readiness with `signal`, then checks that a rerun adopts
/// the instance it launched.
async fn interrupt_then_resume(signal: &str, signal_name: &str) {
    let emulator = Emulator::start_with_settings(&settings_waiting_for_console()).await;
    let codegen = emulator.run(&["codegen"]);
    assert!(codegen.status.success(), "{}", describe(&codegen));
    let before = snapshot(&emulator.output_dir);

    let mut deploy = WatchedDeploy::start(&emulator);
    let seen = deploy.wait_for_line("waiting for Redis to answer", REACH_WAIT_LIMIT);
    let seen = seen.join("\n");
    assert!(seen.contains("launched instance "), "the wait follows a launch:\n{seen}");
    deploy.send_signal(signal);
    let (status, stderr) = deploy.wait_for_exit(EXIT_AFTER_SIGNAL_LIMIT);

    assert!(!status.success(), "an interrupted deploy must fail: {status}\n{stderr}");
    assert_eq!(status.code(), Some(1), "exits through the error path, not killed by the signal:\n{stderr}");
    assert!(stderr.contains(&format!("{signal_name} received")), "names the signal:\n{stderr}");
    assert!(stderr.contains("rerun `cargo xtask deploy-redis`"), "says how to resume:\n{stderr}");
    assert!(stderr.contains("nothing was written"), "says nothing was written:\n{stderr}");
    assert_eq!(snapshot(&emulator.output_dir), before, "no file written after {signal_name}");

    let launched_id = launched_instance_id(&stderr);
    let instances = emulator.live_instances().await;
    assert_eq!(instances.len(), 1, "the interrupted deploy launched one instance: {instances:#?}");
    assert_eq!(instances[0].instance_id(), Some(launched_id.as_str()), "the launched instance keeps booting");

    emulator.write_settings(TEST_SETTINGS);
    let resumed = emulator.run(&["deploy-redis"]);
    assert!(resumed.status.success(), "{}", describe(&resumed));
    assert!(stderr_text(&resumed).contains(&format!("reusing instance {launched_id}")), "adopts it: {}", describe(&resumed));

    let instances = emulator.live_instances().await;
    assert_eq!(instances.len(), 1, "no second instance: {instances:#?}");
    assert_eq!(instances[0].instance_id(), Some(launched_id.as_str()), "the same instance");
    assert_eq!(record_field(&emulator, "instance_id"), launched_id, "the record names the adopted instance");
    let private_ip = instances[0].private_ip_address().expect("private IP");
    assert_eq!(options_redis_ip(&emulator), private_ip, "REDIS_IP is the adopted instance's IP");
}


#[tokio::test]
async fn sigint_stops_wait_and_rerun_adopts() {
    interrupt_then_resume("INT", "SIGINT").await;
}

#[tokio::test]
async fn sigterm_stops_wait_and_rerun_adopts() {
    interrupt_then_resume("TERM", "SIGTERM").await;
}
