//! `deploy-redis` with `backend: elasticache` under the faults ElastiCache really produces, driven
//! through `aws-smithy-mocks`. Every client has a region, fake static credentials and the mock
//! HTTP client, so no request leaves the process, and tokio's clock is paused, so the polling
//! backoff and the timeouts take no real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput;
use aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_elasticache::operation::create_cache_subnet_group::CreateCacheSubnetGroupOutput;
use aws_sdk_elasticache::operation::create_replication_group::{CreateReplicationGroupInput, CreateReplicationGroupOutput};
use aws_sdk_elasticache::operation::create_user::CreateUserOutput;
use aws_sdk_elasticache::operation::create_user_group::CreateUserGroupOutput;
use aws_sdk_elasticache::operation::describe_cache_subnet_groups::DescribeCacheSubnetGroupsOutput;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::describe_user_groups::DescribeUserGroupsOutput;
use aws_sdk_elasticache::operation::describe_users::DescribeUsersOutput;
use aws_sdk_elasticache::operation::modify_user::{ModifyUserInput, ModifyUserOutput};
use aws_sdk_elasticache::types::{
    Authentication, AuthenticationType,
    AutomaticFailoverStatus, CacheSubnetGroup, Endpoint, InputAuthenticationType, MultiAzStatus, NodeGroup,
    ReplicationGroup, User, UserGroup,
};
use aws_sdk_elasticache::types::builders::{ReplicationGroupBuilder, UserBuilder, UserGroupBuilder};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use camino::{Utf8Path, Utf8PathBuf};
use xtask::codegen::{self, SESSION_ACL_RULES};
use xtask::flags::DeployRedis;
use xtask::project::Project;
use xtask::record::ElastiCacheRecord;
use xtask_aws::deploy_elasticache::{self, Clients};
use xtask_aws::deploy_redis::Prepared;
use xtask_aws::ec2::{MANAGED_BY_KEY, MANAGED_BY_VALUE};
use xtask_aws::plan;

const REGION: &str = "us-east-1";
const VPC_ID: &str = "vpc-0a1b2c3d4e5f60001";
const PRIVATE_SUBNET_ID: &str = "subnet-0a1b2c3d4e5f60001";
const OTHER_SUBNET_ID: &str = "subnet-0a1b2c3d4e5f60002";
const ZONE_A: &str = "us-east-1a";
const ZONE_B: &str = "us-east-1b";
const APP_GROUP_ID: &str = "sg-0a1b2c3d4e5f60001";
const CACHE_GROUP_ID: &str = "sg-0a1b2c3d4e5f60003";
/// The default `elasticache.name`, which the replication group, subnet group, user group and
/// security group all carry.
const CACHE_NAME: &str = "openemr-sessions";
const APP_USER_ID: &str = "openemr-sessions-app";
const DEFAULT_USER_ID: &str = "openemr-sessions-default";
const DEFAULT_NODE_TYPE: &str = "cache.t4g.micro";
const PRIMARY_ENDPOINT: &str = "master.openemr-sessions.x1y2z3.use1.cache.amazonaws.com";
const PORT: u16 = 6379;
const PARAMETER_NAME: &str = "/openemr/redis/password";
const PARAMETER_ARN: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password";
/// The password the mocked SSM returns, made up here and used nowhere else.
const TEST_PASSWORD: &str = "MockOnlyCachePassword0123456789abcdefghij";

/// SDK attempts per operation, so a throttled call is retried a few times before it fails.
const MAX_ATTEMPTS: u32 = 4;

/// The first five poll delays of the wait: 1 s, then each half as long again (1.5, 2.25, 3.375
/// and 5.0625 s), which is 13.1875 s in all.
const FIVE_POLL_DELAYS: Duration = Duration::from_micros(13_187_500);

/// Builds the config of an SDK client whose requests `rules` respond to and `log` records, with a
/// region, fake static credentials and retries. The SDKs share these types but not their config
/// builders, hence a macro.
macro_rules! mocked_config {
    ($sdk:ident, $rules:expr, $log:expr) => {
        $sdk::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(fake_credentials())
            .http_client(create_mock_http_client())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .interceptor(mock_interceptor($rules))
            .interceptor($log.clone())
            .build()
    };
}

/// A settings file selecting the ElastiCache backend and an empty output root, both in a
/// temporary directory, so any file in the output root was written by the deploy.
struct Workspace {
    _directory: tempfile::TempDir,
    output_root: Utf8PathBuf,
    project: Project,
    prepared: Prepared,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace::with_settings("")
    }

    /// Appends `extra_settings` to the required keys and `backend: elasticache`.
    fn with_settings(extra_settings: &str) -> Workspace {
        let directory = tempfile::tempdir().expect("temporary directory");
        let root = Utf8Path::from_path(directory.path()).expect("temporary directory path is UTF-8").to_owned();
        let settings_path = root.join("deploy.yaml");
        let settings = format!(
            "app_security_group: openemr-app\ntimezone: America/New_York\nfile_system_id: fs-0123abcd\n\
             backend: elasticache\n{extra_settings}"
        );
        std::fs::write(&settings_path, settings).expect("settings file written");

        let output_root = root.join("output");
        let project = Project::from_manifest_dir().with_output_root(output_root.clone());
        let prepared = Prepared::load(&project, &settings_path).expect("settings load");
        Workspace { _directory: directory, output_root, project, prepared }
    }

    fn options_file(&self) -> Utf8PathBuf {
        self.project.ebextensions_dir().join("00-options.config")
    }

    /// Writes the record an earlier deploy left, with `password_sha256` as the app user's hash.
    fn write_record(&self, password_sha256: &str) {
        self.write_record_of(&expected_record(password_sha256));
    }

    /// Writes `record` as generated/elasticache.yaml, as a deploy of that record would have.
    fn write_record_of(&self, record: &ElastiCacheRecord) {
        let path = self.project.elasticache_record();
        std::fs::create_dir_all(path.parent().expect("record path has a parent")).expect("generated/ created");
        let file = record.to_file(&path);
        std::fs::write(&path, &file.contents).expect("record written");
    }
}

fn default_flags() -> DeployRedis {
    DeployRedis { dry_run: false, replace: false, new_launch: false, timeout: None, markdown: None }
}

fn dry_run_flags() -> DeployRedis {
    DeployRedis { dry_run: true, ..default_flags() }
}

async fn run_deploy(account: &Account, workspace: &Workspace, flags: &DeployRedis) -> anyhow::Result<Option<ElastiCacheRecord>> {
    let clients = account.clients();
    deploy_elasticache::deploy(&clients, REGION, &workspace.project, &workspace.prepared, flags).await
}

/// Records the operation name of every attempt the clients transmit, retries included, since a
/// rule's call count alone cannot tell which service an operation went to.
#[derive(Debug, Clone, Default)]
struct OperationLog(Arc<Mutex<Vec<String>>>);

impl Intercept for OperationLog {
    fn name(&self) -> &'static str {
        "OperationLog"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("<no operation metadata>", Metadata::name).to_owned();
        self.0.lock().expect("operation log lock").push(operation);
        Ok(())
    }
}

impl OperationLog {
    fn operations(&self) -> Vec<String> {
        self.0.lock().expect("operation log lock").clone()
    }

    /// Returns how many attempts of `operation` were sent.
    fn attempts(&self, operation: &str) -> usize {
        self.operations().iter().filter(|sent| *sent == operation).count()
    }

    /// Fails when any operation sent could change something in AWS.
    fn assert_only_lookups(&self) {
        let operations = self.operations();
        for operation in &operations {
            let read_only = operation.starts_with("Describe") || operation.starts_with("Get");
            assert!(read_only, "{operation} was sent; all operations: {operations:?}");
        }
    }
}

/// The inputs a rule received, in order, so a test can check what the deploy sent.
#[derive(Debug)]
struct Captured<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Captured<T> {
    fn clone(&self) -> Captured<T> {
        Captured(Arc::clone(&self.0))
    }
}

impl<T: Clone> Captured<T> {
    fn new() -> Captured<T> {
        Captured(Arc::new(Mutex::new(Vec::new())))
    }

    fn push(&self, value: T) {
        self.0.lock().expect("captured inputs lock").push(value);
    }

    fn all(&self) -> Vec<T> {
        self.0.lock().expect("captured inputs lock").clone()
    }
}

fn mock_interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    interceptor
}

fn fake_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

/// One rule per call a deploy sends. `fresh` responds like an account where the network and the
/// app group exist, the password is in SSM, and nothing of the cache exists yet. Each test
/// replaces the rules of its fault. A call that no rule matches panics inside the SDK, which
/// fails the test, so the mutating calls a deploy must never send have no rule at all.
struct Account {
    describe_vpcs: Rule,
    describe_private_subnet: Rule,
    describe_other_subnet: Rule,
    describe_app_group: Rule,
    describe_cache_group: Rule,
    create_security_group: Rule,
    authorize_ingress: Rule,
    get_parameter: Rule,
    describe_subnet_group: Rule,
    create_subnet_group: Rule,
    describe_app_user: Rule,
    describe_default_user: Rule,
    create_user: Rule,
    modify_user: Rule,
    describe_user_group: Rule,
    create_user_group: Rule,
    describe_replication_group: Rule,
    create_replication_group: Rule,
    describe_cache_clusters: Rule,
    modify_user_inputs: Captured<ModifyUserInput>,
    create_group_inputs: Captured<CreateReplicationGroupInput>,
    operations: OperationLog,
}

impl Account {
    fn fresh() -> Account {
        let modify_user_inputs = Captured::new();
        let create_group_inputs = Captured::new();
        let modify_user_log = modify_user_inputs.clone();
        let create_group_log = create_group_inputs.clone();
        Account {
            describe_vpcs: mock!(aws_sdk_ec2::Client::describe_vpcs).then_output(|| {
                let vpc = aws_sdk_ec2::types::Vpc::builder().vpc_id(VPC_ID).tags(ec2_name_tag("openemr-vpc")).build();
                DescribeVpcsOutput::builder().vpcs(vpc).build()
            }),
            describe_private_subnet: subnet_rule("Private", PRIVATE_SUBNET_ID, ZONE_A),
            describe_other_subnet: subnet_rule("Other Private", OTHER_SUBNET_ID, ZONE_B),
            describe_app_group: mock!(aws_sdk_ec2::Client::describe_security_groups)
                .match_requests(|input| has_filter(input.filters(), "tag:Name", "openemr-app"))
                .then_output(|| {
                    let group = aws_sdk_ec2::types::SecurityGroup::builder()
                        .group_id(APP_GROUP_ID)
                        .group_name("openemr-app")
                        .vpc_id(VPC_ID)
                        .tags(ec2_name_tag("openemr-app"))
                        .build();
                    DescribeSecurityGroupsOutput::builder().security_groups(group).build()
                }),
            describe_cache_group: mock!(aws_sdk_ec2::Client::describe_security_groups)
                .match_requests(|input| has_filter(input.filters(), "group-name", CACHE_NAME))
                .then_output(|| DescribeSecurityGroupsOutput::builder().build()),
            create_security_group: mock!(aws_sdk_ec2::Client::create_security_group)
                .then_output(|| CreateSecurityGroupOutput::builder().group_id(CACHE_GROUP_ID).build()),
            authorize_ingress: mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
                .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().r#return(true).build()),
            get_parameter: mock!(aws_sdk_ssm::Client::get_parameter).then_output(password_parameter),
            describe_subnet_group: mock!(aws_sdk_elasticache::Client::describe_cache_subnet_groups).then_http_response(|| {
                elasticache_error(404, "CacheSubnetGroupNotFoundFault", &format!("Cache subnet group {CACHE_NAME} not found."))
            }),
            create_subnet_group: mock!(aws_sdk_elasticache::Client::create_cache_subnet_group)
                .then_output(|| CreateCacheSubnetGroupOutput::builder().build()),
            describe_app_user: mock!(aws_sdk_elasticache::Client::describe_users)
                .match_requests(|input| input.user_id() == Some(APP_USER_ID))
                .then_http_response(|| user_not_found(APP_USER_ID)),
            describe_default_user: mock!(aws_sdk_elasticache::Client::describe_users)
                .match_requests(|input| input.user_id() == Some(DEFAULT_USER_ID))
                .then_http_response(|| user_not_found(DEFAULT_USER_ID)),
            create_user: mock!(aws_sdk_elasticache::Client::create_user).then_output(|| CreateUserOutput::builder().build()),
            modify_user: mock!(aws_sdk_elasticache::Client::modify_user).then_compute_output(move |input| {
                modify_user_log.push(input.clone());
                ModifyUserOutput::builder().build()
            }),
            // Missing at the lookup, then active once the deploy has created it.
            describe_user_group: mock!(aws_sdk_elasticache::Client::describe_user_groups)
                .sequence()
                .http_response(|| elasticache_error(404, "UserGroupNotFound", &format!("User group {CACHE_NAME} not found.")))
                .output(active_user_group)
                .repeatedly()
                .build(),
            create_user_group: mock!(aws_sdk_elasticache::Client::create_user_group)
                .then_output(|| CreateUserGroupOutput::builder().build()),
            describe_replication_group: mock!(aws_sdk_elasticache::Client::describe_replication_groups)
                .sequence()
                .http_response(replication_group_not_found)
                .output(|| replication_groups_output(available_group()))
                .repeatedly()
                .build(),
            create_replication_group: mock!(aws_sdk_elasticache::Client::create_replication_group)
                .then_compute_output(move |input| {
                    create_group_log.push(input.clone());
                    CreateReplicationGroupOutput::builder().replication_group(group_in("creating")).build()
                }),
            describe_cache_clusters: cache_clusters_rule("8.0.4"),
            modify_user_inputs,
            create_group_inputs,
            operations: OperationLog::default(),
        }
    }

    /// Returns an account where an earlier deploy created everything and the group is available.
    fn deployed() -> Account {
        let mut account = Account::fresh();
        account.describe_cache_group = mock!(aws_sdk_ec2::Client::describe_security_groups)
            .match_requests(|input| has_filter(input.filters(), "group-name", CACHE_NAME))
            .then_output(|| DescribeSecurityGroupsOutput::builder().security_groups(existing_cache_group()).build());
        account.describe_subnet_group = mock!(aws_sdk_elasticache::Client::describe_cache_subnet_groups)
            .then_output(existing_subnet_group);
        account.describe_app_user = mock!(aws_sdk_elasticache::Client::describe_users)
            .match_requests(|input| input.user_id() == Some(APP_USER_ID))
            .then_output(|| DescribeUsersOutput::builder().users(existing_user(APP_USER_ID, "openemr", &app_access())).build());
        account.describe_default_user = mock!(aws_sdk_elasticache::Client::describe_users)
            .match_requests(|input| input.user_id() == Some(DEFAULT_USER_ID))
            .then_output(|| DescribeUsersOutput::builder().users(existing_user(DEFAULT_USER_ID, "default", "off -@all")).build());
        account.describe_user_group = mock!(aws_sdk_elasticache::Client::describe_user_groups).then_output(active_user_group);
        account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
            .then_output(|| replication_groups_output(available_group()));
        account
    }

    /// Makes DescribeReplicationGroups find `group` at the lookup and at every poll after.
    fn with_existing_group(mut self, group: ReplicationGroup) -> Account {
        self.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
            .then_output(move || replication_groups_output(group.clone()));
        self
    }

    fn clients(&self) -> Clients {
        let ec2_rules = [
            &self.describe_vpcs,
            &self.describe_private_subnet,
            &self.describe_other_subnet,
            &self.describe_app_group,
            &self.describe_cache_group,
            &self.create_security_group,
            &self.authorize_ingress,
        ];
        let ec2 = mocked_config!(aws_sdk_ec2, &ec2_rules, &self.operations);

        let ssm = mocked_config!(aws_sdk_ssm, &[&self.get_parameter], &self.operations);

        let elasticache_rules = [
            &self.describe_subnet_group,
            &self.create_subnet_group,
            &self.describe_app_user,
            &self.describe_default_user,
            &self.create_user,
            &self.modify_user,
            &self.describe_user_group,
            &self.create_user_group,
            &self.describe_replication_group,
            &self.create_replication_group,
            &self.describe_cache_clusters,
        ];
        let elasticache = mocked_config!(aws_sdk_elasticache, &elasticache_rules, &self.operations);

        Clients {
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            ssm: aws_sdk_ssm::Client::from_conf(ssm),
            elasticache: aws_sdk_elasticache::Client::from_conf(elasticache),
        }
    }

    fn assert_nothing_created(&self) {
        assert_eq!(self.create_security_group.num_calls(), 0, "CreateSecurityGroup was sent");
        assert_eq!(self.create_subnet_group.num_calls(), 0, "CreateCacheSubnetGroup was sent");
        assert_eq!(self.create_user.num_calls(), 0, "CreateUser was sent");
        assert_eq!(self.create_user_group.num_calls(), 0, "CreateUserGroup was sent");
        assert_eq!(self.create_replication_group.num_calls(), 0, "CreateReplicationGroup was sent");
    }
}

fn has_filter(filters: &[aws_sdk_ec2::types::Filter], name: &str, value: &str) -> bool {
    filters.iter().any(|filter| filter.name() == Some(name) && filter.values() == [value])
}

fn ec2_name_tag(value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder().key("Name").value(value).build()
}

/// Builds the rule that returns the subnet with Name tag `name` to its lookup.
fn subnet_rule(name: &'static str, id: &'static str, zone: &'static str) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_subnets)
        .match_requests(move |input| has_filter(input.filters(), "tag:Name", name))
        .then_output(move || {
            let subnet = aws_sdk_ec2::types::Subnet::builder().subnet_id(id).availability_zone(zone).vpc_id(VPC_ID).build();
            DescribeSubnetsOutput::builder().subnets(subnet).build()
        })
}

/// Returns the dedicated group as the earlier deploy left it: TCP 6379 from the app group only.
fn existing_cache_group() -> aws_sdk_ec2::types::SecurityGroup {
    let pair = aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(APP_GROUP_ID).build();
    let rule = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(PORT))
        .to_port(i32::from(PORT))
        .user_id_group_pairs(pair)
        .build();
    aws_sdk_ec2::types::SecurityGroup::builder()
        .group_id(CACHE_GROUP_ID)
        .group_name(CACHE_NAME)
        .vpc_id(VPC_ID)
        .tags(ec2_name_tag(CACHE_NAME))
        .tags(aws_sdk_ec2::types::Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build())
        .ip_permissions(rule)
        .build()
}

fn password_parameter() -> aws_sdk_ssm::operation::get_parameter::GetParameterOutput {
    let parameter = aws_sdk_ssm::types::Parameter::builder()
        .name(PARAMETER_NAME)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .value(TEST_PASSWORD)
        .arn(PARAMETER_ARN)
        .version(3)
        .build();
    aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder().parameter(parameter).build()
}

fn existing_subnet_group() -> DescribeCacheSubnetGroupsOutput {
    let subnet = |id: &str| aws_sdk_elasticache::types::Subnet::builder().subnet_identifier(id).build();
    let group = CacheSubnetGroup::builder()
        .cache_subnet_group_name(CACHE_NAME)
        .vpc_id(VPC_ID)
        .subnets(subnet(PRIVATE_SUBNET_ID))
        .subnets(subnet(OTHER_SUBNET_ID))
        .build();
    DescribeCacheSubnetGroupsOutput::builder().cache_subnet_groups(group).build()
}

fn app_access() -> String {
    format!("on {SESSION_ACL_RULES}")
}

/// Returns a user of the deploy's user group. The `default` user needs no password, as the deploy
/// creates it, and every other user has one.
fn existing_user(id: &str, name: &str, access_string: &str) -> User {
    existing_user_builder(id, name, access_string).build()
}

/// Starts the user that [`existing_user`] returns, for a test to add user groups or replace the
/// authentication.
fn existing_user_builder(id: &str, name: &str, access_string: &str) -> UserBuilder {
    let kind = if name == "default" { AuthenticationType::NoPassword } else { AuthenticationType::Password };
    User::builder()
        .user_id(id)
        .user_name(name)
        .status("active")
        .engine("valkey")
        .access_string(access_string)
        .authentication(Authentication::builder().r#type(kind).build())
        .user_group_ids(CACHE_NAME)
}

/// Builds the DescribeUsers rule that returns `user` to the lookup of user `id`.
fn describe_user_rule(id: &'static str, user: User) -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_users)
        .match_requests(move |input| input.user_id() == Some(id))
        .then_output(move || DescribeUsersOutput::builder().users(user.clone()).build())
}

/// Returns a DescribeCacheClusters rule whose member cluster runs `engine_version`. A member
/// cluster is the only place where ElastiCache reports a replication group's version.
fn cache_clusters_rule(engine_version: &'static str) -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_cache_clusters).then_compute_output(move |input| {
        let cluster = aws_sdk_elasticache::types::CacheCluster::builder()
            .cache_cluster_id(input.cache_cluster_id().unwrap_or_default())
            .engine("valkey")
            .engine_version(engine_version)
            .build();
        aws_sdk_elasticache::operation::describe_cache_clusters::DescribeCacheClustersOutput::builder().cache_clusters(cluster).build()
    })
}

fn active_user_group() -> DescribeUserGroupsOutput {
    user_group_in("active")
}

fn user_group_in(status: &str) -> DescribeUserGroupsOutput {
    DescribeUserGroupsOutput::builder().user_groups(user_group_builder(status).build()).build()
}

/// Starts the deploy's user group in `status` with both users and no replication group yet.
fn user_group_builder(status: &str) -> UserGroupBuilder {
    UserGroup::builder()
        .user_group_id(CACHE_NAME)
        .status(status)
        .engine("valkey")
        .user_ids(APP_USER_ID)
        .user_ids(DEFAULT_USER_ID)
}

/// Starts a group as the deploy creates it, in `status`, with no endpoint yet.
fn group_builder(status: &str) -> ReplicationGroupBuilder {
    ReplicationGroup::builder()
        .replication_group_id(CACHE_NAME)
        .status(status)
        .cache_node_type(DEFAULT_NODE_TYPE)
        .member_clusters(format!("{CACHE_NAME}-001"))
        .member_clusters(format!("{CACHE_NAME}-002"))
        .automatic_failover(AutomaticFailoverStatus::Enabled)
        .multi_az(MultiAzStatus::Enabled)
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .user_group_ids(CACHE_NAME)
}

fn group_in(status: &str) -> ReplicationGroup {
    group_builder(status).build()
}

/// Returns the group once ElastiCache has assigned its primary endpoint.
fn available_group() -> ReplicationGroup {
    let endpoint = Endpoint::builder().address(PRIMARY_ENDPOINT).port(i32::from(PORT)).build();
    let node_group = NodeGroup::builder().node_group_id("0001").status("available").primary_endpoint(endpoint).build();
    group_builder("available").node_groups(node_group).build()
}

fn replication_groups_output(group: ReplicationGroup) -> DescribeReplicationGroupsOutput {
    DescribeReplicationGroupsOutput::builder().replication_groups(group).build()
}

/// Builds the HTTP response ElastiCache sends for an error: its query-protocol XML envelope.
fn elasticache_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\">\n  <Error>\n    <Type>Sender</Type>\n    \
         <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  \
         <RequestId>5a1c2f3e-0b7d-4c1e-9f00-example</RequestId>\n</ErrorResponse>\n"
    );
    HttpResponse::new(StatusCode::try_from(status).expect("valid HTTP status"), SdkBody::from(body))
}

fn replication_group_not_found() -> HttpResponse {
    elasticache_error(404, "ReplicationGroupNotFoundFault", &format!("ReplicationGroup {CACHE_NAME} not found."))
}

fn user_not_found(id: &str) -> HttpResponse {
    elasticache_error(404, "UserNotFound", &format!("User {id} not found."))
}

/// Builds ElastiCache's throttling error, whose code `Throttling` the SDK classifies as retryable.
fn throttled() -> HttpResponse {
    elasticache_error(400, "Throttling", "Rate exceeded")
}

/// Returns the record a deploy into `Account::fresh` or `Account::deployed` writes.
fn expected_record(password_sha256: &str) -> ElastiCacheRecord {
    ElastiCacheRecord {
        region: REGION.to_owned(),
        vpc_id: VPC_ID.to_owned(),
        security_group_id: CACHE_GROUP_ID.to_owned(),
        subnet_group_name: CACHE_NAME.to_owned(),
        subnet_ids: vec![PRIVATE_SUBNET_ID.to_owned(), OTHER_SUBNET_ID.to_owned()],
        replication_group_id: CACHE_NAME.to_owned(),
        // The release the member cluster reports, not the `major.minor` the settings pin.
        engine_version: "8.0.4".to_owned(),
        node_type: DEFAULT_NODE_TYPE.to_owned(),
        replicas: 1,
        user_group_id: CACHE_NAME.to_owned(),
        app_user_id: APP_USER_ID.to_owned(),
        app_user_name: "openemr".to_owned(),
        default_user_id: DEFAULT_USER_ID.to_owned(),
        primary_endpoint: PRIMARY_ENDPOINT.to_owned(),
        port: PORT,
        redis_password_parameter_arn: PARAMETER_ARN.to_owned(),
        redis_password_sha256: password_sha256.to_owned(),
    }
}

fn test_password_sha256() -> String {
    codegen::sha256_hex(TEST_PASSWORD.as_bytes())
}

/// Returns every file under `root`, which may not exist yet, sorted.
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
    files.sort();
    files
}

/// Returns each file under `root` with its contents, to compare before and after a failed run.
fn snapshot(root: &Utf8Path) -> Vec<(Utf8PathBuf, String)> {
    files_under(root)
        .into_iter()
        .map(|path| {
            let contents = std::fs::read_to_string(&path).expect("output file reads");
            (path, contents)
        })
        .collect()
}

fn assert_nothing_written(workspace: &Workspace) {
    let files = files_under(&workspace.output_root);
    assert!(files.is_empty(), "the deploy failed but wrote {files:?}");
}

/// Checks the returned record, the record on disk and the files that point OpenEMR at the
/// primary endpoint.
fn assert_deployed(workspace: &Workspace, outcome: Option<ElastiCacheRecord>) {
    let record = outcome.expect("a deploy returns its record");
    assert_eq!(record, expected_record(&test_password_sha256()), "returned record");

    let on_disk = ElastiCacheRecord::load(&workspace.project.elasticache_record()).expect("record reads");
    assert_eq!(on_disk.as_ref(), Some(&record), "generated/elasticache.yaml differs from the returned record");

    let options_text = std::fs::read_to_string(workspace.options_file()).expect("options file written");
    let options: serde_yaml::Value = serde_yaml::from_str(&options_text).expect("options file is YAML");
    let settings = &options["option_settings"];
    let redis_ip = &settings["aws:elasticbeanstalk:application:environment"]["REDIS_IP"];
    assert_eq!(redis_ip.as_str(), Some(PRIMARY_ENDPOINT), "options file:\n{options_text}");
    let password_secret = &settings["aws:elasticbeanstalk:application:environmentsecrets"]["REDIS_PASSWORD"];
    assert_eq!(password_secret.as_str(), Some(PARAMETER_ARN), "options file:\n{options_text}");

    // The instance backend's user data and record belong to the other backend.
    let relative: Vec<String> = files_under(&workspace.output_root)
        .iter()
        .map(|path| path.strip_prefix(&workspace.output_root).expect("file under the output root").to_string())
        .collect();
    let expected = [
        "generated/elasticache.yaml",
        "openemr/.ebextensions/00-options.config",
        "openemr/.ebextensions/01-redis-sessions.config",
        "openemr/.ebextensions/redis-sessions.sh",
    ];
    assert_eq!(relative, expected, "files written");
}

fn assert_password_absent(text: &str, location: &str) {
    assert!(!text.contains(TEST_PASSWORD), "the password appears in {location}");
}

#[tokio::test(start_paused = true)]
async fn creating_polls_until_available() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .output(|| replication_groups_output(group_in("creating")))
        .times(5)
        .output(|| replication_groups_output(available_group()))
        .build();

    // The clock is paused, so this measures tokio's virtual time, which moves only while every
    // task waits on a timer: here, only the poll delays.
    let started = tokio::time::Instant::now();
    let outcome = run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");
    let waited = started.elapsed();

    assert_deployed(&workspace, outcome);
    assert_eq!(account.describe_replication_group.num_calls(), 7, "one lookup, five creating polls, one available");
    // Tokio's timer rounds each sleep up to the next millisecond.
    assert!(waited >= FIVE_POLL_DELAYS, "waited {waited:?}, less than the five delays");
    assert!(waited < FIVE_POLL_DELAYS + Duration::from_millis(5), "waited {waited:?}, more than the five delays");
    assert_eq!(account.create_replication_group.num_calls(), 1, "CreateReplicationGroup calls");
    assert_eq!(account.create_user.num_calls(), 2, "CreateUser calls: the app user and the disabled default user");
    assert_eq!(account.create_user_group.num_calls(), 1, "CreateUserGroup calls");
    assert_eq!(account.create_subnet_group.num_calls(), 1, "CreateCacheSubnetGroup calls");
    assert_eq!(account.create_security_group.num_calls(), 1, "CreateSecurityGroup calls");
    assert_eq!(account.modify_user.num_calls(), 0, "a new user already has the password");
}

#[tokio::test(start_paused = true)]
async fn created_group_is_multi_az_with_tls() {
    let workspace = Workspace::new();
    let account = Account::fresh();

    run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    let inputs = account.create_group_inputs.all();
    assert_eq!(inputs.len(), 1, "CreateReplicationGroup inputs: {inputs:?}");
    let input = &inputs[0];
    assert_eq!(input.replication_group_id(), Some(CACHE_NAME), "{input:?}");
    assert_eq!(input.engine(), Some("valkey"), "{input:?}");
    assert_eq!(input.engine_version(), Some("8.0"), "{input:?}");
    assert_eq!(input.cache_node_type(), Some(DEFAULT_NODE_TYPE), "{input:?}");
    assert_eq!(input.num_cache_clusters(), Some(2), "a primary and one replica: {input:?}");
    assert_eq!(input.automatic_failover_enabled(), Some(true), "{input:?}");
    assert_eq!(input.multi_az_enabled(), Some(true), "{input:?}");
    assert_eq!(input.transit_encryption_enabled(), Some(true), "{input:?}");
    assert_eq!(input.at_rest_encryption_enabled(), Some(true), "{input:?}");
    assert_eq!(input.user_group_ids(), [CACHE_NAME], "{input:?}");
    assert_eq!(input.cache_subnet_group_name(), Some(CACHE_NAME), "{input:?}");
    assert_eq!(input.security_group_ids(), [CACHE_GROUP_ID], "{input:?}");
    assert_eq!(input.port(), Some(i32::from(PORT)), "{input:?}");
}

#[tokio::test(start_paused = true)]
async fn create_failed_names_describe_events() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .output(|| replication_groups_output(group_in("creating")))
        .output(|| replication_groups_output(group_in("create-failed")))
        .build();

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("replication group {CACHE_NAME}")), "names the group: {message}");
    assert!(message.contains("create-failed"), "{message}");
    assert!(message.contains("aws elasticache describe-events"), "points at the events: {message}");
    assert!(message.contains(&format!("--source-identifier {CACHE_NAME}")), "{message}");
    assert!(message.contains("cargo xtask destroy-redis --backend elasticache"), "names the way out: {message}");
    assert_nothing_written(&workspace);
    assert_eq!(account.describe_replication_group.num_calls(), 3, "lookup, creating, create-failed");
}

#[tokio::test(start_paused = true)]
async fn unsupported_node_type_names_setting() {
    let workspace = Workspace::with_settings("elasticache:\n  node_type: cache.r6g.medium\n");
    let mut account = Account::fresh();
    // ElastiCache's message for a node type it does not offer, as a Terraform run creating a
    // Valkey replication group printed it (quoted in runbook-phase2-stage-prod-troubleshooting.md
    // of github.com/mandoofu/kyeol-docs): r6g nodes start at large.
    account.create_replication_group = mock!(aws_sdk_elasticache::Client::create_replication_group)
        .then_http_response(|| elasticache_error(400, "InvalidParameterValue", "Invalid Cache Node Type: cache.r6g.medium."));

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("CreateReplicationGroup failed: InvalidParameterValue"), "{message}");
    assert!(message.contains("Invalid Cache Node Type: cache.r6g.medium."), "keeps ElastiCache's message: {message}");
    assert!(message.contains("node type `cache.r6g.medium` is not offered"), "explains: {message}");
    assert!(message.contains("`elasticache.node_type`"), "names the setting: {message}");
    assert_nothing_written(&workspace);
    assert_eq!(account.create_replication_group.num_calls(), 1, "a client error is not retried");
    assert_eq!(account.describe_replication_group.num_calls(), 1, "nothing created, nothing awaited");
}

#[tokio::test(start_paused = true)]
async fn insufficient_capacity_names_zone() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    // Shaped like the message that AWS's knowledge-center article "elasticache-fix-status-code-400"
    // quotes for this code, with our node type and zones: the zone that ran out, then the zones
    // to try instead.
    let aws_message = "cache.t4g.micro (VPC) is not currently supported in the availability zone us-east-1b. \
                       Retry the launch with no availability zone or target: us-east-1a, us-east-1c.";
    account.create_replication_group = mock!(aws_sdk_elasticache::Client::create_replication_group)
        .then_http_response(move || elasticache_error(400, "InsufficientCacheClusterCapacity", aws_message));

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("CreateReplicationGroup failed: InsufficientCacheClusterCapacity"), "{message}");
    assert!(message.contains("no capacity for node type `cache.t4g.micro`"), "{message}");
    assert!(message.contains(&format!("subnet group {CACHE_NAME}")), "{message}");
    assert!(message.contains(ZONE_B), "names the zone AWS named: {message}");
    assert!(message.contains("retry later"), "says what to try: {message}");
    assert!(message.contains("`elasticache.node_type`"), "names the setting: {message}");
    assert_nothing_written(&workspace);
    assert_eq!(account.describe_replication_group.num_calls(), 1, "nothing created, nothing awaited");
}

#[tokio::test(start_paused = true)]
async fn timeout_names_last_status() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .output(|| replication_groups_output(group_in("creating")))
        .repeatedly()
        .build();
    let flags = DeployRedis { timeout: Some(60), ..default_flags() };

    let started = tokio::time::Instant::now();
    let error = run_deploy(&account, &workspace, &flags).await.unwrap_err();
    let waited = started.elapsed();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("replication group {CACHE_NAME} is still creating at the timeout")), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(message.contains("rerun `cargo xtask deploy-redis` to resume waiting"), "says how to resume: {message}");
    assert!(message.contains("--timeout"), "names the flag: {message}");
    assert_nothing_written(&workspace);
    assert!(waited <= Duration::from_secs(60), "waited {waited:?}, past the 60 s bound");
    // Poll delays are at most 10 s, so the deploy gives up less than 10 s before the bound.
    assert!(waited > Duration::from_secs(50), "gave up early, after {waited:?}");
    // The polls come at 0, 1, 2.5, 4.75, 8.125, 13.19, 20.78, 30.78, 40.78 and 50.78 s, and the
    // next would come after the bound.
    assert_eq!(account.describe_replication_group.num_calls(), 11, "one lookup and ten polls");
}

/// `--timeout` bounds the wait for the user group too, and the replication group is never
/// requested while its user group is not `active`.
#[tokio::test(start_paused = true)]
async fn timeout_covers_user_group_wait() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_user_group = mock!(aws_sdk_elasticache::Client::describe_user_groups)
        .sequence()
        .http_response(|| elasticache_error(404, "UserGroupNotFound", &format!("User group {CACHE_NAME} not found.")))
        .output(|| user_group_in("creating"))
        .repeatedly()
        .build();
    let flags = DeployRedis { timeout: Some(60), ..default_flags() };

    let started = tokio::time::Instant::now();
    let error = run_deploy(&account, &workspace, &flags).await.unwrap_err();
    let waited = started.elapsed();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("user group {CACHE_NAME} is still creating at the timeout")), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(waited <= Duration::from_secs(60), "waited {waited:?}, past the 60 s bound");
    assert_eq!(account.create_replication_group.num_calls(), 0, "no replication group before the user group is active");
    assert_nothing_written(&workspace);
}

#[tokio::test(start_paused = true)]
async fn group_not_visible_yet_is_tolerated() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    // DescribeReplicationGroups is eventually consistent, so right after CreateReplicationGroup it
    // can still return ReplicationGroupNotFoundFault.
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .times(3)
        .output(|| replication_groups_output(group_in("creating")))
        .output(|| replication_groups_output(available_group()))
        .build();

    let outcome = run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, outcome);
    assert_eq!(account.describe_replication_group.num_calls(), 5, "lookup, two not found, creating, available");
    assert_eq!(account.create_replication_group.num_calls(), 1, "the group is created once");
}

#[tokio::test(start_paused = true)]
async fn group_never_visible_fails_after_tolerance() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .repeatedly()
        .build();

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("replication group {CACHE_NAME} was created but DescribeReplicationGroups")), "{message}");
    assert!(message.contains("keeps returning ReplicationGroupNotFoundFault"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert_nothing_written(&workspace);
    // The wait tolerates five polls that miss the group and fails on the sixth.
    assert_eq!(account.describe_replication_group.num_calls(), 7, "one lookup and six polls");
}

#[tokio::test(start_paused = true)]
async fn subnets_in_one_zone_fail_early() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_other_subnet = subnet_rule("Other Private", OTHER_SUBNET_ID, ZONE_A);

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("all in one zone"), "{message}");
    assert!(message.contains(&format!("Private ({PRIVATE_SUBNET_ID}, {ZONE_A})")), "names the subnet and zone: {message}");
    assert!(message.contains(&format!("Other Private ({OTHER_SUBNET_ID}, {ZONE_A})")), "names the subnet and zone: {message}");
    assert!(message.contains("`elasticache.subnet_names`"), "names the setting: {message}");
    assert_nothing_written(&workspace);
    account.assert_nothing_created();
    // The check runs on the subnets alone, before any ElastiCache or SSM request.
    assert_eq!(account.operations.operations(), ["DescribeVpcs", "DescribeSubnets", "DescribeSubnets"]);
}

/// Returns an available group whose node type, replica count and TLS differ from the settings.
fn drifted_group() -> ReplicationGroup {
    let endpoint = Endpoint::builder().address(PRIMARY_ENDPOINT).port(i32::from(PORT)).build();
    group_builder("available")
        .cache_node_type("cache.t4g.small")
        .set_member_clusters(Some(vec![format!("{CACHE_NAME}-001")]))
        .transit_encryption_enabled(false)
        .node_groups(NodeGroup::builder().primary_endpoint(endpoint).build())
        .build()
}

#[tokio::test(start_paused = true)]
async fn drifted_group_lists_each_fix() {
    let workspace = Workspace::new();
    let account = Account::deployed().with_existing_group(drifted_group());

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    let heading = format!("replication group {CACHE_NAME} cannot be deployed as the settings ask; nothing was changed");
    assert!(message.starts_with(&heading), "{message}");
    let problems: Vec<&str> = message.lines().filter(|line| line.starts_with("  - ")).collect();
    assert_eq!(problems.len(), 3, "one line per difference: {message}");
    assert!(problems[0].contains("node type is cache.t4g.small, the settings ask for cache.t4g.micro"), "{message}");
    assert!(problems[0].contains("--cache-node-type cache.t4g.micro"), "gives the fix: {message}");
    assert!(problems[1].contains("0 replica(s), the settings ask for 1"), "{message}");
    assert!(problems[1].contains("increase-replica-count"), "gives the fix: {message}");
    assert!(problems[2].contains("TLS in transit is off"), "{message}");
    assert!(problems[2].contains("cargo xtask destroy-redis --backend elasticache"), "gives the fix: {message}");
    assert_nothing_written(&workspace);
    account.operations.assert_only_lookups();
    assert_eq!(account.get_parameter.num_calls(), 0, "the password is not read before the drift check");
}

/// The replication group does not report its engine version, so the deploy reads it from a member
/// cluster. A release outside the pinned `major.minor` is drift, reported with its upgrade command.
#[tokio::test(start_paused = true)]
async fn other_engine_version_is_drift() {
    let workspace = Workspace::new();
    let mut account = Account::deployed().with_existing_group(available_group());
    account.describe_cache_clusters = cache_clusters_rule("7.2.4");

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("engine version is 7.2.4, the settings pin 8.0"), "{message}");
    assert!(message.contains("--engine-version 8.0"), "gives the fix: {message}");
    assert_nothing_written(&workspace);
    account.operations.assert_only_lookups();
}

#[tokio::test(start_paused = true)]
async fn dry_run_warns_about_drift() {
    let workspace = Workspace::new();
    let account = Account::deployed().with_existing_group(drifted_group());

    let outcome = run_deploy(&account, &workspace, &dry_run_flags()).await.expect("a dry run succeeds despite drift");

    assert_eq!(outcome, None, "a dry run returns no record");
    assert_nothing_written(&workspace);
    account.operations.assert_only_lookups();

    // The dry run prints its plan on stdout, which a test cannot read, so the same plan is
    // built again from the same lookups.
    let clients = account.clients();
    let settings = &workspace.prepared.settings;
    let found = deploy_elasticache::look_up(&clients, settings).await.expect("lookups succeed");
    let group = found.replication_group.as_ref().expect("the lookup finds the group");
    let drift = deploy_elasticache::replication_group_drift(group, settings);
    let report = deploy_elasticache::plan_report(&workspace.project, &workspace.prepared, REGION, &found, drift)
        .expect("plan builds");
    assert_eq!(report.warnings.len(), 3, "warnings: {:?}", report.warnings);
    for warning in &report.warnings {
        assert!(warning.starts_with(&format!("replication group {CACHE_NAME}: ")), "{warning}");
        assert!(warning.ends_with("; a deploy stops here"), "{warning}");
    }
    let text = plan::render_text(&report);
    assert!(text.contains("warning: replication group openemr-sessions: node type is cache.t4g.small"), "{text}");
    assert!(text.contains("warning: replication group openemr-sessions: TLS in transit is off"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn rotated_password_modifies_app_user() {
    let workspace = Workspace::new();
    let older_sha256 = codegen::sha256_hex(b"the password before rotate-redis-password");
    workspace.write_record(&older_sha256);
    let account = Account::deployed();

    let outcome = run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    let inputs = account.modify_user_inputs.all();
    assert_eq!(inputs.len(), 1, "ModifyUser inputs: {inputs:?}");
    let input = &inputs[0];
    assert_eq!(input.user_id(), Some(APP_USER_ID), "ModifyUser targets the app user");
    assert_eq!(input.access_string(), Some(app_access().as_str()), "ModifyUser restores the access string");
    let mode = input.authentication_mode().expect("ModifyUser sets the authentication mode");
    assert_eq!(mode.r#type(), Some(&InputAuthenticationType::Password), "authentication type");
    assert_eq!(mode.passwords(), [TEST_PASSWORD], "ModifyUser sends the password from SSM");

    assert_password_absent(&format!("{outcome:?}"), "the returned record");
    for (path, contents) in snapshot(&workspace.output_root) {
        assert_password_absent(&contents, path.as_str());
    }
    assert_deployed(&workspace, outcome);
    account.assert_nothing_created();
}

#[tokio::test(start_paused = true)]
async fn known_password_skips_modify_user() {
    let workspace = Workspace::new();
    workspace.write_record(&test_password_sha256());
    let account = Account::deployed();

    let outcome = run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_eq!(account.modify_user.num_calls(), 0, "the app user already has the password in SSM");
    assert_deployed(&workspace, outcome);
    // Everything exists and matches, so a rerun only looks up and rewrites the same files.
    account.operations.assert_only_lookups();
}

#[tokio::test(start_paused = true)]
async fn modify_user_error_hides_password() {
    let workspace = Workspace::new();
    let older_sha256 = codegen::sha256_hex(b"the password before rotate-redis-password");
    workspace.write_record(&older_sha256);
    let before = snapshot(&workspace.output_root);
    let mut account = Account::deployed();
    // A made-up message that quotes the password, the case the error path must redact.
    account.modify_user = mock!(aws_sdk_elasticache::Client::modify_user).then_http_response(|| {
        let quoting_message = format!("Passwords [{TEST_PASSWORD}] is not valid for user {APP_USER_ID}.");
        elasticache_error(400, "InvalidParameterValue", &quoting_message)
    });

    let error = run_deploy(&account, &workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("ModifyUser failed: InvalidParameterValue"), "{message}");
    assert!(message.contains("Passwords [(hidden)]"), "the password is replaced: {message}");
    assert_password_absent(&message, "the error message");
    assert_password_absent(&format!("{error:?}"), "the error's debug output");
    assert_eq!(snapshot(&workspace.output_root), before, "a failed deploy changed the output root");
}

#[tokio::test(start_paused = true)]
async fn throttled_poll_is_retried() {
    let workspace = Workspace::new();
    let mut account = Account::fresh();
    account.describe_replication_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .sequence()
        .http_response(replication_group_not_found)
        .output(|| replication_groups_output(group_in("creating")))
        .http_response(throttled)
        .times(2)
        .output(|| replication_groups_output(available_group()))
        .build();

    let outcome = run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    assert_deployed(&workspace, outcome);
    let attempts = account.operations.attempts("DescribeReplicationGroups");
    assert_eq!(attempts, 5, "lookup, creating poll, then one poll in three attempts: two throttled, one available");
    assert_eq!(account.describe_replication_group.num_calls(), 5, "responses used");
}

#[tokio::test(start_paused = true)]
async fn dry_run_sends_only_lookups() {
    let workspace = Workspace::new();
    let account = Account::fresh();

    let outcome = run_deploy(&account, &workspace, &dry_run_flags()).await.expect("dry run succeeds");

    assert_eq!(outcome, None, "a dry run returns no record");
    assert_nothing_written(&workspace);
    account.assert_nothing_created();
    account.operations.assert_only_lookups();
    let operations = account.operations.operations();
    for expected in ["DescribeVpcs", "DescribeSubnets", "DescribeReplicationGroups", "DescribeUserGroups", "GetParameter"] {
        assert!(operations.iter().any(|sent| sent == expected), "the dry run looks up with {expected}: {operations:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Resources that serve someone else

/// A replication group that is not the deploy's but uses resources with the deploy's names.
const OTHER_REPLICATION_GROUP: &str = "billing-cache";
/// A user group that is not the deploy's.
const OTHER_USER_GROUP: &str = "billing-users";

/// Runs a deploy that the conflict check must stop and returns its error message. Checks that
/// the deploy sent only lookups, did not read the password and left the output root as it was.
async fn deploy_stopped_by_conflict(account: &Account, workspace: &Workspace) -> String {
    let before = snapshot(&workspace.output_root);

    let error = run_deploy(account, workspace, &default_flags()).await.unwrap_err();

    let message = format!("{error:#}");
    let heading = format!("replication group {CACHE_NAME} cannot be deployed as the settings ask; nothing was changed");
    assert!(message.starts_with(&heading), "{message}");
    account.operations.assert_only_lookups();
    assert_eq!(account.get_parameter.num_calls(), 0, "the password is not read before the conflict check");
    assert_eq!(snapshot(&workspace.output_root), before, "the stopped deploy changed the output root");
    message
}

/// Returns the lines of a deploy error that list one problem each.
fn problem_lines(message: &str) -> Vec<&str> {
    message.lines().filter(|line| line.starts_with("  - ")).collect()
}

/// Returns the one problem line of `message`, failing the test when there are more or none.
fn only_problem(message: &str) -> &str {
    let problems = problem_lines(message);
    assert_eq!(problems.len(), 1, "one conflict: {message}");
    problems[0]
}

/// Builds the DescribeUserGroups rule for the deploy's user group, active and used by
/// `replication_groups`.
fn user_group_serving(replication_groups: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_user_groups).then_output(move || {
        let ids: Vec<String> = replication_groups.iter().map(|id| (*id).to_owned()).collect();
        let group = user_group_builder("active").set_replication_groups(Some(ids)).build();
        DescribeUserGroupsOutput::builder().user_groups(group).build()
    })
}

/// Returns the record of an earlier deploy of replication group `id` in `region`.
fn record_of(id: &str, region: &str) -> ElastiCacheRecord {
    ElastiCacheRecord { replication_group_id: id.to_owned(), region: region.to_owned(), ..expected_record(&test_password_sha256()) }
}

#[tokio::test(start_paused = true)]
async fn record_of_other_group_stops_deploy() {
    let workspace = Workspace::new();
    // The record names the group from before a rename of `elasticache.name`, and the renamed group
    // does not exist yet.
    workspace.write_record_of(&record_of("openemr-old", REGION));
    let account = Account::fresh();

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains("generated/elasticache.yaml records replication group openemr-old in us-east-1"), "{message}");
    assert!(problem.contains(&format!("the settings name {CACHE_NAME} in {REGION}")), "{message}");
    assert!(problem.contains("`cargo xtask destroy-redis --backend elasticache`"), "gives the fix: {message}");
    assert!(problem.contains("set `elasticache.name` (and `region`) back"), "gives the other fix: {message}");
}

#[tokio::test(start_paused = true)]
async fn record_in_other_region_stops_deploy() {
    let workspace = Workspace::new();
    workspace.write_record_of(&record_of(CACHE_NAME, "eu-west-1"));
    let account = Account::fresh();

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("records replication group {CACHE_NAME} in eu-west-1")), "{message}");
    assert!(problem.contains(&format!("the settings name {CACHE_NAME} in {REGION}")), "{message}");
    assert!(problem.contains("`cargo xtask destroy-redis --backend elasticache`"), "gives the fix: {message}");
}

#[tokio::test(start_paused = true)]
async fn shared_user_group_stops_deploy() {
    let workspace = Workspace::new();
    let mut account = Account::deployed();
    // The deploy's own group is listed too, as ElastiCache lists every group the user group serves.
    account.describe_user_group = user_group_serving(&[CACHE_NAME, OTHER_REPLICATION_GROUP]);

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    let expected = format!("user group {CACHE_NAME} also serves {OTHER_REPLICATION_GROUP}, which");
    assert!(problem.contains(&expected), "names only the other group: {message}");
    assert!(problem.contains("choose another `elasticache.name`"), "gives the fix: {message}");
}

#[tokio::test(start_paused = true)]
async fn shared_app_user_stops_deploy() {
    let workspace = Workspace::new();
    let mut account = Account::deployed();
    let user = existing_user_builder(APP_USER_ID, "openemr", &app_access()).user_group_ids(OTHER_USER_GROUP).build();
    account.describe_app_user = describe_user_rule(APP_USER_ID, user);

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("user {APP_USER_ID} belongs to user group(s) {OTHER_USER_GROUP},")), "{message}");
    assert!(problem.contains("choose another `elasticache.name`"), "gives the fix: {message}");
    assert_eq!(account.modify_user.num_calls(), 0, "the app user keeps its password");
}

#[tokio::test(start_paused = true)]
async fn shared_default_user_stops_deploy() {
    let workspace = Workspace::new();
    let mut account = Account::deployed();
    let user = existing_user_builder(DEFAULT_USER_ID, "default", "off -@all").user_group_ids(OTHER_USER_GROUP).build();
    account.describe_default_user = describe_user_rule(DEFAULT_USER_ID, user);

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("user {DEFAULT_USER_ID} belongs to user group(s) {OTHER_USER_GROUP},")), "{message}");
    assert!(problem.contains("choose another `elasticache.name`"), "gives the fix: {message}");
}

#[tokio::test(start_paused = true)]
async fn changed_redis_user_stops_deploy() {
    // The app user exists as `openemr`, the default, and the settings now ask for another name.
    let workspace = Workspace::with_settings("redis_user: sessions\n");
    let account = Account::deployed();

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    let expected = format!("user {APP_USER_ID} has user name `openemr`, but the settings ask for `sessions`");
    assert!(problem.contains(&expected), "{message}");
    assert!(problem.contains("ElastiCache cannot rename a user"), "explains: {message}");
    assert!(problem.contains("set `redis_user` back"), "gives the fix: {message}");
    assert!(problem.contains("`cargo xtask destroy-redis --backend elasticache`"), "gives the other fix: {message}");
}

#[tokio::test(start_paused = true)]
async fn create_failed_group_stops_deploy() {
    let workspace = Workspace::new();
    let account = Account::deployed().with_existing_group(group_in("create-failed"));

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("replication group {CACHE_NAME} failed to create (status create-failed)")), "{message}");
    assert!(problem.contains("`cargo xtask destroy-redis --backend elasticache`, which finds it by name"), "gives the fix: {message}");
    assert_eq!(account.describe_replication_group.num_calls(), 1, "the failed group is looked up, not awaited");
}

#[tokio::test(start_paused = true)]
async fn dry_run_warns_about_conflicts() {
    let workspace = Workspace::new();
    workspace.write_record_of(&record_of("openemr-old", REGION));
    let before = snapshot(&workspace.output_root);
    let mut account = Account::deployed();
    account.describe_user_group = user_group_serving(&[CACHE_NAME, OTHER_REPLICATION_GROUP]);

    let outcome = run_deploy(&account, &workspace, &dry_run_flags()).await.expect("a dry run succeeds despite conflicts");

    assert_eq!(outcome, None, "a dry run returns no record");
    assert_eq!(snapshot(&workspace.output_root), before, "the dry run changed the output root");
    account.operations.assert_only_lookups();

    // The dry run prints its plan on stdout, which a test cannot read, so the same plan is
    // built again from the same lookups.
    let clients = account.clients();
    let settings = &workspace.prepared.settings;
    let found = deploy_elasticache::look_up(&clients, settings).await.expect("lookups succeed");
    let recorded = ElastiCacheRecord::load(&workspace.project.elasticache_record()).expect("the record reads");
    let problems = deploy_elasticache::conflicts(&found, settings, recorded.as_ref(), REGION);
    let report = deploy_elasticache::plan_report(&workspace.project, &workspace.prepared, REGION, &found, problems)
        .expect("plan builds");
    assert_eq!(report.warnings.len(), 2, "warnings: {:?}", report.warnings);
    for warning in &report.warnings {
        assert!(warning.starts_with(&format!("replication group {CACHE_NAME}: ")), "{warning}");
        assert!(warning.ends_with("; a deploy stops here"), "{warning}");
    }
    let text = plan::render_text(&report);
    let prefix = format!("warning: replication group {CACHE_NAME}: ");
    let record_warning = format!("{prefix}generated/elasticache.yaml records replication group openemr-old");
    assert!(text.contains(&record_warning), "{text}");
    let user_group_warning = format!("{prefix}user group {CACHE_NAME} also serves {OTHER_REPLICATION_GROUP}");
    assert!(text.contains(&user_group_warning), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A default user that someone switched on

/// Returns the deploy's default user after someone switched it on, with authentication `kind`.
fn enabled_default_user(kind: AuthenticationType) -> User {
    existing_user_builder(DEFAULT_USER_ID, "default", "on ~* +@all")
        .authentication(Authentication::builder().r#type(kind).build())
        .build()
}

#[tokio::test(start_paused = true)]
async fn enabled_default_user_is_switched_off() {
    for kind in [AuthenticationType::NoPassword, AuthenticationType::Password] {
        let workspace = Workspace::new();
        // The record has the password in SSM, so the app user needs no ModifyUser of its own.
        workspace.write_record(&test_password_sha256());
        let mut account = Account::deployed();
        account.describe_default_user = describe_user_rule(DEFAULT_USER_ID, enabled_default_user(kind.clone()));

        let outcome = run_deploy(&account, &workspace, &default_flags()).await;

        let outcome = outcome.unwrap_or_else(|error| panic!("authentication {kind:?}: the deploy failed: {error:#}"));
        let inputs = account.modify_user_inputs.all();
        assert_eq!(inputs.len(), 1, "authentication {kind:?}: ModifyUser inputs: {inputs:?}");
        let input = &inputs[0];
        assert_eq!(input.user_id(), Some(DEFAULT_USER_ID), "authentication {kind:?}: ModifyUser targets the default user");
        assert_eq!(input.access_string(), Some("off -@all"), "authentication {kind:?}: {input:?}");
        assert_eq!(input.no_password_required(), Some(true), "authentication {kind:?}: {input:?}");
        assert!(input.passwords().is_empty(), "authentication {kind:?}: ModifyUser sends no password: {input:?}");
        assert_eq!(input.authentication_mode(), None, "authentication {kind:?}: {input:?}");
        assert_deployed(&workspace, outcome);
        account.assert_nothing_created();
    }
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_default_user_repair() {
    let workspace = Workspace::new();
    let mut account = Account::deployed();
    account.describe_default_user = describe_user_rule(DEFAULT_USER_ID, enabled_default_user(AuthenticationType::NoPassword));

    let outcome = run_deploy(&account, &workspace, &dry_run_flags()).await.expect("the dry run succeeds");

    assert_eq!(outcome, None, "a dry run returns no record");
    assert_eq!(account.modify_user.num_calls(), 0, "a dry run repairs nothing");
    account.operations.assert_only_lookups();
    assert_nothing_written(&workspace);

    // The plan is built again from the same lookups, since the dry run prints it on stdout.
    let clients = account.clients();
    let settings = &workspace.prepared.settings;
    let mut found = deploy_elasticache::look_up(&clients, settings).await.expect("lookups succeed");
    let problems = deploy_elasticache::conflicts(&found, settings, None, REGION);
    assert_eq!(problems, Vec::<String>::new(), "a default user that is on is repaired, not a conflict");
    // As after a deploy whose record shows the password in SSM, so the app user needs nothing.
    let password = xtask_aws::ssm::find_password(&clients.ssm, PARAMETER_NAME).await.expect("GetParameter succeeds");
    found.recorded_password_sha256 = password.as_ref().map(|password| password.sha256.clone());
    found.password = password;
    let rows = deploy_elasticache::plan_rows(&workspace.prepared, &found);
    let user_action = |id: &str| {
        let row = rows.iter().find(|row| row.resource == "user" && row.subject == id);
        row.unwrap_or_else(|| panic!("no plan row for user {id}: {rows:#?}")).action
    };
    assert_eq!(user_action(DEFAULT_USER_ID), plan::Action::Repair, "{rows:#?}");
    assert_eq!(user_action(APP_USER_ID), plan::Action::Reuse, "{rows:#?}");
}

#[tokio::test(start_paused = true)]
async fn renamed_default_user_stops_deploy() {
    let workspace = Workspace::new();
    // Only the user exists, so a deploy that checked it late would have created the rest first.
    let mut account = Account::fresh();
    let user = existing_user_builder(DEFAULT_USER_ID, "admin", "on ~* +@all").build();
    account.describe_default_user = describe_user_rule(DEFAULT_USER_ID, user);

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("user {DEFAULT_USER_ID} has user name `admin`, not `default`")), "{message}");
    assert!(problem.contains("ElastiCache cannot rename a user"), "explains: {message}");
    assert!(problem.contains(&format!("`aws elasticache delete-user --user-id {DEFAULT_USER_ID}`")), "gives the fix: {message}");
    account.assert_nothing_created();
    assert_eq!(account.modify_user.num_calls(), 0, "the user is not changed");
}

/// An app user that someone switched to no password lets anyone in. So the deploy gives it the
/// password from SSM again, even when the record shows that password.
#[tokio::test(start_paused = true)]
async fn passwordless_app_user_gets_password_again() {
    let workspace = Workspace::new();
    workspace.write_record(&test_password_sha256());
    let mut account = Account::deployed();
    let passwordless = existing_user_builder(APP_USER_ID, "openemr", &app_access())
        .authentication(Authentication::builder().r#type(AuthenticationType::NoPassword).build())
        .build();
    account.describe_app_user = describe_user_rule(APP_USER_ID, passwordless);

    run_deploy(&account, &workspace, &default_flags()).await.expect("deploy succeeds");

    let inputs = account.modify_user_inputs.all();
    assert_eq!(inputs.len(), 1, "one ModifyUser: {inputs:?}");
    assert_eq!(inputs[0].user_id(), Some(APP_USER_ID));
    let mode = inputs[0].authentication_mode().expect("the request sets the authentication");
    assert_eq!(mode.r#type(), Some(&InputAuthenticationType::Password));
}

/// ElastiCache user groups serve serverless caches too; changing the users of one would cut its
/// clients off.
#[tokio::test(start_paused = true)]
async fn user_group_of_serverless_cache_stops_deploy() {
    let workspace = Workspace::new();
    let mut account = Account::deployed();
    account.describe_user_group = mock!(aws_sdk_elasticache::Client::describe_user_groups).then_output(|| {
        let group = user_group_builder("active").replication_groups(CACHE_NAME).serverless_caches("their-cache").build();
        DescribeUserGroupsOutput::builder().user_groups(group).build()
    });

    let message = deploy_stopped_by_conflict(&account, &workspace).await;

    let problem = only_problem(&message);
    assert!(problem.contains(&format!("user group {CACHE_NAME} also serves serverless cache their-cache")), "{message}");
}
