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
use emulator::{Emulator, TEST_SETTINGS, describe, snapshot};
use xtask::project::Project;
use xtask_aws::status::DRIFT_EXIT_CODE;

/// How long an interrupted deploy may take to exit before the test fails.
const EXIT_AFTER_SIGNAL_LIMIT: Duration = Duration::from_secs(20);

/// How long the deploy may take to launch and reach its wait loop.
const START_WAITING_LIMIT: Duration = Duration::from_secs(120);

/// Settings that wait for the console's completion line, which moto never prints, so the
/// deploy waits until it is stopped.
fn settings_waiting_for_console() -> String {
    TEST_SETTINGS.replace("readiness: status-checks", "readiness: redis-ping")
}

fn deploy(emulator: &Emulator) -> Output {
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

    let mut watched = WatchedDeploy::start(&emulator);
    let seen = watched.wait_for_line("waiting for Redis to answer", START_WAITING_LIMIT).join("\n");
    assert!(seen.contains("launched instance "), "the wait follows a launch:\n{seen}");
    watched.send_signal(signal);
    let (status, stderr) = watched.wait_for_exit(EXIT_AFTER_SIGNAL_LIMIT);

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

// ---------------------------------------------------------------------------------------------
// Status and drift

/// Runs `status --json` and returns its exit code and document.
fn status_json(emulator: &Emulator, extra_arguments: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut arguments = vec!["status", "--json"];
    arguments.extend_from_slice(extra_arguments);
    let output = emulator.run(&arguments);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("status --json printed no JSON ({error}): {}", describe(&output)));
    (output.status.code(), report)
}

/// Returns the names of the checks that are out of sync.
fn drifted_checks(report: &serde_json::Value) -> Vec<String> {
    let checks = report["checks"].as_array().unwrap_or_else(|| panic!("no checks: {report:#}"));
    checks
        .iter()
        .filter(|check| check["in_sync"] == serde_json::Value::Bool(false))
        .map(|check| check["name"].as_str().expect("check name").to_owned())
        .collect()
}

/// Runs `status` and checks that it reports drift on `check_name`, in text and in JSON.
fn assert_drift(emulator: &Emulator, extra_arguments: &[&str], check_name: &str) -> serde_json::Value {
    let mut arguments = vec!["status"];
    arguments.extend_from_slice(extra_arguments);
    let output = emulator.run(&arguments);
    let text = stdout_text(&output);
    assert_eq!(output.status.code(), Some(i32::from(DRIFT_EXIT_CODE)), "drift exit code: {}", describe(&output));
    assert!(text.contains("DRIFT"), "verdict is DRIFT: {}", describe(&output));
    let drift_line = text.lines().find(|line| line.trim_start().starts_with(&format!("DRIFT {check_name} ")));
    assert!(drift_line.is_some(), "a DRIFT line names {check_name}: {}", describe(&output));

    let (code, report) = status_json(emulator, extra_arguments);
    assert_eq!(code, Some(i32::from(DRIFT_EXIT_CODE)), "drift exit code with --json: {report:#}");
    assert_eq!(report["in_sync"], serde_json::Value::Bool(false), "in_sync false: {report:#}");
    let drifted = drifted_checks(&report);
    assert!(drifted.contains(&check_name.to_owned()), "{check_name} drifted: {report:#}");
    report
}

fn ssh_from_anywhere() -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

#[tokio::test]
async fn status_after_deploy_is_in_sync() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let instance_id = record_field(&emulator, "instance_id");

    let output = emulator.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout_text(&output);
    assert!(text.contains(&format!("Redis deployment {instance_id}: in sync")), "verdict line: {}", describe(&output));
    assert!(!text.contains("DRIFT"), "no check drifted: {}", describe(&output));

    let (code, report) = status_json(&emulator, &[]);
    assert_eq!(code, Some(0), "exit code with --json: {report:#}");
    assert_eq!(report["in_sync"], serde_json::Value::Bool(true), "in_sync: {report:#}");
    assert_eq!(report["instance_id"], serde_json::Value::from(instance_id.as_str()), "instance id: {report:#}");
    let checks = report["checks"].as_array().unwrap_or_else(|| panic!("no checks: {report:#}"));
    let names: Vec<&str> = checks.iter().filter_map(|check| check["name"].as_str()).collect();
    assert_eq!(names, ["instance", "private_ip", "user_data", "security_group", "password"], "every check ran: {report:#}");
    for check in checks {
        assert_eq!(check["in_sync"], serde_json::Value::Bool(true), "check in sync: {check:#}");
    }
}

#[tokio::test]
async fn status_without_record_is_in_sync() {
    let emulator = Emulator::start().await;

    let output = emulator.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stdout_text(&output).contains("nothing deployed"), "{}", describe(&output));
}

#[tokio::test]
async fn extra_ingress_rule_drifts_until_deploy_repairs() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let group_id = record_field(&emulator, "security_group_id");
    emulator
        .client
        .authorize_security_group_ingress()
        .group_id(&group_id)
        .ip_permissions(ssh_from_anywhere())
        .send()
        .await
        .expect("adding the SSH rule");

    let report = assert_drift(&emulator, &[], "security_group");
    assert_eq!(drifted_checks(&report), ["security_group"], "only the group drifted: {report:#}");
    let check = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "security_group").unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("TCP 22 from 0.0.0.0/0"), "names the extra rule: {detail}");
    assert!(detail.contains("`cargo xtask deploy-redis` repairs it"), "names the fix: {detail}");

    let repair = deploy(&emulator);
    assert!(stderr_text(&repair).contains("repairing ingress"), "says it repairs: {}", describe(&repair));
    let groups = emulator.client.describe_security_groups().group_ids(&group_id).send().await.unwrap();
    let ingress = groups.security_groups()[0].ip_permissions();
    let ssh_rules: Vec<&IpPermission> = ingress.iter().filter(|rule| rule.from_port() == Some(22)).collect();
    assert!(ssh_rules.is_empty(), "the SSH rule is gone: {ingress:#?}");
    assert_eq!(ingress.len(), 1, "one rule left: {ingress:#?}");
    assert_eq!((ingress[0].from_port(), ingress[0].to_port()), (Some(6379), Some(6379)), "the Redis rule stays: {ingress:#?}");
    let sources: Vec<&str> = ingress[0].user_id_group_pairs().iter().filter_map(|pair| pair.group_id()).collect();
    assert_eq!(sources, [emulator.network.app_group_id.as_str()], "from the app group: {ingress:#?}");

    let output = emulator.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "in sync after the repair: {}", describe(&output));
}

#[tokio::test]
async fn terminated_instance_drifts() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let instance_id = record_field(&emulator, "instance_id");
    emulator
        .client
        .modify_instance_attribute()
        .instance_id(&instance_id)
        .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .expect("lifting termination protection");
    emulator.client.terminate_instances().instance_ids(&instance_id).send().await.expect("terminating");

    let report = assert_drift(&emulator, &[], "instance");
    let check = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "instance").unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains(&instance_id), "names the instance: {detail}");
}

#[tokio::test]
async fn edited_private_ip_drifts() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let private_ip = record_field(&emulator, "private_ip");
    let record_path = emulator.output_file("generated/deployment.yaml");
    let record = std::fs::read_to_string(&record_path).unwrap();
    let edited = record.replace(&format!("private_ip: {private_ip}"), "private_ip: 10.0.1.254");
    assert_ne!(edited, record, "the record holds the IP as `private_ip: {private_ip}`:\n{record}");
    std::fs::write(&record_path, edited).unwrap();

    let report = assert_drift(&emulator, &[], "private_ip");
    assert_eq!(drifted_checks(&report), ["private_ip"], "only the IP drifted: {report:#}");
    let check = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "private_ip").unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains(&private_ip), "names the live IP: {detail}");
    assert!(detail.contains("10.0.1.254"), "names the recorded IP: {detail}");
}

#[tokio::test]
async fn changed_templates_drift_user_data() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let templates = changed_templates(&emulator);

    let report = assert_drift(&emulator, &["--templates", templates.as_str()], "user_data");
    assert_eq!(drifted_checks(&report), ["user_data"], "only the user data drifted: {report:#}");
    let check = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "user_data").unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("cargo xtask deploy-redis --replace"), "names the fix: {detail}");
}

// ---------------------------------------------------------------------------------------------
// Replacement

#[tokio::test]
async fn changed_user_data_needs_replace() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let old_id = record_field(&emulator, "instance_id");
    let templates = changed_templates(&emulator);
    let before = snapshot(&emulator.output_dir);

    let rejected = emulator.run(&["deploy-redis", "--templates", templates.as_str()]);
    assert!(!rejected.status.success(), "a changed user data needs --replace: {}", describe(&rejected));
    assert!(stderr_text(&rejected).contains("--replace"), "names --replace: {}", describe(&rejected));
    assert!(stderr_text(&rejected).contains(&old_id), "names the instance: {}", describe(&rejected));
    assert!(stderr_text(&rejected).contains("Nothing was changed"), "says nothing changed: {}", describe(&rejected));
    let instances = emulator.live_instances().await;
    let ids: Vec<&str> = instances.iter().filter_map(|instance| instance.instance_id()).collect();
    assert_eq!(ids, [old_id.as_str()], "no new instance");
    assert_eq!(snapshot(&emulator.output_dir), before, "no file changed");

    let replaced = emulator.run(&["deploy-redis", "--templates", templates.as_str(), "--replace"]);
    assert!(replaced.status.success(), "{}", describe(&replaced));
    let instances = emulator.live_instances().await;
    let live: Vec<&aws_sdk_ec2::types::Instance> =
        instances.iter().filter(|instance| instance.instance_id() != Some(old_id.as_str())).collect();
    assert_eq!(live.len(), 1, "one new instance: {instances:#?}");
    let new_id = live[0].instance_id().unwrap();
    let new_ip = live[0].private_ip_address().expect("private IP");
    assert_eq!(live[0].state().and_then(|state| state.name()), Some(&InstanceStateName::Running), "the new one runs");
    let old_state = emulator.instance_state(&old_id).await;
    assert!(
        matches!(old_state, InstanceStateName::Terminated | InstanceStateName::ShuttingDown),
        "the old instance is gone, not {old_state:?}: {}",
        describe(&replaced)
    );
    assert!(stderr_text(&replaced).contains(&format!("terminated the replaced instance {old_id}")), "{}", describe(&replaced));

    assert_eq!(record_field(&emulator, "instance_id"), new_id, "the record names the new instance");
    assert_eq!(record_field(&emulator, "private_ip"), new_ip, "the record has the new IP");
    assert_eq!(options_redis_ip(&emulator), new_ip, "REDIS_IP is the new IP");
    let user_data = emulator.read_output("generated/user-data.yaml");
    assert!(user_data.contains("An extra comment line"), "the new user data is written:\n{user_data}");

    let status = emulator.run(&["status", "--templates", templates.as_str()]);
    assert_eq!(status.status.code(), Some(0), "in sync after the replacement: {}", describe(&status));
}

// ---------------------------------------------------------------------------------------------
// Teardown

async fn protect_from_termination(emulator: &Emulator, instance_id: &str) {
    // NOTE: moto 5.2.1 ignores DisableApiTermination in RunInstances, so the test sets it here.
    emulator
        .client
        .modify_instance_attribute()
        .instance_id(instance_id)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .expect("turning on termination protection");
    let attribute = emulator
        .client
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap();
    let protected = attribute.disable_api_termination().and_then(|value| value.value());
    assert_eq!(protected, Some(true), "the emulator keeps termination protection");
}

#[tokio::test]
async fn destroy_needs_flag_then_removes_everything() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let instance_id = record_field(&emulator, "instance_id");
    let group_id = record_field(&emulator, "security_group_id");
    protect_from_termination(&emulator, &instance_id).await;
    let before = snapshot(&emulator.output_dir);

    let rejected = emulator.run(&["destroy-redis"]);
    assert!(!rejected.status.success(), "protection needs the flag: {}", describe(&rejected));
    assert!(stderr_text(&rejected).contains("--disable-termination-protection"), "names the flag: {}", describe(&rejected));
    assert!(stderr_text(&rejected).contains(&instance_id), "names the instance: {}", describe(&rejected));
    assert_eq!(emulator.instance_state(&instance_id).await, InstanceStateName::Running, "the instance still runs");
    assert_eq!(emulator.redis_groups().await.len(), 1, "the group still exists");
    assert_eq!(snapshot(&emulator.output_dir), before, "no file changed");

    // The sandbox's readiness writes no certificate, so stand one in to see that destroy removes it.
    let ca_file = emulator.output_file("openemr/.ebextensions/redis-ca.pem");
    std::fs::write(&ca_file, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
    let destroyed = emulator.run(&["destroy-redis", "--disable-termination-protection"]);
    assert!(destroyed.status.success(), "{}", describe(&destroyed));
    assert!(!ca_file.exists(), "{ca_file} removed with the instance");
    assert_eq!(emulator.instance_state(&instance_id).await, InstanceStateName::Terminated, "{}", describe(&destroyed));
    let groups = emulator.redis_groups().await;
    assert!(groups.is_empty(), "group {group_id} deleted: {groups:#?}");
    let record_path = emulator.output_file("generated/deployment.yaml");
    assert!(!record_path.exists(), "{record_path} removed");
    let options = emulator.read_output("openemr/.ebextensions/00-options.config");
    assert!(options.contains("REDIS_IP: \"\""), "REDIS_IP is empty again:\n{options}");
    assert!(stdout_text(&destroyed).contains(&instance_id), "the summary names the instance: {}", describe(&destroyed));

    let again = emulator.run(&["destroy-redis"]);
    assert_eq!(again.status.code(), Some(0), "a second destroy is fine: {}", describe(&again));
    assert!(stderr_text(&again).contains("nothing to destroy"), "{}", describe(&again));
}

#[tokio::test]
async fn destroy_without_record_succeeds() {
    let emulator = Emulator::start().await;

    let output = emulator.run(&["destroy-redis"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stderr_text(&output).contains("nothing to destroy"), "{}", describe(&output));
    assert!(!emulator.output_file("generated/deployment.yaml").exists(), "no record appears");
    // With nothing destroyed, the generated files stay as they were, since they may point at the
    // other backend; here there were none.
    assert!(!emulator.output_file("openemr/.ebextensions/00-options.config").exists(), "no file is written");
}

/// destroy-redis for a backend that has no record leaves the files of the backend that serves
/// sessions alone. ElastiCache serves here, from a record written by hand, since moto cannot
/// deploy it; the instance path stops before its first request.
#[tokio::test]
async fn destroy_of_other_backend_keeps_redis_ip() {
    let emulator = Emulator::start().await;
    emulator.write_settings(&format!("{TEST_SETTINGS}backend: elasticache\n"));
    let golden = Project::from_manifest_dir().root().join("tests/golden/elasticache.yaml");
    std::fs::create_dir_all(emulator.output_file("generated")).unwrap();
    std::fs::copy(&golden, emulator.output_file("generated/elasticache.yaml")).unwrap();
    let codegen = emulator.run(&["codegen"]);
    assert!(codegen.status.success(), "{}", describe(&codegen));
    let before = emulator.read_output("openemr/.ebextensions/00-options.config");
    assert!(before.contains(".cache.amazonaws.com"), "REDIS_IP points at ElastiCache:\n{before}");

    let output = emulator.run(&["destroy-redis", "--backend", "instance"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stderr_text(&output).contains("nothing to destroy"), "{}", describe(&output));
    assert_eq!(emulator.read_output("openemr/.ebextensions/00-options.config"), before, "REDIS_IP still points at ElastiCache");
}

/// Destroying the selected backend while the other one is deployed would leave REDIS_IP empty, so
/// it stops before any request.
#[tokio::test]
async fn destroy_of_selected_backend_waits_for_switch() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let golden = Project::from_manifest_dir().root().join("tests/golden/elasticache.yaml");
    std::fs::copy(&golden, emulator.output_file("generated/elasticache.yaml")).unwrap();
    let before = snapshot(&emulator.output_dir);

    let output = emulator.run(&["destroy-redis", "--disable-termination-protection"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = stderr_text(&output);
    assert!(stderr.contains("and the elasticache backend is deployed too"), "{}", describe(&output));
    assert!(stderr.contains("Set `backend: elasticache` and run `cargo xtask deploy-redis`"), "{}", describe(&output));
    assert_eq!(snapshot(&emulator.output_dir), before, "no file changed");
    assert_eq!(emulator.live_instances().await.len(), 1, "the instance keeps running");
}

#[tokio::test]
async fn destroy_after_replace_deletes_group() {
    let emulator = Emulator::start().await;
    deploy(&emulator);
    let old_id = record_field(&emulator, "instance_id");
    let templates = changed_templates(&emulator);
    let replaced = emulator.run(&["deploy-redis", "--templates", templates.as_str(), "--replace"]);
    assert!(replaced.status.success(), "{}", describe(&replaced));
    let new_id = record_field(&emulator, "instance_id");
    assert_ne!(new_id, old_id, "the record moved to the new instance");

    // The group was used by both instances, and the replaced one no longer counts as a user.
    let destroyed = emulator.run(&["destroy-redis", "--templates", templates.as_str()]);
    assert!(destroyed.status.success(), "{}", describe(&destroyed));
    assert_eq!(emulator.instance_state(&new_id).await, InstanceStateName::Terminated, "{}", describe(&destroyed));
    let groups = emulator.redis_groups().await;
    assert!(groups.is_empty(), "group deleted: {groups:#?}");
    assert!(!emulator.output_file("generated/deployment.yaml").exists(), "record removed");
}
