//! Bad settings, environment, AWS state and templates through the real `xtask-aws` binary. Each
//! case must fail with a message that names the value, the place and the fix, change no file
//! under the output directory, and create nothing in the moto EC2 emulator.

#[path = "support/emulator.rs"]
mod emulator;

use std::process::{Command, Output};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use camino::Utf8PathBuf;
use emulator::{Emulator, TEST_SETTINGS, describe, snapshot};

/// Variables that could hand the binary a region or credentials from outside the test.
const AWS_IDENTITY_VARIABLES: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// An emulator whose output directory already contains the files `codegen` writes from the valid
/// test settings, so that "no file changed" compares real files.
struct Setup {
    emulator: Emulator,
    before: Vec<(Utf8PathBuf, Vec<u8>, std::time::SystemTime)>,
}

impl Setup {
    async fn start() -> Setup {
        let emulator = Emulator::start().await;
        let codegen = emulator.run(&["codegen"]);
        assert!(codegen.status.success(), "codegen with the valid settings: {}", describe(&codegen));
        let before = snapshot(&emulator.output_dir);
        assert!(!before.is_empty(), "codegen wrote the generated files");
        Setup { emulator, before }
    }

    /// Runs `arguments` and checks the failure, its message, and that nothing changed.
    async fn assert_rejected(&self, arguments: &[&str], expected_fragments: &[&str]) {
        let output = self.emulator.run(arguments);
        self.assert_failed_cleanly(arguments, &output, expected_fragments).await;
    }

    async fn assert_failed_cleanly(&self, arguments: &[&str], output: &Output, expected_fragments: &[&str]) {
        let command = arguments.join(" ");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "`{command}` must fail: {}", describe(output));
        assert!(stderr.starts_with("error: "), "`{command}` prints one error: {}", describe(output));
        for fragment in expected_fragments {
            assert!(stderr.contains(fragment), "`{command}` message contains {fragment:?}: {}", describe(output));
        }
        assert_eq!(snapshot(&self.emulator.output_dir), self.before, "`{command}` changed no file");
        assert_no_resources(&self.emulator, &command).await;
    }
}

async fn assert_no_resources(emulator: &Emulator, command: &str) {
    let instances = emulator.live_instances().await;
    assert!(instances.is_empty(), "`{command}` launched no instance: {instances:#?}");
    let groups = emulator.redis_groups().await;
    assert!(groups.is_empty(), "`{command}` created no security group: {groups:#?}");
}

/// Writes `settings_text` and checks that `deploy-redis` and `codegen` both reject it alike.
async fn assert_settings_rejected(settings_text: &str, expected_fragments: &[&str]) {
    let setup = Setup::start().await;
    setup.emulator.write_settings(settings_text);
    setup.assert_rejected(&["deploy-redis"], expected_fragments).await;
    setup.assert_rejected(&["codegen"], expected_fragments).await;
}

fn test_settings_with(line: &str) -> String {
    format!("{TEST_SETTINGS}{line}\n")
}

// ---------------------------------------------------------------------------------------------
// Settings

#[tokio::test]
async fn settings_syntax_error_has_line_and_column() {
    let settings = TEST_SETTINGS.replace("app_security_group: openemr-app", "app_security_group: openemr-app: extra");
    assert_settings_rejected(&settings, &["deploy.yaml:2:32:", "mapping values are not allowed", "README.md#settings"]).await;
}

#[tokio::test]
async fn settings_unknown_key_lists_known_keys() {
    let expected = ["deploy.yaml:6:1:", "unknown field `instance_typ`", "expected one of", "`instance_type`"];
    assert_settings_rejected(&test_settings_with("instance_typ: t3.small"), &expected).await;
}

#[tokio::test]
async fn settings_wrong_type_names_key() {
    let expected = ["deploy.yaml:6:18:", "root_volume_gib", "\"eight\"", "expected a size in GiB"];
    assert_settings_rejected(&test_settings_with("root_volume_gib: eight"), &expected).await;
}

#[tokio::test]
async fn settings_timezone_no_is_invalid() {
    // YAML 1.1 parsers read an unquoted `no` as false. serde_yaml follows YAML 1.2 and reads the
    // string "no", which is no time zone either.
    let settings = TEST_SETTINGS.replace("timezone: America/New_York", "timezone: no");
    let fix = "use a name from the IANA time zone database";
    assert_settings_rejected(&settings, &["deploy.yaml:4:11:", "timezone", "invalid time zone `no`", fix]).await;
}

#[tokio::test]
async fn settings_timezone_with_space_is_invalid() {
    let settings = TEST_SETTINGS.replace("America/New_York", "America/New York");
    let fix = "such as `America/New_York`";
    assert_settings_rejected(&settings, &["deploy.yaml:4:11:", "timezone", "invalid time zone `America/New York`", fix]).await;
}

#[tokio::test]
async fn settings_invalid_efs_id() {
    let settings = TEST_SETTINGS.replace("fs-0123abcd", "fs-12345");
    let expected = ["deploy.yaml:5:17:", "file_system_id", "`fs-12345`", "8 or 17 lowercase hex digits", "aws efs describe-file-systems"];
    assert_settings_rejected(&settings, &expected).await;
}

#[tokio::test]
async fn settings_empty_file() {
    let expected = ["deploy.yaml: settings file is empty", "`app_security_group`", "`timezone`", "`file_system_id`"];
    assert_settings_rejected("", &expected).await;
}

#[tokio::test]
async fn settings_missing_file() {
    let setup = Setup::start().await;
    std::fs::remove_file(&setup.emulator.settings_path).unwrap();

    let path = setup.emulator.settings_path.to_string();
    let expected = ["failed to read settings file", path.as_str(), "pass another with --settings PATH", "No such file"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
    setup.assert_rejected(&["codegen"], &expected).await;
}

// ---------------------------------------------------------------------------------------------
// Environment

/// Runs `deploy-redis` with no region or credentials from the environment. The emulator's
/// endpoint stays set, the profile files stay pointed at nothing, and the instance metadata
/// address stays disabled, so no provider can reach AWS.
fn run_without_identity(emulator: &Emulator) -> Output {
    let mut command: Command = emulator.command(&["deploy-redis"]);
    for variable in AWS_IDENTITY_VARIABLES {
        command.env_remove(variable);
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    command.output().expect("xtask-aws runs")
}

#[tokio::test]
async fn no_region_names_the_ways_to_set_it() {
    let setup = Setup::start().await;
    setup.emulator.write_settings(&TEST_SETTINGS.replace("region: us-east-1\n", ""));

    let output = run_without_identity(&setup.emulator);
    let expected = ["no AWS region configured", "`region` in the settings file", "AWS_REGION", "~/.aws/config"];
    setup.assert_failed_cleanly(&["deploy-redis"], &output, &expected).await;
}

#[tokio::test]
async fn no_credentials_names_the_ways_to_provide_them() {
    let setup = Setup::start().await;

    let output = run_without_identity(&setup.emulator);
    let expected = ["no AWS credentials", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "aws sso login"];
    setup.assert_failed_cleanly(&["deploy-redis"], &output, &expected).await;
}

// ---------------------------------------------------------------------------------------------
// AWS state

#[tokio::test]
async fn vpc_not_found() {
    let setup = Setup::start().await;
    setup.emulator.write_settings(&test_settings_with("vpc_name: missing-vpc"));

    let expected = ["VPC with Name tag `missing-vpc` not found", "check `vpc_name` in the settings"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
}

#[tokio::test]
async fn two_vpcs_with_same_name() {
    let setup = Setup::start().await;
    let second = setup
        .emulator
        .client
        .create_vpc()
        .cidr_block("10.1.0.0/16")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Vpc)
                .tags(Tag::builder().key("Name").value("openemr-vpc").build())
                .build(),
        )
        .send()
        .await
        .expect("creating the second VPC");
    let second_id = second.vpc().and_then(|vpc| vpc.vpc_id()).expect("VPC id").to_owned();

    let first_id = setup.emulator.network.vpc_id.clone();
    let expected = ["2 VPCs have Name tag `openemr-vpc`", first_id.as_str(), second_id.as_str(), "`vpc_name`"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
}

#[tokio::test]
async fn subnet_not_found_in_vpc() {
    let setup = Setup::start().await;
    setup.emulator.write_settings(&test_settings_with("subnet_name: Nowhere"));

    let vpc_id = setup.emulator.network.vpc_id.clone();
    let expected = ["subnet with Name tag `Nowhere` not found in VPC openemr-vpc", vpc_id.as_str(), "check `subnet_name`"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
}

#[tokio::test]
async fn app_security_group_not_found() {
    let setup = Setup::start().await;
    setup.emulator.write_settings(&TEST_SETTINGS.replace("app_security_group: openemr-app", "app_security_group: nope"));

    let vpc_id = setup.emulator.network.vpc_id.clone();
    let expected = ["app security group with Name tag `nope` not found", vpc_id.as_str(), "set `app_security_group`"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
}

#[tokio::test]
async fn no_ubuntu_image_for_release() {
    let setup = Setup::start().await;
    setup.emulator.write_settings(&test_settings_with("ubuntu_release: \"22.04\""));

    let expected = ["no Ubuntu 22.04 image for x86_64", "ubuntu-jammy-22.04-amd64-server-*", "pick another `ubuntu_release`"];
    setup.assert_rejected(&["deploy-redis"], &expected).await;
}

// ---------------------------------------------------------------------------------------------
// Templates

#[tokio::test]
async fn user_data_over_limit() {
    let setup = Setup::start().await;
    let templates = setup.emulator.copy_templates("large-templates");
    let redis_conf = templates.join("redis.conf.j2");
    let mut text = std::fs::read_to_string(&redis_conf).unwrap();
    for line in 0..220 {
        text.push_str(&format!("# Padding comment line {line:03} that makes the user data exceed EC2's limit.\n"));
    }
    std::fs::write(&redis_conf, text).unwrap();

    let shorten = format!("shorten {templates}/user-data.yaml.j2");
    let expected = ["rendered user data is", "over EC2's limit of 16384", shorten.as_str()];
    setup.assert_rejected(&["deploy-redis", "--templates", templates.as_str()], &expected).await;
    setup.assert_rejected(&["codegen", "--templates", templates.as_str()], &expected).await;
}

#[tokio::test]
async fn undefined_template_variable() {
    let setup = Setup::start().await;
    let templates = setup.emulator.copy_templates("broken-templates");
    let redis_conf = templates.join("redis.conf.j2");
    let mut text = std::fs::read_to_string(&redis_conf).unwrap();
    let line = text.lines().count() + 1;
    text.push_str("maxclients {{ nonexistent }}\n");
    std::fs::write(&redis_conf, text).unwrap();

    let location = format!("{templates}/redis.conf.j2:{line}:");
    let expected = [location.as_str(), "undefined value", "`nonexistent`", "check the variable's spelling"];
    setup.assert_rejected(&["deploy-redis", "--templates", templates.as_str()], &expected).await;
    setup.assert_rejected(&["codegen", "--templates", templates.as_str()], &expected).await;
}
