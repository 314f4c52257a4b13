//! `deploy-redis` under the faults EC2 really produces, driven through `aws-smithy-mocks`. The
//! client has a region, fake static credentials and the mock HTTP client, so no request leaves
//! the process, and tokio's clock is paused, so backoffs and timeouts take no real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput;
use aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_instance_attribute::DescribeInstanceAttributeOutput;
use aws_sdk_ec2::operation::describe_instance_status::DescribeInstanceStatusOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::operation::get_console_output::GetConsoleOutputOutput;
use aws_sdk_ec2::operation::run_instances::RunInstancesOutput;
use aws_sdk_ec2::types::{
    AttributeValue, Image, Instance, InstanceState, InstanceStateName, InstanceStatus, InstanceStatusSummary,
    InstanceType, IpPermission, Reservation, SecurityGroup, StateReason, Subnet, SummaryStatus, Tag, UserIdGroupPair,
    Vpc,
};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use camino::{Utf8Path, Utf8PathBuf};
use xtask::codegen::{self, CERTIFICATE_MARKER, FAILED_MARKER, READY_MARKER};
use xtask::flags::DeployRedis;
use xtask::project::Project;
use xtask::record::DeploymentRecord;
use xtask_aws::deploy_redis::{self, Clients, Found, Outcome, Prepared};
use xtask_aws::ec2::image::Image as FoundImage;
use xtask_aws::ec2::network::{SecurityGroup as FoundGroup, Subnet as FoundSubnet, Vpc as FoundVpc};
use xtask_aws::ec2::{MANAGED_BY_KEY, MANAGED_BY_VALUE};

const REGION: &str = "us-east-1";
const VPC_ID: &str = "vpc-0a1b2c3d4e5f60001";
const SUBNET_ID: &str = "subnet-0a1b2c3d4e5f60001";
const ZONE: &str = "us-east-1a";
const APP_GROUP_ID: &str = "sg-0a1b2c3d4e5f60001";
const REDIS_GROUP_ID: &str = "sg-0a1b2c3d4e5f60002";
const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60001";
const INSTANCE_ID: &str = "i-0a1b2c3d4e5f60001";
const PRIVATE_IP: &str = "10.0.1.23";
const INSTANCE_NAME: &str = "openemr-redis";
const PARAMETER_NAME: &str = "/openemr/redis/password";
const PARAMETER_ARN: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password";
/// The password the mocked SSM returns, made up here and used nowhere else.
const TEST_PASSWORD: &str = "MockOnlyPassword0123456789abcdefghijklmn";

/// SDK attempts per operation, so a throttled call is retried a few times before it fails.
const MAX_ATTEMPTS: u32 = 4;

/// A settings file and an output root, both in a temporary directory. The output root starts
/// empty, so any file in it was written by the deploy.
struct Workspace {
    _directory: tempfile::TempDir,
    output_root: Utf8PathBuf,
    project: Project,
    prepared: Prepared,
}

impl Workspace {
    /// Waits for the console line that the instance prints once Redis responded to PING.
    fn with_console_readiness() -> Workspace {
        Workspace::with_settings("readiness: redis-ping\n")
    }

    /// Appends `extra_settings` to the three required keys.
    fn with_settings(extra_settings: &str) -> Workspace {
        let directory = tempfile::tempdir().expect("temporary directory");
        let root = Utf8Path::from_path(directory.path()).expect("temporary directory path is UTF-8").to_owned();
        let settings_path = root.join("deploy.yaml");
        let settings = format!(
            "app_security_group: openemr-app\ntimezone: America/New_York\nfile_system_id: fs-0123abcd\n{extra_settings}"
        );
        std::fs::write(&settings_path, settings).expect("settings file written");

        let output_root = root.join("output");
        let project = Project::from_manifest_dir().with_output_root(output_root.clone());
        let prepared = Prepared::load(&project, &settings_path).expect("settings load and user data renders");
        // The deploy renders the user data with the hash of the password in SSM, as here.
        let password_sha256 = codegen::sha256_hex(TEST_PASSWORD.as_bytes());
        let prepared = prepared.with_password_sha256(&project, Some(&password_sha256)).expect("user data renders");
        Workspace { _directory: directory, output_root, project, prepared }
    }

    fn options_file(&self) -> Utf8PathBuf {
        self.project.ebextensions_dir().join("00-options.config")
    }
}

fn default_flags() -> DeployRedis {
    DeployRedis { dry_run: false, replace: false, new_launch: false, timeout: None, markdown: None }
}

async fn run_deploy(ec2: &Ec2, workspace: &Workspace, flags: &DeployRedis) -> anyhow::Result<Outcome> {
    let clients = Clients { ec2: ec2.client(), ssm: ssm_client() };
    deploy_redis::deploy(&clients, REGION, &workspace.project, &workspace.prepared, flags).await
}

/// An SSM client whose GetParameter returns the password parameter an earlier deploy created.
fn ssm_client() -> aws_sdk_ssm::Client {
    use aws_sdk_ssm::operation::get_parameter::GetParameterOutput;
    use aws_sdk_ssm::types::{Parameter, ParameterType};

    let get_parameter = mock!(aws_sdk_ssm::Client::get_parameter).then_output(|| {
        let parameter = Parameter::builder()
            .name(PARAMETER_NAME)
            .r#type(ParameterType::SecureString)
            .value(TEST_PASSWORD)
            .arn(PARAMETER_ARN)
            .version(1)
            .build();
        GetParameterOutput::builder().parameter(parameter).build()
    });
    let interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).with_rule(&get_parameter);
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new(REGION))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("test", "test", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// Records the form body of every attempt the SDK transmits, retries included, because
/// `match_requests` is called only for the first attempt of an operation.
#[derive(Debug, Clone, Default)]
struct RequestLog(Arc<Mutex<Vec<String>>>);

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        self.0.lock().expect("request log lock").push(String::from_utf8_lossy(body).into_owned());
        Ok(())
    }
}

impl RequestLog {
    /// Returns the EC2 `Action` of every attempt, in the order sent.
    fn actions(&self) -> Vec<String> {
        let bodies = self.0.lock().expect("request log lock");
        bodies.iter().map(|body| form_value(body, "Action").unwrap_or_default().to_owned()).collect()
    }

    /// Returns `parameter` of every attempt of `action`, still percent-encoded as sent.
    fn values(&self, action: &str, parameter: &str) -> Vec<String> {
        let bodies = self.0.lock().expect("request log lock");
        bodies
            .iter()
            .filter(|body| form_value(body, "Action") == Some(action))
            .map(|body| form_value(body, parameter).unwrap_or_default().to_owned())
            .collect()
    }
}

fn form_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&').find_map(|pair| pair.split_once('=').filter(|(key, _)| *key == name).map(|(_, value)| value))
}

/// Builds a client whose responses come from `rules` and that records every attempt in `requests`.
fn mock_client(rules: &[&Rule], requests: &RequestLog) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(create_mock_http_client())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .interceptor(interceptor)
        .interceptor(requests.clone())
        .build();
    Client::from_conf(config)
}

/// One rule per EC2 call of a deploy. `fresh_account` responds like an account where the network,
/// the app group and the image exist and nothing of ours does. Each test replaces the rules of
/// its fault, and a call that no rule matches panics inside the SDK, which fails the test.
struct Ec2 {
    describe_vpcs: Rule,
    describe_subnets: Rule,
    describe_app_group: Rule,
    describe_redis_group: Rule,
    describe_images: Rule,
    find_instance: Rule,
    describe_user_data: Rule,
    create_security_group: Rule,
    authorize_ingress: Rule,
    run_instances: Rule,
    describe_instance: Rule,
    get_console_output: Rule,
    describe_instance_status: Rule,
    requests: RequestLog,
}

impl Ec2 {
    fn fresh_account(workspace: &Workspace) -> Ec2 {
        let ready_console = ready_console_text(&workspace.prepared.user_data_sha256);
        let user_data = workspace.prepared.user_data.contents.clone();
        Ec2 {
            describe_vpcs: mock!(Client::describe_vpcs).then_output(|| {
                DescribeVpcsOutput::builder().vpcs(Vpc::builder().vpc_id(VPC_ID).tags(name_tag("openemr-vpc")).build()).build()
            }),
            describe_subnets: mock!(Client::describe_subnets).then_output(|| {
                let subnet = Subnet::builder().subnet_id(SUBNET_ID).availability_zone(ZONE).vpc_id(VPC_ID).build();
                DescribeSubnetsOutput::builder().subnets(subnet).build()
            }),
            describe_app_group: mock!(Client::describe_security_groups)
                .match_requests(|input| has_filter(input.filters(), "tag:Name", "openemr-app"))
                .then_output(|| {
                    let group = SecurityGroup::builder()
                        .group_id(APP_GROUP_ID)
                        .group_name("openemr-app")
                        .vpc_id(VPC_ID)
                        .tags(name_tag("openemr-app"))
                        .build();
                    DescribeSecurityGroupsOutput::builder().security_groups(group).build()
                }),
            describe_redis_group: mock!(Client::describe_security_groups)
                .match_requests(|input| has_filter(input.filters(), "group-name", INSTANCE_NAME))
                .then_output(|| DescribeSecurityGroupsOutput::builder().build()),
            describe_images: mock!(Client::describe_images).then_output(|| {
                let image = Image::builder()
                    .image_id(IMAGE_ID)
                    .name("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115")
                    .creation_date("2025-01-15T00:00:00.000Z")
                    .root_device_name("/dev/sda1")
                    .build();
                DescribeImagesOutput::builder().images(image).build()
            }),
            find_instance: mock!(Client::describe_instances)
                .match_requests(|input| input.instance_ids().is_empty())
                .then_output(|| DescribeInstancesOutput::builder().build()),
            describe_user_data: mock!(Client::describe_instance_attribute)
                .then_output(move || user_data_output(&user_data)),
            create_security_group: mock!(Client::create_security_group)
                .then_output(|| CreateSecurityGroupOutput::builder().group_id(REDIS_GROUP_ID).build()),
            authorize_ingress: mock!(Client::authorize_security_group_ingress)
                .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().r#return(true).build()),
            run_instances: mock!(Client::run_instances).then_output(launched),
            describe_instance: mock!(Client::describe_instances)
                .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
                .then_output(|| instances_output(instance(InstanceStateName::Running))),
            get_console_output: mock!(Client::get_console_output).then_output(move || console_output(&ready_console)),
            describe_instance_status: mock!(Client::describe_instance_status)
                .then_output(|| instance_status_output(SummaryStatus::Ok)),
            requests: RequestLog::default(),
        }
    }

    fn client(&self) -> Client {
        let rules = [
            &self.describe_vpcs,
            &self.describe_subnets,
            &self.describe_app_group,
            &self.describe_redis_group,
            &self.describe_images,
            &self.find_instance,
            &self.describe_user_data,
            &self.create_security_group,
            &self.authorize_ingress,
            &self.run_instances,
            &self.describe_instance,
            &self.get_console_output,
            &self.describe_instance_status,
        ];
        mock_client(&rules, &self.requests)
    }

    /// Makes the Redis group lookup return the group an earlier run created, rule included.
    fn with_existing_redis_group(mut self) -> Ec2 {
        self.describe_redis_group = mock!(Client::describe_security_groups)
            .match_requests(|input| has_filter(input.filters(), "group-name", INSTANCE_NAME))
            .then_output(|| DescribeSecurityGroupsOutput::builder().security_groups(existing_redis_group()).build());
        self
    }

    /// Makes the lookup by Name tag return the instance an earlier run launched, still pending.
    fn with_existing_instance(mut self) -> Ec2 {
        self.find_instance = mock!(Client::describe_instances)
            .match_requests(|input| input.instance_ids().is_empty())
            .then_output(|| instances_output(instance(InstanceStateName::Pending)));
        self
    }

    fn assert_no_mutating_call(&self) {
        assert_eq!(self.create_security_group.num_calls(), 0, "CreateSecurityGroup was sent");
        assert_eq!(self.authorize_ingress.num_calls(), 0, "AuthorizeSecurityGroupIngress was sent");
        assert_eq!(self.run_instances.num_calls(), 0, "RunInstances was sent");
    }
}

fn has_filter(filters: &[aws_sdk_ec2::types::Filter], name: &str, value: &str) -> bool {
    filters.iter().any(|filter| filter.name() == Some(name) && filter.values() == [value])
}

fn name_tag(value: &str) -> Tag {
    Tag::builder().key("Name").value(value).build()
}

fn existing_redis_group() -> SecurityGroup {
    let redis_rule = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(APP_GROUP_ID).build())
        .build();
    SecurityGroup::builder()
        .group_id(REDIS_GROUP_ID)
        .group_name(INSTANCE_NAME)
        .vpc_id(VPC_ID)
        .tags(name_tag(INSTANCE_NAME))
        .tags(Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build())
        .ip_permissions(redis_rule)
        .build()
}

fn instance(state: InstanceStateName) -> Instance {
    instance_builder(state).build()
}

fn instance_builder(state: InstanceStateName) -> aws_sdk_ec2::types::builders::InstanceBuilder {
    Instance::builder()
        .instance_id(INSTANCE_ID)
        .state(InstanceState::builder().name(state).build())
        .private_ip_address(PRIVATE_IP)
        .image_id(IMAGE_ID)
        .instance_type(InstanceType::T3Micro)
        .subnet_id(SUBNET_ID)
        .vpc_id(VPC_ID)
        .tags(name_tag(INSTANCE_NAME))
}

/// Returns the instance in `state`, with EC2's reason for the change.
fn instance_with_reason(state: InstanceStateName, reason: &str) -> Instance {
    let code = reason.split(':').next().unwrap_or_default();
    instance_builder(state).state_reason(StateReason::builder().code(code).message(reason).build()).build()
}

fn instances_output(instance: Instance) -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder().reservations(Reservation::builder().instances(instance).build()).build()
}

fn launched() -> RunInstancesOutput {
    RunInstancesOutput::builder().instances(instance(InstanceStateName::Pending)).build()
}

fn user_data_output(user_data: &str) -> DescribeInstanceAttributeOutput {
    DescribeInstanceAttributeOutput::builder()
        .instance_id(INSTANCE_ID)
        .user_data(AttributeValue::builder().value(BASE64.encode(user_data)).build())
        .build()
}

fn ready_console_text(user_data_sha256: &str) -> String {
    ready_console_with_certificate(user_data_sha256, &make_certificate_pem(PRIVATE_IP))
}

/// Returns the console of a finished setup that printed `pem` as the setup script does.
fn ready_console_with_certificate(user_data_sha256: &str, pem: &str) -> String {
    let mut console = String::from("[    3.1] cloud-init[610]: Setting up redis-server ...\n");
    for line in pem.lines() {
        console.push_str(&format!("{CERTIFICATE_MARKER} {line}\n"));
    }
    console.push_str(&format!("[   41.7] {READY_MARKER} sha256={user_data_sha256}\n"));
    console
}

/// Makes a self-signed certificate for `ip` with openssl, as the setup script does.
fn make_certificate_pem(ip: &str) -> String {
    let directory = tempfile::tempdir().expect("temporary directory");
    let output = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
        .arg(directory.path().join("key.pem"))
        .args(["-out", "-", "-days", "2", "-subj", "/CN=openemr-redis", "-addext"])
        .arg(format!("subjectAltName=IP:{ip}"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs: install it with `apt-get install openssl`");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("PEM is UTF-8")
}

fn console_output(text: &str) -> GetConsoleOutputOutput {
    GetConsoleOutputOutput::builder().instance_id(INSTANCE_ID).output(BASE64.encode(text)).build()
}

fn instance_status_output(status: SummaryStatus) -> DescribeInstanceStatusOutput {
    let summary = InstanceStatusSummary::builder().status(status).build();
    let instance_status = InstanceStatus::builder()
        .instance_id(INSTANCE_ID)
        .instance_state(InstanceState::builder().name(InstanceStateName::Running).build())
        .instance_status(summary.clone())
        .system_status(summary)
        .build();
    DescribeInstanceStatusOutput::builder().instance_statuses(instance_status).build()
}

/// Builds the HTTP response EC2 sends for an error: the code and message in its XML envelope.
fn ec2_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"
    );
    HttpResponse::new(StatusCode::try_from(status).expect("valid HTTP status"), SdkBody::from(body))
}

fn throttled() -> HttpResponse {
    ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
}

fn instance_not_found() -> HttpResponse {
    ec2_error(400, "InvalidInstanceID.NotFound", &format!("The instance ID '{INSTANCE_ID}' does not exist"))
}

/// Returns every file under `root`, which may not exist yet.
fn files_under(root: &Utf8Path) -> Vec<Utf8PathBuf> {
    let Ok(entries) = root.read_dir_utf8() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").into_path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn assert_nothing_written(workspace: &Workspace) {
    let files = files_under(&workspace.output_root);
    assert!(files.is_empty(), "the deploy failed but wrote {files:?}");
}

/// Checks the outcome, the record on disk and the options file that points OpenEMR at Redis.
fn assert_deployed(workspace: &Workspace, outcome: &Outcome) {
    let Outcome::Ready(record) = outcome else {
        panic!("expected a ready deployment, got {outcome:?}");
    };
    assert_eq!(record.redis_password_parameter_arn.as_deref(), Some(PARAMETER_ARN), "record: {record:?}");
    let password_sha256 = codegen::sha256_hex(TEST_PASSWORD.as_bytes());
    assert_eq!(record.redis_password_sha256.as_deref(), Some(password_sha256.as_str()), "record: {record:?}");
    assert_eq!(record.instance_id, INSTANCE_ID, "record: {record:?}");
    assert_eq!(record.private_ip, PRIVATE_IP, "record: {record:?}");
    assert_eq!(record.security_group_id, REDIS_GROUP_ID, "record: {record:?}");
    assert_eq!(record.user_data_sha256, workspace.prepared.user_data_sha256, "record: {record:?}");

    let on_disk = DeploymentRecord::load(&workspace.project.deployment_record()).expect("record reads");
    assert_eq!(on_disk.as_ref(), Some(record.as_ref()), "generated/deployment.yaml differs from the outcome");

    let options_text = std::fs::read_to_string(workspace.options_file()).expect("options file written");
    let options: serde_yaml::Value = serde_yaml::from_str(&options_text).expect("options file is YAML");
    let redis_ip = &options["option_settings"]["aws:elasticbeanstalk:application:environment"]["REDIS_IP"];
    assert_eq!(redis_ip.as_str(), Some(PRIVATE_IP), "options file:\n{options_text}");

    let user_data = std::fs::read_to_string(workspace.project.user_data()).expect("user data written");
    assert_eq!(user_data, workspace.prepared.user_data.contents, "generated/user-data.yaml differs from what was sent");
}

/// Asserts that RunInstances went out in `attempts` attempts that all carried one token, and
/// returns that token.
fn single_launch_token(ec2: &Ec2, attempts: usize) -> String {
    let tokens = ec2.requests.values("RunInstances", "ClientToken");
    assert_eq!(tokens.len(), attempts, "RunInstances attempts: {tokens:?}");
    assert!(tokens.iter().all(|token| *token == tokens[0]), "tokens differ between attempts: {tokens:?}");
    assert!(tokens[0].starts_with("deploy-redis-"), "token: {}", tokens[0]);

    let max_counts = ec2.requests.values("RunInstances", "MaxCount");
    assert!(max_counts.iter().all(|count| count == "1"), "MaxCount sent: {max_counts:?}");
    tokens[0].clone()
}

/// Returns what `look_up` finds in `Ec2::fresh_account`, for computing the expected token.
fn found_in_fresh_account() -> Found {
    Found {
        vpc: FoundVpc { id: VPC_ID.into(), name: "openemr-vpc".into() },
        subnet: FoundSubnet { id: SUBNET_ID.into(), availability_zone: ZONE.into() },
        app_group: FoundGroup { id: APP_GROUP_ID.into(), name: "openemr-app".into() },
        image: FoundImage {
            id: IMAGE_ID.into(),
            name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115".into(),
            creation_date: "2025-01-15T00:00:00.000Z".into(),
            root_device_name: "/dev/sda1".into(),
        },
        redis_group: None,
        instance: None,
        password: None,
    }
}

#[tokio::test(start_paused = true)]
async fn error_code_reads_ec2_xml_error() {
    let not_found = mock!(Client::describe_instances).then_http_response(instance_not_found);
    let requests = RequestLog::default();
    let client = mock_client(&[&not_found], &requests);

    let error = client.describe_instances().instance_ids(INSTANCE_ID).send().await.unwrap_err();
    assert_eq!(xtask_aws::ec2::error_code(&error), Some("InvalidInstanceID.NotFound"), "error: {error:?}");

    let described = xtask_aws::ec2::instance::describe_instance(&client, INSTANCE_ID).await;
    assert!(matches!(described, Ok(None)), "NotFound should read as not yet visible: {described:?}");
    assert_eq!(not_found.num_calls(), 2, "a client error is not retried by the SDK");
}

#[tokio::test(start_paused = true)]
async fn pending_instance_is_awaited_until_running() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_instance = mock!(Client::describe_instances)
        .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
        .sequence()
        .output(|| instances_output(instance(InstanceStateName::Pending)))
        .times(3)
        .output(|| instances_output(instance(InstanceStateName::Running)))
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, &outcome);
    assert_eq!(ec2.describe_instance.num_calls(), 4, "three pending polls and one running");
    assert_eq!(ec2.get_console_output.num_calls(), 1, "the console is read only once the instance runs");
    assert_eq!(ec2.create_security_group.num_calls(), 1, "CreateSecurityGroup calls");
    assert_eq!(ec2.authorize_ingress.num_calls(), 1, "AuthorizeSecurityGroupIngress calls");
    assert_eq!(ec2.run_instances.num_calls(), 1, "RunInstances calls");
    single_launch_token(&ec2, 1);
}

#[tokio::test(start_paused = true)]
async fn status_checks_readiness_waits_for_ok() {
    let workspace = Workspace::with_settings("readiness: status-checks\n");
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_instance_status = mock!(Client::describe_instance_status)
        .sequence()
        .output(|| instance_status_output(SummaryStatus::Initializing))
        .times(2)
        .output(|| instance_status_output(SummaryStatus::Ok))
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, &outcome);
    assert_eq!(ec2.describe_instance_status.num_calls(), 3, "two initializing polls and one ok");
    assert_eq!(ec2.get_console_output.num_calls(), 0, "status checks do not read the console");
}

#[tokio::test(start_paused = true)]
async fn instance_not_found_after_launch_is_retried() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_instance = mock!(Client::describe_instances)
        .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
        .sequence()
        .http_response(instance_not_found)
        .output(|| instances_output(instance(InstanceStateName::Running)))
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, &outcome);
    assert_eq!(ec2.describe_instance.num_calls(), 2, "one NotFound, then running");
    assert_eq!(ec2.run_instances.num_calls(), 1, "RunInstances calls");
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_with_one_token() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_vpcs = mock!(Client::describe_vpcs)
        .sequence()
        .http_response(throttled)
        .times(2)
        .output(|| DescribeVpcsOutput::builder().vpcs(Vpc::builder().vpc_id(VPC_ID).build()).build())
        .build();
    ec2.run_instances = mock!(Client::run_instances)
        .sequence()
        .http_response(throttled)
        .times(2)
        .output(launched)
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, &outcome);
    let vpc_attempts = ec2.requests.values("DescribeVpcs", "Action");
    assert_eq!(vpc_attempts.len(), 3, "DescribeVpcs: two throttled attempts and one answered");
    let token = single_launch_token(&ec2, 3);
    let expected = deploy_redis::launch_token(&workspace.prepared, &found_in_fresh_account(), REDIS_GROUP_ID, false);
    assert_eq!(token, expected, "the token sent is the one derived from the launch parameters");
    assert_eq!(ec2.run_instances.num_calls(), 3, "RunInstances responses used");
    assert_eq!(ec2.describe_instance.num_calls(), 1, "only the one launched instance is awaited");
}

#[tokio::test(start_paused = true)]
async fn rerun_after_failed_launch_sends_same_token() {
    let workspace = Workspace::with_console_readiness();
    let mut first_run = Ec2::fresh_account(&workspace);
    first_run.run_instances = mock!(Client::run_instances)
        .then_http_response(|| ec2_error(500, "InternalError", "An internal error has occurred."));

    let error = run_deploy(&first_run, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("RunInstances failed: InternalError"), "{message}");
    assert_nothing_written(&workspace);
    let first_token = single_launch_token(&first_run, MAX_ATTEMPTS as usize);

    // The second run finds the security group that the first one created.
    let second_run = Ec2::fresh_account(&workspace).with_existing_redis_group();
    let outcome = run_deploy(&second_run, &workspace, &default_flags()).await.expect("rerun succeeds");

    assert_deployed(&workspace, &outcome);
    assert_eq!(second_run.create_security_group.num_calls(), 0, "the group is reused");
    let second_token = single_launch_token(&second_run, 1);
    assert_eq!(second_token, first_token, "a rerun must let EC2 match the earlier launch");
}

#[tokio::test(start_paused = true)]
async fn insufficient_capacity_names_type_and_zone() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    // EC2's real message names the zone too; this one does not, so the hint must.
    ec2.run_instances = mock!(Client::run_instances).then_http_response(|| {
        ec2_error(500, "InsufficientInstanceCapacity", "There is not enough capacity to fulfill your request.")
    });

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("InsufficientInstanceCapacity"), "{message}");
    assert!(message.contains("t3.micro"), "names the instance type: {message}");
    assert!(message.contains(ZONE), "names the zone: {message}");
    assert!(message.contains("retry later"), "says what to try: {message}");
    assert!(message.contains("`instance_type`"), "says what to change: {message}");
    assert!(message.contains("`subnet_name`"), "says what to change: {message}");
    assert_nothing_written(&workspace);
    single_launch_token(&ec2, ec2.run_instances.num_calls());
    assert_eq!(ec2.describe_instance.num_calls(), 0, "nothing launched, nothing awaited");
}

/// Runs a deploy whose instance leaves `pending` for `state`, and returns the error message.
async fn deploy_losing_instance(state: InstanceStateName, reason: &'static str) -> String {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_instance = mock!(Client::describe_instances)
        .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
        .sequence()
        .output(|| instances_output(instance(InstanceStateName::Pending)))
        .output(move || instances_output(instance_with_reason(state.clone(), reason)))
        .build();

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    assert_nothing_written(&workspace);
    assert_eq!(ec2.describe_instance.num_calls(), 2, "one pending poll, then the lost state");
    assert_eq!(ec2.get_console_output.num_calls(), 0, "the console of a lost instance is not read");
    format!("{error:#}")
}

#[tokio::test(start_paused = true)]
async fn shutting_down_instance_fails_with_reason() {
    let reason = "Client.InstanceInitiatedShutdown: Instance initiated shutdown";
    let message = deploy_losing_instance(InstanceStateName::ShuttingDown, reason).await;

    assert!(message.contains("is shutting-down instead of running"), "{message}");
    assert!(message.contains(reason), "contains EC2's state reason: {message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(message.contains("`cargo xtask deploy-redis --new-launch`"), "names the way out: {message}");
}

#[tokio::test(start_paused = true)]
async fn terminated_instance_fails_with_reason() {
    let reason = "Server.InternalError: Internal error on launch";
    let message = deploy_losing_instance(InstanceStateName::Terminated, reason).await;

    assert!(message.contains("is terminated instead of running"), "{message}");
    assert!(message.contains(reason), "contains EC2's state reason: {message}");
    assert!(message.contains("`cargo xtask deploy-redis --new-launch`"), "names the way out: {message}");
}

#[tokio::test(start_paused = true)]
async fn readiness_timeout_names_last_state() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.describe_instance = mock!(Client::describe_instances)
        .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
        .then_output(|| instances_output(instance(InstanceStateName::Pending)));
    let flags = DeployRedis { timeout: Some(120), ..default_flags() };

    // The clock is paused, so this measures tokio's virtual time, which only moves when every
    // task waits on a timer.
    let started = tokio::time::Instant::now();
    let error = run_deploy(&ec2, &workspace, &flags).await.unwrap_err();
    let waited = started.elapsed();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("timed out waiting for instance {INSTANCE_ID}")), "{message}");
    assert!(message.contains("last state: pending"), "{message}");
    assert!(message.contains("rerun `cargo xtask deploy-redis`"), "says how to resume: {message}");
    assert_nothing_written(&workspace);
    assert!(waited <= Duration::from_secs(120), "waited {waited:?}, past the 120 s bound");
    // Poll delays are at most 10 s, so the deploy gives up less than 10 s before the bound.
    assert!(waited >= Duration::from_secs(110), "gave up early, after {waited:?}");
    assert!(ec2.describe_instance.num_calls() > 10, "polls: {}", ec2.describe_instance.num_calls());
    assert_eq!(ec2.run_instances.num_calls(), 1, "RunInstances calls");
}

#[tokio::test(start_paused = true)]
async fn failed_provisioning_shows_console_excerpt() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    let failed_line = format!("{FAILED_MARKER} sha256={} reason=ping-failed", workspace.prepared.user_data_sha256);
    let console = format!(
        "[    3.1] cloud-init[610]: Setting up redis-server ...\n\
         [   40.2] cloud-init[610]: Could not connect to Redis at 127.0.0.1:6379: Connection refused\n\
         [   40.3] {failed_line}\n"
    );
    ec2.get_console_output = mock!(Client::get_console_output).then_output(move || console_output(&console));

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("provisioning of instance {INSTANCE_ID} failed")), "{message}");
    assert!(message.contains(&failed_line), "shows the marker line: {message}");
    assert!(message.contains("Could not connect to Redis at 127.0.0.1:6379"), "shows the excerpt: {message}");
    assert!(message.contains("Setting up redis-server"), "shows the excerpt: {message}");
    assert!(message.contains("--replace"), "names the way out: {message}");
    assert_nothing_written(&workspace);
}

#[tokio::test(start_paused = true)]
async fn interrupted_launch_is_adopted() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace).with_existing_redis_group().with_existing_instance();
    ec2.describe_instance = mock!(Client::describe_instances)
        .match_requests(|input| input.instance_ids() == [INSTANCE_ID])
        .sequence()
        .output(|| instances_output(instance(InstanceStateName::Pending)))
        .output(|| instances_output(instance(InstanceStateName::Running)))
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy adopts the instance");

    assert_deployed(&workspace, &outcome);
    ec2.assert_no_mutating_call();
    assert_eq!(ec2.describe_user_data.num_calls(), 1, "the live user data is compared once");
    assert_eq!(ec2.describe_instance.num_calls(), 2, "one pending poll, then running");
}

#[tokio::test(start_paused = true)]
async fn other_user_data_needs_replace() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace).with_existing_redis_group().with_existing_instance();
    ec2.describe_user_data = mock!(Client::describe_instance_attribute)
        .then_output(|| user_data_output("#cloud-config\npackages: [redis-server]\n"));

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("instance {INSTANCE_ID} runs other user data")), "{message}");
    assert!(message.contains("Nothing was changed"), "{message}");
    assert!(message.contains("rerun with --replace"), "names the way out: {message}");
    ec2.assert_no_mutating_call();
    assert_eq!(ec2.describe_instance.num_calls(), 0, "nothing is awaited");
    assert_nothing_written(&workspace);
}

#[tokio::test(start_paused = true)]
async fn idempotent_parameter_mismatch_is_explained() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.run_instances = mock!(Client::run_instances).then_http_response(|| {
        ec2_error(400, "IdempotentParameterMismatch", "The client token has been used with different parameters.")
    });

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    let token = single_launch_token(&ec2, 1);
    assert!(message.contains("RunInstances failed: IdempotentParameterMismatch"), "{message}");
    assert!(message.contains(&format!("client token {token} with other parameters")), "explains: {message}");
    assert!(message.contains("rerun `cargo xtask deploy-redis --new-launch`"), "names the way out: {message}");
    assert_nothing_written(&workspace);
}

#[tokio::test(start_paused = true)]
async fn idempotent_instance_terminated_names_new_launch() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    ec2.run_instances = mock!(Client::run_instances).then_http_response(|| {
        ec2_error(400, "IdempotentInstanceTerminated", "The instance launched with this client token was terminated.")
    });

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    let token = single_launch_token(&ec2, 1);
    assert!(message.contains("RunInstances failed: IdempotentInstanceTerminated"), "{message}");
    assert!(message.contains(&format!("client token {token} was terminated")), "explains: {message}");
    assert!(message.contains("`cargo xtask deploy-redis --new-launch`"), "names the way out: {message}");
    assert_nothing_written(&workspace);
}

#[tokio::test(start_paused = true)]
async fn dry_run_sends_only_lookups() {
    let workspace = Workspace::with_console_readiness();
    let ec2 = Ec2::fresh_account(&workspace);
    let flags = DeployRedis { dry_run: true, ..default_flags() };

    let outcome = run_deploy(&ec2, &workspace, &flags).await.expect("dry run succeeds");

    assert_eq!(outcome, Outcome::Planned, "dry run outcome");
    ec2.assert_no_mutating_call();
    let actions = ec2.requests.actions();
    assert!(!actions.is_empty(), "the dry run looks up what exists");
    for action in &actions {
        assert!(action.starts_with("Describe"), "dry run sent {action}; all actions: {actions:?}");
    }
    assert_nothing_written(&workspace);
}

#[test]
fn launch_token_follows_launch_inputs() {
    let mut workspace = Workspace::with_console_readiness();
    let found = found_in_fresh_account();

    let token = deploy_redis::launch_token(&workspace.prepared, &found, REDIS_GROUP_ID, false);
    let again = deploy_redis::launch_token(&workspace.prepared, &found, REDIS_GROUP_ID, false);
    let fresh = deploy_redis::launch_token(&workspace.prepared, &found, REDIS_GROUP_ID, true);
    let other_group = deploy_redis::launch_token(&workspace.prepared, &found, "sg-0a1b2c3d4e5f60003", false);
    workspace.prepared.user_data_sha256 = "0".repeat(64);
    let other_user_data = deploy_redis::launch_token(&workspace.prepared, &found, REDIS_GROUP_ID, false);

    assert_eq!(token, again, "equal inputs, equal tokens");
    assert_ne!(token, fresh, "--new-launch must change the token");
    assert_ne!(token, other_group, "another security group is another launch");
    assert_ne!(token, other_user_data, "other user data is another launch");
    // EC2 accepts client tokens of at most 64 ASCII characters.
    assert!(token.len() <= 64, "token is {} characters: {token}", token.len());
    assert!(token.is_ascii(), "token: {token}");
}

#[tokio::test(start_paused = true)]
async fn console_without_latest_on_older_types() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    let console = ready_console_text(&workspace.prepared.user_data_sha256);
    ec2.get_console_output = mock!(Client::get_console_output)
        .sequence()
        .http_response(|| {
            ec2_error(400, "UnsupportedOperation", "The latest console output is only available on Nitro instances.")
        })
        .output(move || console_output(&console))
        .build();

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy falls back to the buffered console");

    assert_deployed(&workspace, &outcome);
    let latest = ec2.requests.values("GetConsoleOutput", "Latest");
    assert_eq!(latest, ["true", ""], "first with Latest=true, then without it");
}

#[tokio::test(start_paused = true)]
async fn console_certificate_becomes_the_ca_file() {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    let pem = make_certificate_pem(PRIVATE_IP);
    let console = ready_console_with_certificate(&workspace.prepared.user_data_sha256, &pem);
    ec2.get_console_output = mock!(Client::get_console_output).then_output(move || console_output(&console));

    let outcome = run_deploy(&ec2, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, &outcome);
    let ca_file = workspace.project.ebextensions_dir().join("redis-ca.pem");
    let written = std::fs::read_to_string(&ca_file).expect("redis-ca.pem written");
    assert_eq!(written, pem, "the file is the certificate from the console");
    let Outcome::Ready(record) = outcome else { unreachable!() };
    assert_eq!(record.redis_ca_sha256, Some(codegen::sha256_hex(pem.as_bytes())), "the record holds its SHA-256");
}

/// Runs a deploy whose console shows `console_certificate`, and returns the error message.
async fn deploy_with_console_certificate(console_certificate: String) -> String {
    let workspace = Workspace::with_console_readiness();
    let mut ec2 = Ec2::fresh_account(&workspace);
    let console = ready_console_with_certificate(&workspace.prepared.user_data_sha256, &console_certificate);
    ec2.get_console_output = mock!(Client::get_console_output).then_output(move || console_output(&console));

    let error = run_deploy(&ec2, &workspace, &default_flags()).await.unwrap_err();

    assert_nothing_written(&workspace);
    format!("{error:#}")
}

#[tokio::test(start_paused = true)]
async fn malformed_certificate_is_an_error() {
    let pem = make_certificate_pem(PRIVATE_IP).replace("M", "*");
    let message = deploy_with_console_certificate(pem).await;

    assert!(message.contains("certificate that instance"), "{message}");
    assert!(message.contains("not valid"), "says what is wrong: {message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(message.contains("--replace"), "names the way out: {message}");
}

#[tokio::test(start_paused = true)]
async fn certificate_for_another_ip_is_an_error() {
    let message = deploy_with_console_certificate(make_certificate_pem("10.0.1.99")).await;

    assert!(message.contains("names the IP addresses [10.0.1.99]"), "{message}");
    assert!(message.contains(&format!("not the instance's private IP {PRIVATE_IP}")), "{message}");
}

#[test]
fn expired_certificate_is_an_error() {
    let pem = make_certificate_pem(PRIVATE_IP);
    let in_a_year = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 365 * 86_400;

    let error = xtask_aws::certificate::check_certificate(&pem, PRIVATE_IP, i64::try_from(in_a_year).unwrap()).unwrap_err();

    assert!(error.to_string().starts_with("the certificate expired at"), "{error}");
}

#[test]
fn certificate_not_yet_valid_is_an_error() {
    let pem = make_certificate_pem(PRIVATE_IP);
    let error = xtask_aws::certificate::check_certificate(&pem, PRIVATE_IP, 0).unwrap_err();
    assert!(error.to_string().starts_with("the certificate is not valid yet"), "{error}");
}

/// Writes `pem` as the committed certificate and returns a record that names it.
fn record_with_certificate(workspace: &Workspace, pem: &str) -> DeploymentRecord {
    let directory = workspace.project.ebextensions_dir();
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(directory.join("redis-ca.pem"), pem).unwrap();
    let record_text = std::fs::read_to_string(Project::from_manifest_dir().root().join("tests/golden/deployment.yaml")).unwrap();
    let mut record: DeploymentRecord = serde_yaml::from_str(&record_text).unwrap();
    record.private_ip = PRIVATE_IP.to_owned();
    record.redis_ca_sha256 = Some(codegen::sha256_hex(pem.as_bytes()));
    record
}

#[test]
fn status_accepts_recorded_certificate() {
    let workspace = Workspace::with_console_readiness();
    let record = record_with_certificate(&workspace, &make_certificate_pem(PRIVATE_IP));

    let check = xtask_aws::status::certificate_check(&workspace.project, &record);
    assert!(check.in_sync, "{check:?}");
}

#[test]
fn status_flags_replaced_or_foreign_certificate() {
    let workspace = Workspace::with_console_readiness();
    let mut record = record_with_certificate(&workspace, &make_certificate_pem(PRIVATE_IP));
    record.redis_ca_sha256 = Some("0".repeat(64));
    let check = xtask_aws::status::certificate_check(&workspace.project, &record);
    assert!(!check.in_sync, "{check:?}");
    assert!(check.detail.contains("records the instance's certificate as"), "{}", check.detail);

    let record = record_with_certificate(&workspace, &make_certificate_pem("10.9.9.9"));
    let check = xtask_aws::status::certificate_check(&workspace.project, &record);
    assert!(!check.in_sync, "{check:?}");
    assert!(check.detail.contains("--replace"), "{}", check.detail);
}
