//! `deploy-redis` end to end against the moto EC2 emulator on loopback, through the real binary.

#[path = "support/emulator.rs"]
mod emulator;

use aws_sdk_ec2::types::{HttpTokensState, InstanceAttributeName, VolumeType};
use base64::Engine;
use emulator::{Emulator, describe, filter, snapshot};

fn private_subnet_id(emulator: &Emulator) -> &str {
    let (_, id) = emulator.network.subnet_ids.iter().find(|(name, _)| name == "Private").unwrap();
    id
}

#[tokio::test]
async fn deploy_launches_one_configured_instance() {
    let emulator = Emulator::start().await;

    let output = emulator.run(&["deploy-redis"]);
    assert!(output.status.success(), "{}", describe(&output));

    let instances = emulator.live_instances().await;
    assert_eq!(instances.len(), 1, "instances: {instances:#?}");
    let instance = &instances[0];
    let instance_id = instance.instance_id().unwrap();
    assert_eq!(instance.subnet_id(), Some(private_subnet_id(&emulator)));
    assert_eq!(instance.image_id(), Some("ami-0a1b2c3d4e5f60002"), "the newest Canonical image");
    assert_eq!(instance.instance_type().map(|kind| kind.as_str()), Some("t3.micro"));

    let metadata = instance.metadata_options().expect("metadata options");
    assert_eq!(metadata.http_tokens(), Some(&HttpTokensState::Required), "IMDSv2 required");

    let user_data = emulator
        .client
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let encoded = user_data.user_data().and_then(|value| value.value()).expect("user data");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64 once");
    let generated = emulator.read_output("generated/user-data.yaml");
    assert_eq!(String::from_utf8(decoded).unwrap(), generated, "user data decodes once to the generated file");

    // NOTE: moto 5.2.1 drops DisableApiTermination from RunInstances, so termination protection
    // is checked on the request itself in launch_request.rs.

    let volumes = emulator
        .client
        .describe_volumes()
        .filters(filter("attachment.instance-id", instance_id))
        .send()
        .await
        .unwrap();
    let root_volume = volumes.volumes().first().expect("root volume");
    assert_eq!(root_volume.size(), Some(8), "root volume size");
    assert_eq!(root_volume.volume_type(), Some(&VolumeType::Gp3), "root volume type");
    assert_eq!(root_volume.encrypted(), Some(true), "root volume encrypted");

    let group_ids: Vec<&str> = instance.security_groups().iter().filter_map(|group| group.group_id()).collect();
    assert_eq!(group_ids.len(), 1, "one security group: {group_ids:?}");
    assert_ne!(group_ids[0], emulator.network.decoy_group_id, "decoy group used");
    assert_ne!(group_ids[0], emulator.network.app_group_id, "app group used directly");
    let groups = emulator.client.describe_security_groups().group_ids(group_ids[0]).send().await.unwrap();
    let redis_group = &groups.security_groups()[0];
    assert_eq!(redis_group.vpc_id(), Some(emulator.network.vpc_id.as_str()));
    assert_ne!(redis_group.group_name(), Some("default"), "not the VPC's default group");
    let ingress = redis_group.ip_permissions();
    assert_eq!(ingress.len(), 1, "one ingress rule: {ingress:#?}");
    assert_eq!(ingress[0].ip_protocol(), Some("tcp"));
    assert_eq!((ingress[0].from_port(), ingress[0].to_port()), (Some(6379), Some(6379)));
    let sources: Vec<&str> = ingress[0].user_id_group_pairs().iter().filter_map(|pair| pair.group_id()).collect();
    assert_eq!(sources, [emulator.network.app_group_id.as_str()], "only the app group may connect");
    assert!(ingress[0].ip_ranges().is_empty(), "no CIDR source: {:?}", ingress[0].ip_ranges());

    let options: serde_yaml::Value = serde_yaml::from_str(&emulator.read_output("openemr/.ebextensions/00-options.config")).unwrap();
    let environment = &options["option_settings"]["aws:elasticbeanstalk:application:environment"];
    assert_eq!(environment["TIMEZONE"], serde_yaml::Value::from("America/New_York"));
    assert_eq!(environment["FILE_SYSTEM_ID"], serde_yaml::Value::from("fs-0123abcd"));
    let private_ip = instance.private_ip_address().expect("private IP");
    assert_eq!(environment["REDIS_IP"], serde_yaml::Value::from(private_ip), "REDIS_IP is the instance's private IP");

    let record = emulator.read_output("generated/deployment.yaml");
    assert!(record.contains(&format!("instance_id: {instance_id}")), "{record}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(instance_id), "summary names the instance: {stdout}");
    assert!(stdout.contains(private_ip), "summary names the private IP: {stdout}");
}

#[tokio::test]
async fn second_deploy_changes_nothing() {
    let emulator = Emulator::start().await;
    let first = emulator.run(&["deploy-redis"]);
    assert!(first.status.success(), "{}", describe(&first));
    let before = snapshot(&emulator.output_dir);
    let instances_before = emulator.live_instances().await;

    let second = emulator.run(&["deploy-redis"]);
    assert!(second.status.success(), "{}", describe(&second));

    let instances_after = emulator.live_instances().await;
    assert_eq!(instances_after.len(), 1, "no second instance: {instances_after:#?}");
    assert_eq!(instances_after[0].instance_id(), instances_before[0].instance_id());
    assert_eq!(snapshot(&emulator.output_dir), before, "no file changed");
    assert!(String::from_utf8_lossy(&second.stderr).contains("reusing instance"), "{}", describe(&second));
}

#[tokio::test]
async fn codegen_check_catches_hand_edits_after_deploy() {
    let emulator = Emulator::start().await;
    let deploy = emulator.run(&["deploy-redis"]);
    assert!(deploy.status.success(), "{}", describe(&deploy));

    let check = emulator.run(&["codegen", "--check"]);
    assert!(check.status.success(), "fresh after deploy: {}", describe(&check));

    let options = emulator.output_file("openemr/.ebextensions/00-options.config");
    let edited = std::fs::read_to_string(&options).unwrap().replace("America/New_York", "Europe/Paris");
    std::fs::write(&options, edited).unwrap();
    let check = emulator.run(&["codegen", "--check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "stale file must fail: {}", describe(&check));
    assert!(stderr.contains("00-options.config"), "names the file: {stderr}");
    assert!(stderr.contains("cargo xtask codegen"), "names the command: {stderr}");
    assert!(stderr.contains("-    TIMEZONE: \"Europe/Paris\""), "shows the diff: {stderr}");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let emulator = Emulator::start().await;
    let before = snapshot(&emulator.output_dir);

    let output = emulator.run(&["deploy-redis", "--dry-run"]);
    assert!(output.status.success(), "{}", describe(&output));

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("  instance           launch  openemr-redis: t3.micro"), "{stdout}");
    assert!(stdout.contains("  security group     create  openemr-redis: TCP 6379 from sg-"), "{stdout}");
    assert!(stdout.contains("#cloud-config"), "prints the user data: {stdout}");
    assert!(stdout.contains("+    REDIS_IP: \"<assigned at launch>\""), "diff of the options file: {stdout}");
    assert!(emulator.live_instances().await.is_empty(), "no instance launched");
    let groups = emulator
        .client
        .describe_security_groups()
        .filters(filter("group-name", "openemr-redis"))
        .send()
        .await
        .unwrap();
    assert!(groups.security_groups().is_empty(), "no group created");
    assert_eq!(snapshot(&emulator.output_dir), before, "no file written");
}

#[tokio::test]
async fn dry_run_appends_markdown_to_job_summary() {
    let emulator = Emulator::start().await;
    let summary = emulator.output_file("../step-summary.md");
    std::fs::write(&summary, "# Earlier step\n").unwrap();

    let output = emulator.command(&["deploy-redis", "--dry-run", "--markdown"]).env("GITHUB_STEP_SUMMARY", summary.as_str()).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(written.starts_with("# Earlier step\n## Redis deploy plan (us-east-1)\n"), "appended, not replaced: {written}");
    assert!(written.contains("| instance | openemr-redis | **launch** |"), "{written}");
    assert!(written.contains("```diff\n--- a/"), "{written}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("## Redis deploy plan"), "{}", describe(&output));
}

#[tokio::test]
async fn markdown_goes_to_stdout_without_job_summary() {
    let emulator = Emulator::start().await;
    let summary = emulator.output_file("../step-summary.md");
    std::fs::write(&summary, "# Earlier step\n").unwrap();

    let output = emulator.command(&["deploy-redis", "--dry-run", "--markdown"]).env_remove("GITHUB_STEP_SUMMARY").output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    assert!(String::from_utf8_lossy(&output.stdout).contains("## Redis deploy plan (us-east-1)"), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), "# Earlier step\n", "nothing written to the summary file");
}

/// Builds an SSM client for the emulator, with fake credentials and its loopback endpoint.
fn ssm_client(emulator: &Emulator) -> aws_sdk_ssm::Client {
    let endpoint = emulator.endpoint().to_owned();
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "moto-test"))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// Reads the password and version of the parameter back from the emulator's SSM.
async fn stored_password(emulator: &Emulator) -> (String, i64) {
    let output = ssm_client(emulator)
        .get_parameter()
        .name("/openemr/redis/password")
        .with_decryption(true)
        .send()
        .await
        .expect("GetParameter on the emulator");
    let parameter = output.parameter().expect("a parameter");
    assert_eq!(parameter.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString));
    (parameter.value().expect("a value").to_owned(), parameter.version())
}

/// Lists every file under `directory` with its contents.
fn files_with_text(directory: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_with_text(&path));
        } else {
            files.push((path.clone(), String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()));
        }
    }
    files
}

#[tokio::test]
async fn password_is_created_once_and_reused() {
    let emulator = Emulator::start().await;

    let first = emulator.run(&["deploy-redis"]);
    assert!(first.status.success(), "{}", describe(&first));
    let (password, version) = stored_password(&emulator).await;
    assert!(password.len() >= 32, "the password has {} characters", password.len());
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()), "the password is letters and digits only");
    assert!(String::from_utf8_lossy(&first.stderr).contains("created SSM SecureString parameter"), "{}", describe(&first));

    let second = emulator.run(&["deploy-redis"]);
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(stored_password(&emulator).await, (password.clone(), version), "the second deploy reuses it");

    let options: serde_yaml::Value = serde_yaml::from_str(&emulator.read_output("openemr/.ebextensions/00-options.config")).unwrap();
    let arn = options["option_settings"]["aws:elasticbeanstalk:application:environmentsecrets"]["REDIS_PASSWORD"].as_str();
    assert_eq!(arn, Some("arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password"), "{options:?}");
    let user_data = emulator.read_output("generated/user-data.yaml");
    let hash = xtask::codegen::sha256_hex(password.as_bytes());
    assert!(user_data.contains(&format!("on \"#{hash}\"")), "the user data carries the password's hash");
    // The sandbox's readiness reads no console, so no certificate file is written.
    assert!(!emulator.output_file("openemr/.ebextensions/redis-ca.pem").exists(), "no certificate without a console");

    for output in [&first, &second] {
        assert!(!String::from_utf8_lossy(&output.stdout).contains(&password), "stdout shows the password");
        assert!(!String::from_utf8_lossy(&output.stderr).contains(&password), "stderr shows the password");
    }
    for (path, text) in files_with_text(emulator.output_dir.as_std_path()) {
        assert!(!text.contains(&password), "{} contains the password", path.display());
    }
    let checkout = xtask::project::Project::from_manifest_dir().root().to_owned();
    let tracked = std::process::Command::new("git").arg("-C").arg(checkout.as_str()).args(["ls-files", "-z"]).output().unwrap();
    assert!(tracked.status.success(), "git ls-files failed");
    for name in String::from_utf8_lossy(&tracked.stdout).split('\0').filter(|name| !name.is_empty()) {
        let text = std::fs::read(checkout.join(name)).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        assert!(!text.unwrap_or_default().contains(&password), "tracked file {name} contains the password");
    }
    for (path, text) in files_with_text(checkout.join("generated").as_std_path()) {
        assert!(!text.contains(&password), "{} contains the password", path.display());
    }
}

#[tokio::test]
async fn rotation_replaces_password_and_names_redeploy() {
    let emulator = Emulator::start().await;
    let deploy = emulator.run(&["deploy-redis"]);
    assert!(deploy.status.success(), "{}", describe(&deploy));
    let (old_password, old_version) = stored_password(&emulator).await;

    let rotate = emulator.run(&["rotate-redis-password"]);
    assert!(rotate.status.success(), "{}", describe(&rotate));

    let (new_password, new_version) = stored_password(&emulator).await;
    assert_ne!(new_password, old_password, "the password changed");
    assert!(new_version > old_version, "a new version: {new_version} after {old_version}");
    let stdout = String::from_utf8_lossy(&rotate.stdout);
    assert!(stdout.contains("cargo xtask deploy-redis --replace"), "names the Redis redeploy: {stdout}");
    assert!(stdout.contains("deploy OpenEMR"), "names the app deploy: {stdout}");
    assert!(!stdout.contains(&new_password), "stdout shows the password");
    assert!(!String::from_utf8_lossy(&rotate.stderr).contains(&new_password), "stderr shows the password");

    let stale = emulator.run(&["deploy-redis"]);
    assert!(!stale.status.success(), "the old instance has the old hash: {}", describe(&stale));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("--replace"), "{}", describe(&stale));
}

/// Runs `xtask-aws sandbox`, the README's main command, into `output_dir`.
fn run_sandbox(output_dir: &camino::Utf8Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xtask-aws"))
        .args(["sandbox", "--output-dir", output_dir.as_str()])
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("xtask-aws runs")
}

#[test]
fn sandbox_deploys_into_its_output_dir() {
    emulator::moto_server();
    let directory = tempfile::tempdir().unwrap();
    let output_dir = camino::Utf8Path::from_path(directory.path()).unwrap();

    let output = run_sandbox(output_dir);
    assert!(output.status.success(), "{}", describe(&output));

    let record = std::fs::read_to_string(output_dir.join("generated/deployment.yaml")).unwrap();
    assert!(record.contains("private_ip: 10.0.1."), "an address of the Private subnet: {record}");
    let options = std::fs::read_to_string(output_dir.join("openemr/.ebextensions/00-options.config")).unwrap();
    assert!(options.contains("REDIS_IP: \"10.0.1."), "{options}");
    let settings = std::fs::read_to_string(output_dir.join("deploy.yaml")).unwrap();
    assert!(settings.contains("readiness: status-checks"), "{settings}");
}

#[test]
fn second_sandbox_on_same_dir_is_rejected() {
    emulator::moto_server();
    let directory = tempfile::tempdir().unwrap();
    let output_dir = camino::Utf8Path::from_path(directory.path()).unwrap();
    let lock = std::fs::File::create(output_dir.join("sandbox.lock")).unwrap();
    lock.lock().unwrap();

    let output = run_sandbox(output_dir);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(stderr.contains("another `cargo xtask sandbox` is running"), "{stderr}");
    assert!(!output_dir.join("generated").exists(), "nothing written: {}", describe(&output));
}

#[tokio::test]
async fn status_reports_rotated_password() {
    let emulator = Emulator::start().await;
    let deploy = emulator.run(&["deploy-redis"]);
    assert!(deploy.status.success(), "{}", describe(&deploy));

    let in_sync = emulator.run(&["status"]);
    let stdout = String::from_utf8_lossy(&in_sync.stdout);
    assert_eq!(in_sync.status.code(), Some(0), "{}", describe(&in_sync));
    assert!(stdout.contains("ok    password"), "the password is checked: {stdout}");

    let rotate = emulator.run(&["rotate-redis-password"]);
    assert!(rotate.status.success(), "{}", describe(&rotate));
    let drift = emulator.run(&["status"]);
    let stdout = String::from_utf8_lossy(&drift.stdout);
    assert_eq!(drift.status.code(), Some(3), "{}", describe(&drift));
    assert!(stdout.contains("DRIFT password"), "{stdout}");
    assert!(stdout.contains("--replace"), "names the way out: {stdout}");
    let (password, _) = stored_password(&emulator).await;
    assert!(!stdout.contains(&password), "status never prints the password");
}
