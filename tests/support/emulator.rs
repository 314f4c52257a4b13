//! Shared by the tests that run `xtask-aws` against the moto EC2 emulator: start moto on
//! loopback, seed it with the guide's network, and run the real binary pointed at it. Each test
//! binary uses a different part, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::process::{Command, Output};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName, SecurityGroup};
use camino::{Utf8Path, Utf8PathBuf};
use xtask::moto::{self, MotoServer};
use xtask::project::Project;
use xtask::settings::Settings;
use xtask_aws::sandbox::{self, SeededNetwork};

/// Settings for the emulator: the guide's names, and status checks for readiness, since moto's
/// console output is fixed text.
pub const TEST_SETTINGS: &str = "\
region: us-east-1
app_security_group: openemr-app
readiness: status-checks
timezone: America/New_York
file_system_id: fs-0123abcd
";

/// A seeded emulator and a temporary output directory, both gone when dropped.
pub struct Emulator {
    pub client: Client,
    pub network: SeededNetwork,
    pub settings_path: Utf8PathBuf,
    pub output_dir: Utf8PathBuf,
    /// The temporary directory that contains the settings, the output directory and moto's log.
    pub root: Utf8PathBuf,
    endpoint: String,
    _moto: MotoServer,
    _directory: tempfile::TempDir,
}

impl Emulator {
    /// Starts moto and seeds it. Fails with the install command when moto is missing.
    pub async fn start() -> Emulator {
        Emulator::start_with_settings(TEST_SETTINGS).await
    }

    pub async fn start_with_settings(settings_text: &str) -> Emulator {
        let directory = tempfile::tempdir().expect("temporary directory");
        let root = Utf8PathBuf::from_path_buf(directory.path().to_owned()).expect("UTF-8 temporary path");
        let output_dir = root.join("out");
        std::fs::create_dir_all(&output_dir).unwrap();

        let moto = sandbox::start_emulator(&moto_server(), &root).expect("moto_server starts");
        let client = sandbox::emulator_client(moto.endpoint());
        let settings_path = root.join("deploy.yaml");
        std::fs::write(&settings_path, settings_text).unwrap();
        let settings = Settings::load(&settings_path).expect("test settings parse");
        let network = sandbox::seed_network(&client, &settings).await.expect("seeding the emulator");

        Emulator {
            client,
            network,
            settings_path,
            output_dir,
            root,
            endpoint: moto.endpoint().to_owned(),
            _moto: moto,
            _directory: directory,
        }
    }

    /// Runs `xtask-aws ARGS --settings … --output-dir …` with the emulator's environment.
    pub fn run(&self, arguments: &[&str]) -> Output {
        self.command(arguments).output().expect("xtask-aws runs")
    }

    /// Builds the command without running it, for tests that send signals.
    pub fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-aws"));
        command
            .args(arguments)
            .args(["--settings", self.settings_path.as_str(), "--output-dir", self.output_dir.as_str()])
            .envs(sandbox::emulator_environment(&self.endpoint, &self.output_dir))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn output_file(&self, relative: &str) -> Utf8PathBuf {
        self.output_dir.join(relative)
    }

    pub fn read_output(&self, relative: &str) -> String {
        let path = self.output_file(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
    }

    /// Replaces the settings file that every run reads.
    pub fn write_settings(&self, settings_text: &str) {
        std::fs::write(&self.settings_path, settings_text).unwrap();
    }

    /// Copies the checkout's templates to `name` inside the temporary directory, for tests that
    /// edit them and pass the copy with `--templates`.
    pub fn copy_templates(&self, name: &str) -> Utf8PathBuf {
        let source = Project::from_manifest_dir().templates_dir().to_owned();
        let copy = self.root.join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for entry in source.read_dir_utf8().unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        copy
    }

    /// Returns the instances named `openemr-redis` that are not terminated.
    pub async fn live_instances(&self) -> Vec<Instance> {
        let output = self
            .client
            .describe_instances()
            .filters(filter("tag:Name", "openemr-redis"))
            .send()
            .await
            .expect("DescribeInstances on the emulator");
        output
            .reservations()
            .iter()
            .flat_map(|reservation| reservation.instances())
            .filter(|instance| instance.state().and_then(|state| state.name()) != Some(&InstanceStateName::Terminated))
            .cloned()
            .collect()
    }

    /// Returns the state of one instance, whatever it is.
    pub async fn instance_state(&self, instance_id: &str) -> InstanceStateName {
        let output = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("DescribeInstances on the emulator");
        let instance = output.reservations().iter().flat_map(|reservation| reservation.instances()).next();
        let instance = instance.unwrap_or_else(|| panic!("instance {instance_id} not in DescribeInstances"));
        instance.state().and_then(|state| state.name()).cloned().expect("instance state")
    }

    /// Returns the security groups named `openemr-redis`, the group `deploy-redis` creates.
    pub async fn redis_groups(&self) -> Vec<SecurityGroup> {
        let output = self
            .client
            .describe_security_groups()
            .filters(filter("group-name", "openemr-redis"))
            .send()
            .await
            .expect("DescribeSecurityGroups on the emulator");
        output.security_groups().to_vec()
    }
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Returns the emulator executable, or fails the test with how to install it.
pub fn moto_server() -> Utf8PathBuf {
    let path = moto::moto_server_path(&Project::from_manifest_dir());
    assert!(
        path.is_file(),
        "moto_server not found at {path}: run `cargo xtask test`, which installs {} into target/moto-venv, \
         or point {} at a moto_server",
        moto::MOTO_REQUIREMENT,
        moto::MOTO_SERVER_VARIABLE
    );
    path
}

/// Returns stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Snapshots every file under `directory` with its contents, to prove a run changed nothing.
pub fn snapshot(directory: &Utf8Path) -> Vec<(Utf8PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in current.read_dir_utf8().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().to_owned();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name() != Some("moto.log") {
                let modified = entry.metadata().unwrap().modified().unwrap();
                files.push((path.clone(), std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files.sort();
    files
}
