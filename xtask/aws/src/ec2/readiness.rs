//! Waits until the instance runs and Redis on it replied, polling quickly at first and then
//! backing off, instead of the SDK waiters' fixed 15-second delay.

use std::time::Duration;

use anyhow::bail;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{InstanceStateName, SummaryStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::time::Instant;
use xtask::codegen::{FAILED_MARKER, READY_MARKER};

use super::instance::{InstanceView, describe_instance};
use super::{error_code, sdk_error};
use aws_sdk_ec2::operation::get_console_output::GetConsoleOutputOutput;
use crate::progress::Progress;

/// Console lines shown with a failed provisioning.
const CONSOLE_EXCERPT_LINES: usize = 20;

/// Poll delays: 1 s, growing by half each time, at most 10 s. That is 10 polls in the first
/// minute and 6 a minute after, each one or two requests, far below EC2's request rate limits.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Backoff {
        Backoff::default()
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 3 / 2).min(Backoff::MAX);
        delay
    }
}

/// The evidence that the instance is ready.
#[derive(Debug, Clone)]
pub enum ReadyCheck {
    /// The completion line on the serial console, carrying the SHA-256 of the user data we sent.
    ConsoleLine { user_data_sha256: String },
    /// EC2's instance and system status checks, for emulators whose console output is fixed text.
    StatusChecks,
}

/// A ready instance, with the console text that proved it when the check read the console.
#[derive(Debug, Clone)]
pub struct Ready {
    pub instance: InstanceView,
    pub console: Option<String>,
}

/// Polls until the instance is `running` and `check` passes, or until `deadline`. `seen` is a
/// view that DescribeInstances returned moments ago, such as the instance a rerun adopts; the
/// first poll uses it instead of asking again.
pub async fn wait_until_ready(
    client: &Client,
    instance_id: &str,
    check: &ReadyCheck,
    deadline: Instant,
    seen: Option<InstanceView>,
    progress: &mut Progress,
) -> anyhow::Result<Ready> {
    let mut backoff = Backoff::new();
    let mut last_seen = String::from("not yet visible in DescribeInstances");
    let mut seen = seen;
    loop {
        let instance = match seen.take() {
            Some(instance) => Some(instance),
            None => describe_instance(client, instance_id).await?,
        };
        if let Some(instance) = poll_once(client, instance_id, instance, check, progress).await? {
            return Ok(instance);
        }
        if let Some(state) = progress.current_state() {
            last_seen = state;
        }

        let delay = backoff.next_delay();
        if Instant::now() + delay > deadline {
            bail!(
                "timed out waiting for instance {instance_id} to become ready; last state: {last_seen}. The \
                 instance keeps booting: rerun `cargo xtask deploy-redis` to resume waiting, since it adopts \
                 the instance instead of launching another, or raise --timeout"
            );
        }
        tokio::time::sleep(delay).await;
    }
}

/// Checks once. Returns the instance when ready, `None` to keep waiting, an error when it never
/// will be.
async fn poll_once(
    client: &Client,
    instance_id: &str,
    instance: Option<InstanceView>,
    check: &ReadyCheck,
    progress: &mut Progress,
) -> anyhow::Result<Option<Ready>> {
    let Some(instance) = instance else {
        progress.set_state("launched, not yet visible in DescribeInstances");
        return Ok(None);
    };
    match &instance.state {
        InstanceStateName::Running => {}
        InstanceStateName::Pending => {
            progress.set_state("pending");
            return Ok(None);
        }
        other => {
            let reason = instance.state_reason.as_deref().unwrap_or("EC2 gave no reason");
            // EC2 does not reuse the client token of a terminated instance, so only a fresh token
            // launches a replacement. A stopped instance keeps its sessions and only needs a start.
            let way_out = match other {
                InstanceStateName::ShuttingDown | InstanceStateName::Terminated => {
                    "check it in the EC2 console, then rerun `cargo xtask deploy-redis --new-launch` to launch a replacement"
                        .to_owned()
                }
                _ => format!(
                    "start it with `aws ec2 start-instances --instance-ids {instance_id}`, then rerun `cargo xtask deploy-redis`"
                ),
            };
            bail!(
                "instance {instance_id} is {} instead of running ({reason}); nothing was written. {way_out}",
                other.as_str()
            );
        }
    }

    match check {
        ReadyCheck::ConsoleLine { user_data_sha256 } => {
            let console = console_when_ready(client, instance_id, user_data_sha256, progress).await?;
            Ok(console.map(|console| Ready { instance, console: Some(console) }))
        }
        ReadyCheck::StatusChecks => {
            let passed = status_checks_pass(client, instance_id, progress).await?;
            Ok(passed.then_some(Ready { instance, console: None }))
        }
    }
}

/// Returns the console text once it carries the ready line for our user data.
async fn console_when_ready(
    client: &Client,
    instance_id: &str,
    user_data_sha256: &str,
    progress: &mut Progress,
) -> anyhow::Result<Option<String>> {
    let output = console_output(client, instance_id).await?;
    let text = output
        .output()
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();

    match read_console(&text, user_data_sha256) {
        ConsoleVerdict::Ready => Ok(Some(text)),
        ConsoleVerdict::Waiting => {
            progress.set_state("running, waiting for Redis to answer (cloud-init)");
            Ok(None)
        }
        ConsoleVerdict::Failed { line, excerpt } => bail!(
            "provisioning of instance {instance_id} failed: {line}\nlast console lines:\n{excerpt}\nfix the cause \
             (often in templates/), then replace the instance with `cargo xtask deploy-redis --replace`"
        ),
        ConsoleVerdict::OtherUserData { reported } => bail!(
            "instance {instance_id} reports user data {reported}, not {user_data_sha256}: it runs another \
             version of the setup; replace it with `cargo xtask deploy-redis --replace`"
        ),
    }
}

/// Fetches the newest console output. EC2 documents `Latest` for Nitro instance types only, so
/// when EC2 rejects it (older Xen types such as t2), the buffered output is fetched instead.
async fn console_output(client: &Client, instance_id: &str) -> anyhow::Result<GetConsoleOutputOutput> {
    let latest = client.get_console_output().instance_id(instance_id).latest(true).send().await;
    match latest {
        Ok(output) => Ok(output),
        Err(error) if matches!(error_code(&error), Some("UnsupportedOperation" | "InvalidParameterValue" | "InvalidParameterCombination")) => client
            .get_console_output()
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|error| sdk_error("GetConsoleOutput", error)),
        Err(error) => Err(sdk_error("GetConsoleOutput", error)),
    }
}

async fn status_checks_pass(client: &Client, instance_id: &str, progress: &mut Progress) -> anyhow::Result<bool> {
    let output = client
        .describe_instance_status()
        .instance_ids(instance_id)
        .include_all_instances(true)
        .send()
        .await
        .map_err(|error| sdk_error("DescribeInstanceStatus", error))?;
    let passed = output.instance_statuses().first().is_some_and(|status| {
        let instance_ok = status.instance_status().and_then(|summary| summary.status()) == Some(&SummaryStatus::Ok);
        let system_ok = status.system_status().and_then(|summary| summary.status()) == Some(&SummaryStatus::Ok);
        instance_ok && system_ok
    });
    if !passed {
        progress.set_state("running, waiting for status checks");
    }
    Ok(passed)
}

/// The state of the setup as the serial console shows it.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleVerdict {
    Ready,
    Waiting,
    Failed { line: String, excerpt: String },
    OtherUserData { reported: String },
}

/// Reads the newest marker line of the console text. The console can also hold lines of an
/// earlier boot, so the last marker wins.
pub fn read_console(text: &str, user_data_sha256: &str) -> ConsoleVerdict {
    let lines: Vec<&str> = text.lines().collect();
    let marker = lines
        .iter()
        .enumerate()
        .rev()
        .find(|(_, line)| marker_field(line, READY_MARKER).is_some() || marker_field(line, FAILED_MARKER).is_some());
    let Some((index, line)) = marker else {
        return ConsoleVerdict::Waiting;
    };

    if marker_field(line, FAILED_MARKER).is_some() {
        let start = (index + 1).saturating_sub(CONSOLE_EXCERPT_LINES);
        return ConsoleVerdict::Failed { line: line.trim().to_owned(), excerpt: lines[start..=index].join("\n") };
    }
    let reported = marker_field(line, READY_MARKER).unwrap_or_default();
    if reported == user_data_sha256 {
        ConsoleVerdict::Ready
    } else {
        ConsoleVerdict::OtherUserData { reported: reported.to_owned() }
    }
}

/// Returns the `sha256=` value of a line that starts with `marker` (after any console prefix
/// such as a timestamp).
fn marker_field<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let start = line.find(marker)?;
    let rest = line[start + marker.len()..].strip_prefix(" sha256=")?;
    Some(rest.split_whitespace().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab12";

    #[test]
    fn console_without_marker_is_waiting() {
        assert_eq!(read_console("Booting...\ncloud-init running\n", SHA), ConsoleVerdict::Waiting);
    }

    #[test]
    fn ready_line_with_our_hash_is_ready() {
        let text = format!("boot\n[  42.1] {READY_MARKER} sha256={SHA}\n");
        assert_eq!(read_console(&text, SHA), ConsoleVerdict::Ready);
    }

    #[test]
    fn ready_line_with_other_hash_is_reported() {
        let text = format!("{READY_MARKER} sha256=ffff\n");
        assert_eq!(read_console(&text, SHA), ConsoleVerdict::OtherUserData { reported: "ffff".into() });
    }

    #[test]
    fn failed_line_comes_with_excerpt() {
        let text = format!("apt error\n{FAILED_MARKER} sha256={SHA} reason=ping-failed\n");
        let ConsoleVerdict::Failed { line, excerpt } = read_console(&text, SHA) else { panic!("not failed") };
        assert_eq!(line, format!("{FAILED_MARKER} sha256={SHA} reason=ping-failed"));
        assert!(excerpt.starts_with("apt error\n"), "{excerpt}");
    }

    #[test]
    fn newest_marker_wins() {
        let text = format!("{FAILED_MARKER} sha256={SHA} reason=x\nreboot\n{READY_MARKER} sha256={SHA}\n");
        assert_eq!(read_console(&text, SHA), ConsoleVerdict::Ready);
    }

    #[test]
    fn marker_mentioned_in_script_text_is_ignored() {
        let text = "ready_marker='openemr-redis-ready'\n";
        assert_eq!(read_console(text, SHA), ConsoleVerdict::Waiting);
    }

    #[test]
    fn backoff_grows_to_ten_seconds() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [1000, 1500, 2250, 3375, 5062, 7593, 10000, 10000]);
    }
}
