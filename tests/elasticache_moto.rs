//! `deploy-redis`, `status` and `destroy-redis` with `backend: elasticache`, called in process
//! against moto_server on loopback. Every client has a region, fake static credentials and moto's
//! loopback endpoint. Only the instance backend's destroy runs through the `xtask-aws` binary, with
//! the emulator's environment.
//!
//! moto 5.2.1 implements ElastiCache subnet groups (create, describe), users (create, describe,
//! delete) and replication groups (create, describe, delete), but not CreateUserGroup,
//! DescribeUserGroups, ModifyUserGroup, DeleteUserGroup, DeleteCacheSubnetGroup, ModifyUser or
//! ModifyCacheSubnetGroup. So the ElastiCache client carries an `aws-smithy-mocks` interceptor that
//! serves CreateUserGroup, DescribeUserGroups, DeleteUserGroup and DeleteCacheSubnetGroup from a
//! small in-memory store, which the tests read to check the arguments. Every other call goes to
//! moto. No test here expects ModifyUserGroup, ModifyUser or ModifyCacheSubnetGroup, so they are
//! not mocked, and a call to one fails the test.
//!
//! Three more moto behaviours are bridged here. moto keeps a deleted replication group in
//! `deleting` for ever, and still describes a subnet group after the mocked deletion, so once
//! either is deleted the interceptor returns the not-found fault that ElastiCache returns when the
//! deletion has finished. moto ignores NumCacheClusters, so `MotoReplicaCount` passes the replica
//! count in the parameter moto reads.
//!
//! The interceptor replaces the response, but the request still reaches moto, which responds to an
//! unknown action with HTTP 500. The SDK retries a 500 even when the interceptor has replaced the
//! response, and the interceptor cannot serve a retry of a computed response, so the ElastiCache
//! client has retries switched off.

#[path = "support/emulator.rs"]
mod emulator;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_ec2::types::SecurityGroup as Ec2SecurityGroup;
use aws_sdk_elasticache::config::interceptors::BeforeSerializationInterceptorContextMut;
use aws_sdk_elasticache::config::retry::RetryConfig;
use aws_sdk_elasticache::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_elasticache::error::BoxError;
use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupInput;
use aws_sdk_elasticache::operation::create_user_group::{CreateUserGroupError, CreateUserGroupInput, CreateUserGroupOutput};
use aws_sdk_elasticache::operation::delete_cache_subnet_group::{DeleteCacheSubnetGroupError, DeleteCacheSubnetGroupOutput};
use aws_sdk_elasticache::operation::delete_replication_group::DeleteReplicationGroupInput;
use aws_sdk_elasticache::operation::delete_user_group::{DeleteUserGroupError, DeleteUserGroupOutput};
use aws_sdk_elasticache::operation::describe_cache_subnet_groups::DescribeCacheSubnetGroupsError;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsError;
use aws_sdk_elasticache::operation::describe_user_groups::{DescribeUserGroupsError, DescribeUserGroupsOutput};
use aws_sdk_elasticache::types::error::{
    CacheSubnetGroupNotFoundFault, ReplicationGroupNotFoundFault, UserGroupAlreadyExistsFault, UserGroupNotFoundFault,
};
use aws_sdk_elasticache::types::{
    AuthenticationType, AutomaticFailoverStatus, CacheSubnetGroup, MultiAzStatus, ReplicationGroup, User, UserGroup,
};
use aws_smithy_mocks::{MockResponse, MockResponseInterceptor, Rule, RuleMode, mock};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use emulator::{Emulator, TEST_SETTINGS, describe, filter, snapshot};
use xtask::codegen;
use xtask::flags::DeployRedis;
use xtask::project::Project;
use xtask::record::{DeploymentRecord, ElastiCacheRecord};
use xtask_aws::deploy_elasticache::{self, Clients};
use xtask_aws::deploy_redis::{self, Outcome, Prepared};
use xtask_aws::destroy_elasticache;
use xtask_aws::ec2::{MANAGED_BY_KEY, MANAGED_BY_VALUE};
use xtask_aws::elasticache::users::{DEFAULT_USER_ACCESS, app_user_access, find_user_group};
use xtask_aws::status::Report;
use xtask_aws::status::elasticache::compare;

const REGION: &str = "us-east-1";
const PARAMETER_NAME: &str = "/openemr/redis/password";
const DEFAULT_NAME: &str = "openemr-sessions";
const CUSTOM_NAME: &str = "sessions-test";
const OPTIONS_FILE: &str = "openemr/.ebextensions/00-options.config";
const HOOK_SCRIPT: &str = "openemr/.ebextensions/redis-sessions.sh";
const RECORD_FILE: &str = "generated/elasticache.yaml";

/// How long one deploy, status or destroy may take. moto responds at once and the mocked user
/// group is `active` at once, so only a wait loop that never ends comes near it.
const CALL_LIMIT: Duration = Duration::from_secs(120);

/// Returns the emulator's settings with `backend: elasticache` and every ElastiCache default.
fn default_settings() -> String {
    format!("{TEST_SETTINGS}backend: elasticache\n")
}

/// Returns the emulator's settings with `backend: elasticache` and an ElastiCache value other
/// than the default for every key but the subnets.
fn custom_settings() -> String {
    format!(
        "{TEST_SETTINGS}backend: elasticache\nelasticache:\n  name: {CUSTOM_NAME}\n  engine_version: \"7.2\"\n  \
         node_type: cache.t4g.small\n  replicas: 2\n"
    )
}

fn deploy_flags() -> DeployRedis {
    DeployRedis { dry_run: false, replace: false, markdown: None, new_launch: false, timeout: Some(60) }
}

fn dry_run_flags() -> DeployRedis {
    DeployRedis { dry_run: true, ..deploy_flags() }
}

/// Fails the test when `future` runs past [`CALL_LIMIT`], instead of letting a wait loop hang.
async fn within_limit<T>(step: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{step} still runs after {} s", CALL_LIMIT.as_secs()))
}

// ---------------------------------------------------------------------------------------------
// Recorded calls

/// What the test clients sent, in order, and the inputs the assertions read.
#[derive(Debug, Default)]
struct Ledger {
    /// `Service:Operation` of every call, such as `ElastiCache:CreateUser`.
    operations: Vec<String>,
    replication_group_requests: Vec<CreateReplicationGroupInput>,
    deleted_replication_groups: BTreeSet<String>,
}

/// An interceptor that records every call once, before the mocks or moto receive it.
#[derive(Debug, Clone, Default)]
struct CallLog(Arc<Mutex<Ledger>>);

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // The operation's metadata is in the configuration only from the serialization hooks on.
    // `MotoReplicaCount` is registered after this interceptor, so this hook still reads the
    // request as the product built it.
    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metadata = cfg.load::<Metadata>().ok_or("the SDK stored no operation metadata")?;
        let mut ledger = self.0.lock().expect("call log lock");
        ledger.operations.push(format!("{}:{}", metadata.service(), metadata.name()));
        let input = context.input();
        if let Some(request) = input.downcast_ref::<CreateReplicationGroupInput>() {
            ledger.replication_group_requests.push(request.clone());
        }
        if let Some(id) = input.downcast_ref::<DeleteReplicationGroupInput>().and_then(|request| request.replication_group_id()) {
            ledger.deleted_replication_groups.insert(id.to_owned());
        }
        Ok(())
    }
}

impl CallLog {
    fn len(&self) -> usize {
        self.0.lock().expect("call log lock").operations.len()
    }

    /// Returns the calls after the first `start`.
    fn operations_since(&self, start: usize) -> Vec<String> {
        self.0.lock().expect("call log lock").operations[start..].to_vec()
    }

    /// Returns the calls after the first `start` that may change something: every operation but
    /// Describe, Get and List.
    fn mutating_since(&self, start: usize) -> Vec<String> {
        let read_only = |operation: &str| {
            let name = operation.split_once(':').map_or(operation, |(_, name)| name);
            ["Describe", "Get", "List"].iter().any(|prefix| name.starts_with(prefix))
        };
        self.operations_since(start).into_iter().filter(|operation| !read_only(operation)).collect()
    }

    fn count(&self, operation: &str) -> usize {
        self.0.lock().expect("call log lock").operations.iter().filter(|logged| *logged == operation).count()
    }

    fn replication_group_requests(&self) -> Vec<CreateReplicationGroupInput> {
        self.0.lock().expect("call log lock").replication_group_requests.clone()
    }

    fn deleted_replication_group(&self, id: &str) -> bool {
        self.0.lock().expect("call log lock").deleted_replication_groups.contains(id)
    }

    /// Returns the replication groups requested with user group `user_group_id` and not deleted
    /// since. A request that moto rejected counts too, which no test here sends.
    fn replication_groups_using(&self, user_group_id: &str) -> Vec<String> {
        let ledger = self.0.lock().expect("call log lock");
        ledger
            .replication_group_requests
            .iter()
            .filter(|request| request.user_group_ids().iter().any(|id| id == user_group_id))
            .filter_map(|request| request.replication_group_id())
            .filter(|id| !ledger.deleted_replication_groups.contains(*id))
            .map(str::to_owned)
            .collect()
    }
}

/// Passes the replica count to moto in the parameter it reads. moto 5.2.1 ignores
/// NumCacheClusters when cluster mode is disabled and adds replicas from ReplicasPerNodeGroup
/// only (`_set_node_members_clusters_disabled` in moto/elasticache/models.py), so without this
/// every group would have a primary and no replica.
#[derive(Debug)]
struct MotoReplicaCount;

impl Intercept for MotoReplicaCount {
    fn name(&self) -> &'static str {
        "MotoReplicaCount"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(request) = context.input_mut().downcast_mut::<CreateReplicationGroupInput>()
            && request.replicas_per_node_group.is_none()
        {
            request.replicas_per_node_group = request.num_cache_clusters.map(|clusters| clusters - 1);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The calls moto lacks

/// The state behind the mocked calls.
#[derive(Debug, Default)]
struct MockedState {
    /// User ids by user group id, sorted.
    user_groups: BTreeMap<String, Vec<String>>,
    /// Replication groups that use a user group although the product did not create them, by
    /// user group id, for tests of resources that serve someone else.
    other_replication_groups: BTreeMap<String, Vec<String>>,
    user_group_requests: Vec<CreateUserGroupInput>,
    deleted_user_groups: Vec<String>,
    deleted_subnet_groups: Vec<String>,
}

/// The rules that serve the calls moto lacks, sharing one state with the tests.
#[derive(Debug, Clone, Default)]
struct MockedCalls(Arc<Mutex<MockedState>>);

impl MockedCalls {
    fn state(&self) -> std::sync::MutexGuard<'_, MockedState> {
        self.0.lock().expect("mocked state lock")
    }

    /// Builds the interceptor: the rules below, and moto for every call they do not match.
    fn interceptor(&self, calls: &CallLog) -> MockResponseInterceptor {
        let rules = [
            self.create_user_group(),
            self.describe_user_groups(calls),
            self.delete_user_group(),
            self.delete_subnet_group(),
            self.describe_deleted_subnet_group(),
            describe_deleted_replication_group(calls),
        ];
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).allow_passthrough();
        for rule in &rules {
            interceptor = interceptor.with_rule(rule);
        }
        interceptor
    }

    fn create_user_group(&self) -> Rule {
        let mocked = self.clone();
        mock!(aws_sdk_elasticache::Client::create_user_group).then_compute_response(move |request| {
            let mut state = mocked.state();
            state.user_group_requests.push(request.clone());
            let id = request.user_group_id().unwrap_or_default().to_owned();
            if state.user_groups.contains_key(&id) {
                let fault = UserGroupAlreadyExistsFault::builder().message(format!("User group {id} already exists")).build();
                return MockResponse::Error(CreateUserGroupError::UserGroupAlreadyExistsFault(fault));
            }
            let mut user_ids = request.user_ids().to_vec();
            user_ids.sort();
            state.user_groups.insert(id.clone(), user_ids.clone());
            let output = CreateUserGroupOutput::builder()
                .user_group_id(id)
                .status("creating")
                .set_engine(request.engine().map(str::to_owned))
                .set_user_ids(Some(user_ids))
                .build();
            MockResponse::Output(output)
        })
    }

    /// Returns the group as `active`, as ElastiCache reports it once created. Its replication
    /// groups are those requested with it and not deleted, as the call log shows them, and those
    /// a test attached.
    fn describe_user_groups(&self, calls: &CallLog) -> Rule {
        let mocked = self.clone();
        let calls = calls.clone();
        mock!(aws_sdk_elasticache::Client::describe_user_groups).then_compute_response(move |request| {
            let state = mocked.state();
            let groups: Vec<UserGroup> = state
                .user_groups
                .iter()
                .filter(|(id, _)| request.user_group_id().is_none_or(|wanted| wanted == id.as_str()))
                .map(|(id, user_ids)| {
                    let mut replication_groups = calls.replication_groups_using(id);
                    replication_groups.extend(state.other_replication_groups.get(id).into_iter().flatten().cloned());
                    UserGroup::builder()
                        .user_group_id(id)
                        .status("active")
                        .engine("valkey")
                        .set_user_ids(Some(user_ids.clone()))
                        .set_replication_groups(Some(replication_groups))
                        .build()
                })
                .collect();
            if let (Some(id), true) = (request.user_group_id(), groups.is_empty()) {
                let fault = UserGroupNotFoundFault::builder().message(format!("User group {id} not found")).build();
                return MockResponse::Error(DescribeUserGroupsError::UserGroupNotFoundFault(fault));
            }
            MockResponse::Output(DescribeUserGroupsOutput::builder().set_user_groups(Some(groups)).build())
        })
    }

    fn delete_user_group(&self) -> Rule {
        let mocked = self.clone();
        mock!(aws_sdk_elasticache::Client::delete_user_group).then_compute_response(move |request| {
            let mut state = mocked.state();
            let id = request.user_group_id().unwrap_or_default().to_owned();
            let Some(user_ids) = state.user_groups.remove(&id) else {
                let fault = UserGroupNotFoundFault::builder().message(format!("User group {id} not found")).build();
                return MockResponse::Error(DeleteUserGroupError::UserGroupNotFoundFault(fault));
            };
            state.deleted_user_groups.push(id.clone());
            let output = DeleteUserGroupOutput::builder().user_group_id(id).status("deleting").set_user_ids(Some(user_ids)).build();
            MockResponse::Output(output)
        })
    }

    /// Succeeds once per name: the subnet group itself stays in moto, which cannot delete it.
    fn delete_subnet_group(&self) -> Rule {
        let mocked = self.clone();
        mock!(aws_sdk_elasticache::Client::delete_cache_subnet_group).then_compute_response(move |request| {
            let mut state = mocked.state();
            let name = request.cache_subnet_group_name().unwrap_or_default().to_owned();
            if state.deleted_subnet_groups.contains(&name) {
                let fault = CacheSubnetGroupNotFoundFault::builder().message(format!("Cache subnet group {name} not found")).build();
                return MockResponse::Error(DeleteCacheSubnetGroupError::CacheSubnetGroupNotFoundFault(fault));
            }
            state.deleted_subnet_groups.push(name);
            MockResponse::Output(DeleteCacheSubnetGroupOutput::builder().build())
        })
    }

    fn describe_deleted_subnet_group(&self) -> Rule {
        let mocked = self.clone();
        mock!(aws_sdk_elasticache::Client::describe_cache_subnet_groups)
            .match_requests(move |request| {
                request.cache_subnet_group_name().is_some_and(|name| mocked.state().deleted_subnet_groups.iter().any(|deleted| deleted == name))
            })
            .then_error(|| {
                let fault = CacheSubnetGroupNotFoundFault::builder().message("Cache subnet group not found").build();
                DescribeCacheSubnetGroupsError::CacheSubnetGroupNotFoundFault(fault)
            })
    }
}

/// Ends the deletion that moto leaves in `deleting`.
fn describe_deleted_replication_group(calls: &CallLog) -> Rule {
    let calls = calls.clone();
    mock!(aws_sdk_elasticache::Client::describe_replication_groups)
        .match_requests(move |request| request.replication_group_id().is_some_and(|id| calls.deleted_replication_group(id)))
        .then_error(|| {
            let fault = ReplicationGroupNotFoundFault::builder().message("Replication group not found").build();
            DescribeReplicationGroupsError::ReplicationGroupNotFoundFault(fault)
        })
}

// ---------------------------------------------------------------------------------------------
// Clients and the harness

/// Starts the configuration of an SDK client for moto with the region, fake static credentials
/// and the loopback endpoint set here, so no call can reach AWS.
macro_rules! moto_config {
    ($sdk:ident, $endpoint:expr) => {
        $sdk::Config::builder()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new(REGION))
            .endpoint_url($endpoint)
            .credentials_provider($sdk::config::Credentials::new("testing", "testing", None, None, "moto-test"))
    };
}

/// Builds the clients the product uses: every call logged, and the ElastiCache calls that moto
/// lacks mocked.
fn product_clients(endpoint: &str, calls: &CallLog, mocked: &MockedCalls) -> Clients {
    let ec2 = moto_config!(aws_sdk_ec2, endpoint).interceptor(calls.clone()).build();
    let ssm = moto_config!(aws_sdk_ssm, endpoint).interceptor(calls.clone()).build();
    let elasticache = moto_config!(aws_sdk_elasticache, endpoint)
        .retry_config(RetryConfig::disabled())
        .interceptor(calls.clone())
        .interceptor(MotoReplicaCount)
        .interceptor(mocked.interceptor(calls))
        .build();
    Clients {
        ec2: aws_sdk_ec2::Client::from_conf(ec2),
        ssm: aws_sdk_ssm::Client::from_conf(ssm),
        elasticache: aws_sdk_elasticache::Client::from_conf(elasticache),
    }
}

/// A seeded moto, the product's clients, plain clients for the assertions, and the project whose
/// outputs go to the emulator's temporary directory.
struct Harness {
    emulator: Emulator,
    project: Project,
    prepared: Prepared,
    clients: Clients,
    calls: CallLog,
    mocked: MockedCalls,
    /// Clients for the assertions, which reach moto without the log or the mocks.
    moto_elasticache: aws_sdk_elasticache::Client,
    moto_ssm: aws_sdk_ssm::Client,
}

impl Harness {
    async fn start(settings_text: &str) -> Harness {
        let emulator = Emulator::start_with_settings(settings_text).await;
        let project = Project::from_manifest_dir().with_output_root(emulator.output_dir.clone());
        let prepared = Prepared::load(&project, &emulator.settings_path).expect("test settings load");
        let calls = CallLog::default();
        let mocked = MockedCalls::default();
        let clients = product_clients(emulator.endpoint(), &calls, &mocked);
        let moto_elasticache = aws_sdk_elasticache::Client::from_conf(moto_config!(aws_sdk_elasticache, emulator.endpoint()).build());
        let moto_ssm = aws_sdk_ssm::Client::from_conf(moto_config!(aws_sdk_ssm, emulator.endpoint()).build());
        Harness { emulator, project, prepared, clients, calls, mocked, moto_elasticache, moto_ssm }
    }

    /// Starts moto and deploys once, which must succeed.
    async fn deployed(settings_text: &str) -> (Harness, ElastiCacheRecord) {
        let harness = Harness::start(settings_text).await;
        let record = harness.deploy().await.expect("the first deploy succeeds").expect("a deploy returns its record");
        (harness, record)
    }

    /// Replaces the settings file and loads it again.
    fn change_settings(&mut self, settings_text: &str) {
        self.emulator.write_settings(settings_text);
        self.prepared = Prepared::load(&self.project, &self.emulator.settings_path).expect("changed settings load");
    }

    async fn deploy(&self) -> anyhow::Result<Option<ElastiCacheRecord>> {
        self.deploy_with(&deploy_flags()).await
    }

    async fn deploy_with(&self, flags: &DeployRedis) -> anyhow::Result<Option<ElastiCacheRecord>> {
        let deploy = deploy_elasticache::deploy(&self.clients, REGION, &self.project, &self.prepared, flags);
        within_limit("deploy", deploy).await
    }

    async fn destroy(&self) -> anyhow::Result<()> {
        within_limit("destroy", destroy_elasticache::destroy(&self.clients, &self.project, &self.prepared)).await
    }

    async fn status(&self, record: &ElastiCacheRecord) -> Report {
        within_limit("status", compare(&self.clients, &self.prepared, record)).await.expect("the comparison runs")
    }

    fn saved_record(&self) -> Option<ElastiCacheRecord> {
        ElastiCacheRecord::load(&self.project.elasticache_record()).expect("the record parses")
    }

    async fn replication_groups(&self) -> Vec<ReplicationGroup> {
        let output = self.moto_elasticache.describe_replication_groups().send().await.expect("DescribeReplicationGroups on moto");
        output.replication_groups().to_vec()
    }

    async fn subnet_groups(&self) -> Vec<CacheSubnetGroup> {
        let output = self.moto_elasticache.describe_cache_subnet_groups().send().await.expect("DescribeCacheSubnetGroups on moto");
        output.cache_subnet_groups().to_vec()
    }

    /// Returns every user moto has, sorted by id; moto starts with one, `default`.
    async fn users(&self) -> Vec<User> {
        let output = self.moto_elasticache.describe_users().send().await.expect("DescribeUsers on moto");
        let mut users = output.users().to_vec();
        users.sort_by(|left, right| left.user_id().cmp(&right.user_id()));
        users
    }

    /// Returns the status of user `id`, or `None` when moto no longer has it.
    async fn user_status(&self, id: &str) -> Option<String> {
        match self.moto_elasticache.describe_users().user_id(id).send().await {
            Ok(output) => output.users().first().and_then(|user| user.status()).map(str::to_owned),
            Err(error) if error.as_service_error().is_some_and(|error| error.is_user_not_found_fault()) => None,
            Err(error) => panic!("DescribeUsers {id} on moto: {error:?}"),
        }
    }

    /// Returns the security groups named `name` in the seeded VPC.
    async fn security_groups(&self, name: &str) -> Vec<Ec2SecurityGroup> {
        let output = self
            .emulator
            .client
            .describe_security_groups()
            .filters(filter("group-name", name))
            .filters(filter("vpc-id", &self.emulator.network.vpc_id))
            .send()
            .await
            .expect("DescribeSecurityGroups on moto");
        output.security_groups().to_vec()
    }

    /// Returns the password parameter's ARN and the SHA-256 of its value, checking its type.
    async fn password_parameter(&self) -> Option<(String, String)> {
        let result = self.moto_ssm.get_parameter().name(PARAMETER_NAME).with_decryption(true).send().await;
        let output = match result {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|error| error.is_parameter_not_found()) => return None,
            Err(error) => panic!("GetParameter on moto: {error:?}"),
        };
        let parameter = output.parameter().expect("GetParameter returns the parameter");
        assert_eq!(parameter.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString), "the password is a SecureString");
        let value = parameter.value().expect("the parameter has a value");
        Some((parameter.arn().expect("the parameter has an ARN").to_owned(), codegen::sha256_hex(value.as_bytes())))
    }

    fn subnet_id(&self, name: &str) -> String {
        let subnets = &self.emulator.network.subnet_ids;
        let (_, id) = subnets.iter().find(|(subnet, _)| subnet == name).unwrap_or_else(|| panic!("no seeded subnet {name}"));
        id.clone()
    }

    fn options(&self) -> serde_yaml::Value {
        serde_yaml::from_str(&self.emulator.read_output(OPTIONS_FILE)).expect("the options file is YAML")
    }

    fn redis_ip(&self) -> String {
        let options = self.options();
        let redis_ip = &options["option_settings"]["aws:elasticbeanstalk:application:environment"]["REDIS_IP"];
        redis_ip.as_str().unwrap_or_else(|| panic!("no REDIS_IP in the options file: {options:?}")).to_owned()
    }
}

fn primary_endpoint_address(group: &ReplicationGroup) -> &str {
    let node_group = group.node_groups().first().expect("moto describes one node group");
    node_group.primary_endpoint().and_then(|endpoint| endpoint.address()).expect("the node group has a primary endpoint")
}

fn tag_value<'a>(tags: &'a [aws_sdk_elasticache::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|tag| tag.key() == Some(key)).and_then(|tag| tag.value())
}

fn drifted_checks(report: &Report) -> Vec<&'static str> {
    report.checks.iter().filter(|check| !check.in_sync).map(|check| check.name).collect()
}

fn check_detail<'a>(report: &'a Report, name: &str) -> &'a str {
    let check = report.checks.iter().find(|check| check.name == name);
    &check.unwrap_or_else(|| panic!("no {name} check: {report:#?}")).detail
}

// ---------------------------------------------------------------------------------------------
// Deploy

#[tokio::test]
async fn deploy_creates_configured_replication_group() {
    let (harness, record) = Harness::deployed(&custom_settings()).await;

    let groups = harness.replication_groups().await;
    assert_eq!(groups.len(), 1, "one replication group: {groups:#?}");
    let group = &groups[0];
    assert_eq!(group.replication_group_id(), Some(CUSTOM_NAME));
    assert_eq!(group.status(), Some("available"));
    assert_eq!(group.engine(), Some("valkey"));
    assert_eq!(group.cache_node_type(), Some("cache.t4g.small"));
    assert_eq!(group.member_clusters().len(), 3, "a primary and 2 replicas: {:?}", group.member_clusters());
    assert_eq!(group.automatic_failover(), Some(&AutomaticFailoverStatus::Enabled));
    assert_eq!(group.multi_az(), Some(&MultiAzStatus::Enabled));
    assert_eq!(group.transit_encryption_enabled(), Some(true));
    assert_eq!(group.at_rest_encryption_enabled(), Some(true));
    assert_eq!(group.user_group_ids(), [CUSTOM_NAME]);
    let primary_endpoint = group.node_groups().first().and_then(|node_group| node_group.primary_endpoint());
    assert_eq!(primary_endpoint.and_then(|endpoint| endpoint.port()), Some(6379));

    // DescribeReplicationGroups does not return these, so the request itself is checked.
    let requests = harness.calls.replication_group_requests();
    assert_eq!(requests.len(), 1, "one CreateReplicationGroup: {requests:#?}");
    let request = &requests[0];
    assert_eq!(request.engine_version(), Some("7.2"));
    assert_eq!(request.num_cache_clusters(), Some(3));
    assert_eq!(request.cache_subnet_group_name(), Some(CUSTOM_NAME));
    assert_eq!(request.security_group_ids(), [record.security_group_id.as_str()]);
    assert_eq!(tag_value(request.tags(), MANAGED_BY_KEY), Some(MANAGED_BY_VALUE));
}

#[tokio::test]
async fn deploy_creates_network_users_and_password() {
    let (harness, record) = Harness::deployed(&custom_settings()).await;

    let subnet_groups = harness.subnet_groups().await;
    assert_eq!(subnet_groups.len(), 1, "one cache subnet group: {subnet_groups:#?}");
    assert_eq!(subnet_groups[0].cache_subnet_group_name(), Some(CUSTOM_NAME));
    assert_eq!(subnet_groups[0].vpc_id(), Some(harness.emulator.network.vpc_id.as_str()));
    let mut subnet_ids: Vec<&str> = subnet_groups[0].subnets().iter().filter_map(|subnet| subnet.subnet_identifier()).collect();
    subnet_ids.sort();
    let mut expected_subnets = [harness.subnet_id("Private"), harness.subnet_id("Other Private")];
    expected_subnets.sort();
    assert_eq!(subnet_ids, expected_subnets, "the subnets Private and Other Private");

    let security_groups = harness.security_groups(CUSTOM_NAME).await;
    assert_eq!(security_groups.len(), 1, "one security group named {CUSTOM_NAME}: {security_groups:#?}");
    assert_eq!(security_groups[0].group_id(), Some(record.security_group_id.as_str()));
    let ingress = security_groups[0].ip_permissions();
    assert_eq!(ingress.len(), 1, "one ingress rule: {ingress:#?}");
    assert_eq!(ingress[0].ip_protocol(), Some("tcp"));
    assert_eq!((ingress[0].from_port(), ingress[0].to_port()), (Some(6379), Some(6379)));
    let sources: Vec<&str> = ingress[0].user_id_group_pairs().iter().filter_map(|pair| pair.group_id()).collect();
    assert_eq!(sources, [harness.emulator.network.app_group_id.as_str()], "only the app group may connect");
    assert!(ingress[0].ip_ranges().is_empty(), "no CIDR source: {:?}", ingress[0].ip_ranges());

    let users = harness.users().await;
    let user_ids: Vec<&str> = users.iter().filter_map(|user| user.user_id()).collect();
    assert_eq!(user_ids, ["default", "sessions-test-app", "sessions-test-default"], "moto's own `default` and the two created");
    let app_user = &users[1];
    assert_eq!(app_user.user_name(), Some("openemr"));
    assert_eq!(app_user.engine(), Some("valkey"));
    assert_eq!(app_user.access_string(), Some(app_user_access().as_str()));
    assert_eq!(app_user.status(), Some("active"));
    let app_authentication = app_user.authentication().expect("the app user has authentication");
    assert_eq!(app_authentication.r#type(), Some(&AuthenticationType::Password));
    assert_eq!(app_authentication.password_count(), Some(1));
    let default_user = &users[2];
    assert_eq!(default_user.user_name(), Some("default"));
    assert_eq!(default_user.access_string(), Some(DEFAULT_USER_ACCESS));
    assert_eq!(default_user.authentication().and_then(|authentication| authentication.r#type()), Some(&AuthenticationType::NoPassword));

    let user_group_requests = harness.mocked.state().user_group_requests.clone();
    assert_eq!(user_group_requests.len(), 1, "one CreateUserGroup: {user_group_requests:#?}");
    let request = &user_group_requests[0];
    assert_eq!(request.user_group_id(), Some(CUSTOM_NAME));
    assert_eq!(request.engine(), Some("valkey"));
    let mut members = request.user_ids().to_vec();
    members.sort();
    assert_eq!(members, ["sessions-test-app", "sessions-test-default"]);
    assert_eq!(tag_value(request.tags(), "Name"), Some(CUSTOM_NAME));

    let (arn, sha256) = harness.password_parameter().await.expect("the deploy created the password parameter");
    assert_eq!(arn, record.redis_password_parameter_arn);
    assert_eq!(sha256, record.redis_password_sha256, "the record has the hash of the password in SSM");
}

#[tokio::test]
async fn deploy_writes_record_and_options() {
    let (harness, record) = Harness::deployed(&custom_settings()).await;
    let groups = harness.replication_groups().await;
    let endpoint = primary_endpoint_address(&groups[0]);

    assert_eq!(harness.saved_record(), Some(record.clone()), "{RECORD_FILE} contains the returned record");
    assert_eq!(record.region, REGION);
    assert_eq!(record.vpc_id, harness.emulator.network.vpc_id);
    assert_eq!(record.subnet_group_name, CUSTOM_NAME);
    let mut expected_subnets = vec![harness.subnet_id("Private"), harness.subnet_id("Other Private")];
    expected_subnets.sort();
    assert_eq!(record.subnet_ids, expected_subnets);
    assert_eq!(record.replication_group_id, CUSTOM_NAME);
    assert_eq!(record.engine_version, "7.2");
    assert_eq!(record.node_type, "cache.t4g.small");
    assert_eq!(record.replicas, 2);
    assert_eq!(record.user_group_id, CUSTOM_NAME);
    assert_eq!(record.app_user_id, "sessions-test-app");
    assert_eq!(record.default_user_id, "sessions-test-default");
    assert_eq!(record.primary_endpoint, endpoint, "the primary endpoint moto reports");
    assert_eq!(record.port, 6379);

    assert_eq!(harness.redis_ip(), endpoint, "REDIS_IP is the primary endpoint's host name");
    let options = harness.options();
    let secrets = &options["option_settings"]["aws:elasticbeanstalk:application:environmentsecrets"];
    assert_eq!(secrets["REDIS_PASSWORD"].as_str(), Some(record.redis_password_parameter_arn.as_str()));
    let options_text = harness.emulator.read_output(OPTIONS_FILE);
    assert!(options_text.contains("# Backend: elasticache"), "the header names the backend:\n{options_text}");

    let hook = harness.emulator.read_output(HOOK_SCRIPT);
    assert!(!hook.contains(codegen::CA_FILE_NAME), "ElastiCache's certificate chains to a public CA:\n{hook}");
    let ca_file = harness.emulator.output_file(&format!("openemr/.ebextensions/{}", codegen::CA_FILE_NAME));
    assert!(!ca_file.exists(), "{ca_file} is not written");
}

#[tokio::test]
async fn second_deploy_creates_nothing() {
    let (harness, first_record) = Harness::deployed(&default_settings()).await;
    let files_before = snapshot(&harness.emulator.output_dir);
    let start = harness.calls.len();

    let second_record = harness.deploy().await.expect("the second deploy succeeds");

    let sent = harness.calls.operations_since(start);
    assert!(!sent.is_empty(), "the second deploy looked things up");
    assert_eq!(harness.calls.mutating_since(start), Vec::<String>::new(), "only lookups: {sent:#?}");
    assert_eq!(second_record, Some(first_record), "the same record");
    assert_eq!(snapshot(&harness.emulator.output_dir), files_before, "no file rewritten");
    assert_eq!(harness.replication_groups().await.len(), 1, "one replication group");
    assert_eq!(harness.subnet_groups().await.len(), 1, "one cache subnet group");
    assert_eq!(harness.users().await.len(), 3, "moto's `default` and the two created");
    assert_eq!(harness.mocked.state().user_groups.len(), 1, "one user group");
    // The user group lists the deploy's own replication group, which the second deploy must not
    // take for someone else's.
    let user_group = find_user_group(&harness.clients.elasticache, DEFAULT_NAME).await.expect("DescribeUserGroups");
    let user_group = user_group.expect("the user group exists");
    assert_eq!(user_group.replication_groups, [DEFAULT_NAME], "{user_group:?}");
}

#[tokio::test]
async fn dry_run_sends_and_writes_nothing() {
    let harness = Harness::start(&default_settings()).await;
    let files_before = snapshot(&harness.emulator.output_dir);

    let outcome = harness.deploy_with(&dry_run_flags()).await.expect("the dry run succeeds");

    assert_eq!(outcome, None, "a dry run returns no record");
    assert!(harness.calls.count("ElastiCache:DescribeReplicationGroups") > 0, "the dry run looked up the group");
    assert_eq!(harness.calls.mutating_since(0), Vec::<String>::new(), "only lookups: {:#?}", harness.calls.operations_since(0));
    assert_eq!(snapshot(&harness.emulator.output_dir), files_before, "no file written");
    assert!(harness.replication_groups().await.is_empty(), "no replication group");
    assert!(harness.subnet_groups().await.is_empty(), "no cache subnet group");
    assert_eq!(harness.users().await.len(), 1, "only moto's own `default` user");
    assert!(harness.mocked.state().user_groups.is_empty(), "no user group");
    assert!(harness.security_groups(DEFAULT_NAME).await.is_empty(), "no security group");
    assert_eq!(harness.password_parameter().await, None, "no password parameter");
}

// ---------------------------------------------------------------------------------------------
// Status

#[tokio::test]
async fn status_in_sync_after_deploy() {
    let (harness, record) = Harness::deployed(&default_settings()).await;

    let report = harness.status(&record).await;

    let names: Vec<&str> = report.checks.iter().map(|check| check.name).collect();
    assert_eq!(
        names,
        ["replication_group", "primary_endpoint", "configuration", "app_user", "default_user", "user_group", "security_group", "password"],
        "every check ran: {report:#?}"
    );
    assert_eq!(drifted_checks(&report), Vec::<&str>::new(), "{report:#?}");
    assert!(report.in_sync, "{report:#?}");
    assert_eq!(report.replication_group_id.as_deref(), Some(DEFAULT_NAME));
}

#[tokio::test]
async fn status_reports_deleted_app_user() {
    let (harness, record) = Harness::deployed(&default_settings()).await;
    harness.moto_elasticache.delete_user().user_id(&record.app_user_id).send().await.expect("DeleteUser on moto");

    let report = harness.status(&record).await;

    assert!(!report.in_sync, "{report:#?}");
    assert_eq!(drifted_checks(&report), ["app_user"], "only the app user drifted: {report:#?}");
    let check = report.checks.iter().find(|check| check.name == "app_user").expect("an app_user check");
    assert!(check.detail.contains(&record.app_user_id), "names the user: {}", check.detail);
}

#[tokio::test]
async fn status_reports_enabled_default_user() {
    let (harness, record) = Harness::deployed(&default_settings()).await;
    let id = record.default_user_id.as_str();
    // moto cannot modify a user, so the user is replaced by one that is on and needs no password.
    harness.moto_elasticache.delete_user().user_id(id).send().await.expect("DeleteUser on moto");
    // moto removes a deleted user at its next lookup, which frees the id.
    assert_eq!(harness.user_status(id).await.as_deref(), Some("deleting"), "user {id} after DeleteUser");
    let created = harness
        .moto_elasticache
        .create_user()
        .user_id(id)
        .user_name("default")
        .engine("valkey")
        .access_string("on ~* +@all")
        .no_password_required(true)
        .send()
        .await;
    created.expect("CreateUser on moto");

    let report = harness.status(&record).await;

    assert!(!report.in_sync, "{report:#?}");
    assert_eq!(drifted_checks(&report), ["default_user"], "only the default user drifted: {report:#?}");
    let detail = check_detail(&report, "default_user");
    assert!(detail.contains(&format!("user {id} (user name `default`) has access `on ~* +@all`")), "{detail}");
    assert!(detail.contains("authentication `no-password`"), "{detail}");
    assert!(detail.contains("`cargo xtask deploy-redis` switches it off"), "gives the fix: {detail}");
}

#[tokio::test]
async fn status_reports_changed_redis_user() {
    let (mut harness, record) = Harness::deployed(&default_settings()).await;
    harness.change_settings(&format!("{}redis_user: sessions\n", default_settings()));

    let report = harness.status(&record).await;

    assert!(!report.in_sync, "{report:#?}");
    assert_eq!(drifted_checks(&report), ["app_user"], "only the app user drifted: {report:#?}");
    let detail = check_detail(&report, "app_user");
    let expected = format!("user {} has user name `openemr`, but the settings (and so REDIS_USER) say `sessions`", record.app_user_id);
    assert!(detail.contains(&expected), "{detail}");
    assert!(detail.contains("set `redis_user` back"), "gives the fix: {detail}");
}

/// A renamed `elasticache.name` is reported once, as a rename, and the recorded group is still
/// compared under its own name.
#[tokio::test]
async fn status_reports_renamed_group() {
    let (mut harness, record) = Harness::deployed(&default_settings()).await;
    harness.change_settings(&format!("{}elasticache:\n  name: renamed-sessions\n", default_settings()));

    let report = harness.status(&record).await;

    assert!(!report.in_sync, "{report:#?}");
    assert_eq!(drifted_checks(&report), ["name"], "only the name drifted: {report:#?}");
    let detail = check_detail(&report, "name");
    assert!(detail.contains(&format!("the settings name `renamed-sessions`, the record {DEFAULT_NAME}")), "{detail}");
}

/// An app user that someone switched to no password lets anyone in as that user.
#[tokio::test]
async fn status_reports_app_user_without_password() {
    let (harness, record) = Harness::deployed(&default_settings()).await;
    let id = &record.app_user_id;
    harness.moto_elasticache.delete_user().user_id(id).send().await.expect("DeleteUser on moto");
    // moto drops a deleted user only at its next lookup.
    let _ = harness.user_status(id).await;
    harness
        .moto_elasticache
        .create_user()
        .user_id(id)
        .user_name("openemr")
        .engine("valkey")
        .access_string(xtask_aws::elasticache::users::app_user_access())
        .no_password_required(true)
        .send()
        .await
        .expect("CreateUser on moto");

    let report = harness.status(&record).await;

    assert_eq!(drifted_checks(&report), ["app_user"], "only the app user drifted: {report:#?}");
    let detail = check_detail(&report, "app_user");
    assert!(detail.contains("authentication `no-password`"), "{detail}");
}

// ---------------------------------------------------------------------------------------------
// Destroy

#[tokio::test]
async fn destroy_removes_created_resources() {
    let (harness, record) = Harness::deployed(&default_settings()).await;

    harness.destroy().await.expect("destroy succeeds");

    assert_eq!(harness.calls.count("ElastiCache:DeleteReplicationGroup"), 1);
    let groups = harness.replication_groups().await;
    assert_eq!(groups.len(), 1, "moto keeps the deleted group: {groups:#?}");
    assert_eq!(groups[0].status(), Some("deleting"), "moto shows the deletion");
    assert_eq!(harness.mocked.state().deleted_user_groups, [DEFAULT_NAME]);
    let user_groups = harness.mocked.state().user_groups.clone();
    assert!(user_groups.is_empty(), "no user group left: {user_groups:?}");
    assert_eq!(harness.mocked.state().deleted_subnet_groups, [DEFAULT_NAME]);
    for user_id in [&record.app_user_id, &record.default_user_id] {
        let status = harness.user_status(user_id).await;
        assert!(matches!(status.as_deref(), None | Some("deleting")), "user {user_id} is {status:?}");
    }
    assert!(harness.security_groups(DEFAULT_NAME).await.is_empty(), "security group {} deleted", record.security_group_id);
    assert_eq!(harness.saved_record(), None, "{RECORD_FILE} removed");
    assert_eq!(harness.redis_ip(), "", "REDIS_IP is empty again");

    // Without a record, a second destroy looks for leftovers by name, finds none and deletes nothing.
    let start = harness.calls.len();
    harness.destroy().await.expect("a second destroy succeeds");
    let operations = harness.calls.operations_since(start);
    let changes: Vec<&String> = operations.iter().filter(|operation| !operation.contains(":Describe")).collect();
    assert!(changes.is_empty(), "only lookups: {operations:?}");
    assert_eq!(harness.redis_ip(), "", "REDIS_IP stays empty");
}

#[tokio::test]
async fn destroy_again_with_record_finishes() {
    let (harness, _) = Harness::deployed(&default_settings()).await;
    let record_text = harness.emulator.read_output(RECORD_FILE);
    harness.destroy().await.expect("destroy succeeds");

    // As after a destroy that stopped before removing the record: every resource is gone.
    std::fs::write(harness.emulator.output_file(RECORD_FILE), &record_text).unwrap();
    harness.destroy().await.expect("destroying what is already gone succeeds");

    assert_eq!(harness.saved_record(), None, "{RECORD_FILE} removed");
    assert_eq!(harness.redis_ip(), "", "REDIS_IP is empty");
    assert_eq!(harness.calls.count("ElastiCache:DeleteUserGroup"), 2, "the second destroy tried again");
    assert_eq!(harness.calls.count("ElastiCache:DeleteCacheSubnetGroup"), 2, "the second destroy tried again");
    assert_eq!(harness.mocked.state().deleted_subnet_groups, [DEFAULT_NAME], "deleted once");
}

/// Another team's replication group, which tests attach to the deploy's user group.
const OTHER_REPLICATION_GROUP: &str = "billing-cache";

/// Removes the record, as after a deploy that failed before it wrote one.
fn remove_record(harness: &Harness) {
    let path = harness.emulator.output_file(RECORD_FILE);
    std::fs::remove_file(&path).unwrap_or_else(|error| panic!("removing {path}: {error}"));
}

#[tokio::test]
async fn destroy_without_record_finds_by_name() {
    let (harness, record) = Harness::deployed(&default_settings()).await;
    remove_record(&harness);
    let files_before = snapshot(&harness.emulator.output_dir);

    harness.destroy().await.expect("destroy succeeds");

    assert_eq!(harness.calls.count("ElastiCache:DeleteReplicationGroup"), 1);
    assert!(harness.calls.deleted_replication_group(DEFAULT_NAME), "DeleteReplicationGroup names {DEFAULT_NAME}");
    let groups = harness.replication_groups().await;
    assert_eq!(groups.len(), 1, "moto keeps the deleted group: {groups:#?}");
    assert_eq!(groups[0].status(), Some("deleting"), "moto shows the deletion");
    assert_eq!(harness.mocked.state().deleted_user_groups, [DEFAULT_NAME]);
    let user_groups = harness.mocked.state().user_groups.clone();
    assert!(user_groups.is_empty(), "no user group left: {user_groups:?}");
    for user_id in [&record.app_user_id, &record.default_user_id] {
        let status = harness.user_status(user_id).await;
        assert!(matches!(status.as_deref(), None | Some("deleting")), "user {user_id} is {status:?}");
    }
    assert_eq!(harness.mocked.state().deleted_subnet_groups, [DEFAULT_NAME]);
    assert!(harness.security_groups(DEFAULT_NAME).await.is_empty(), "security group {} deleted", record.security_group_id);
    // Without a record the destroy cannot tell whether the generated files point at this backend.
    assert_eq!(snapshot(&harness.emulator.output_dir), files_before, "no file written or removed");
}

#[tokio::test]
async fn destroy_without_record_spares_shared_group() {
    let (harness, record) = Harness::deployed(&default_settings()).await;
    remove_record(&harness);
    harness.mocked.state().other_replication_groups.insert(DEFAULT_NAME.to_owned(), vec![OTHER_REPLICATION_GROUP.to_owned()]);
    let files_before = snapshot(&harness.emulator.output_dir);
    let start = harness.calls.len();

    let error = harness.destroy().await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("user group {DEFAULT_NAME} serves {OTHER_REPLICATION_GROUP}")), "{message}");
    assert!(message.contains("nothing was deleted"), "{message}");
    let operations = harness.calls.operations_since(start);
    assert_eq!(harness.calls.mutating_since(start), Vec::<String>::new(), "only lookups: {operations:#?}");
    let groups = harness.replication_groups().await;
    assert_eq!(groups.len(), 1, "one replication group: {groups:#?}");
    assert_eq!(groups[0].status(), Some("available"), "the replication group is kept");
    assert!(harness.mocked.state().user_groups.contains_key(DEFAULT_NAME), "the user group is kept");
    for user_id in [&record.app_user_id, &record.default_user_id] {
        assert_eq!(harness.user_status(user_id).await.as_deref(), Some("active"), "user {user_id} is kept");
    }
    assert!(harness.mocked.state().deleted_subnet_groups.is_empty(), "the cache subnet group is kept");
    assert_eq!(harness.security_groups(DEFAULT_NAME).await.len(), 1, "the security group is kept");
    assert_eq!(snapshot(&harness.emulator.output_dir), files_before, "no file written or removed");
}

/// Creates a replication group with the settings' name directly in moto, as someone else would,
/// logging in through `user_group_ids`.
async fn create_foreign_group(harness: &Harness, user_group_ids: &[&str]) {
    let user_group_ids = user_group_ids.iter().map(|id| (*id).to_owned()).collect();
    harness
        .moto_elasticache
        .create_replication_group()
        .replication_group_id(DEFAULT_NAME)
        .replication_group_description("someone else's group")
        .engine("valkey")
        .cache_node_type("cache.t4g.micro")
        .set_user_group_ids(Some(user_group_ids))
        .send()
        .await
        .expect("CreateReplicationGroup on moto");
}

/// A replication group with the settings' name that logs in through another user group is not a
/// leftover of this tool, so a destroy without a record keeps it.
#[tokio::test]
async fn destroy_without_record_spares_foreign_group() {
    let harness = Harness::start(&default_settings()).await;
    create_foreign_group(&harness, &[OTHER_REPLICATION_GROUP]).await;

    let error = harness.destroy().await.unwrap_err();

    let message = format!("{error:#}");
    let expected = format!("replication group {DEFAULT_NAME} logs in through user groups [{OTHER_REPLICATION_GROUP}]");
    assert!(message.contains(&expected), "{message}");
    assert_eq!(harness.calls.mutating_since(0), Vec::<String>::new(), "only lookups");
    let groups = harness.replication_groups().await;
    assert_eq!(groups.len(), 1, "the group is kept: {groups:#?}");
}

/// A replication group without any user group is no group this tool made either.
#[tokio::test]
async fn destroy_without_record_spares_group_without_users() {
    let harness = Harness::start(&default_settings()).await;
    create_foreign_group(&harness, &[]).await;

    let error = harness.destroy().await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains(&format!("replication group {DEFAULT_NAME} logs in through user groups []")), "{message}");
    assert_eq!(harness.calls.mutating_since(0), Vec::<String>::new(), "only lookups");
}

/// A security group with the settings' name, and no ElastiCache resource beside it, is no trace of
/// this backend: another tool may own it.
#[tokio::test]
async fn destroy_without_record_ignores_lone_security_group() {
    let harness = Harness::start(&default_settings()).await;
    harness
        .emulator
        .client
        .create_security_group()
        .group_name(DEFAULT_NAME)
        .description("a group of the same name")
        .vpc_id(&harness.emulator.network.vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup on moto");

    harness.destroy().await.expect("destroying nothing succeeds");

    assert_eq!(harness.calls.mutating_since(0), Vec::<String>::new(), "only lookups");
    assert_eq!(harness.security_groups(DEFAULT_NAME).await.len(), 1, "the group is kept");
}

#[tokio::test]
async fn destroy_with_nothing_writes_nothing() {
    let harness = Harness::start(&default_settings()).await;
    let files_before = snapshot(&harness.emulator.output_dir);

    harness.destroy().await.expect("destroying nothing succeeds");

    let operations = harness.calls.operations_since(0);
    assert!(!operations.is_empty(), "the destroy looked for resources by name");
    assert_eq!(harness.calls.mutating_since(0), Vec::<String>::new(), "only lookups: {operations:#?}");
    assert_eq!(snapshot(&harness.emulator.output_dir), files_before, "no file written");
}

// ---------------------------------------------------------------------------------------------
// Switching from the instance backend

/// Deploys the instance backend with the emulator's settings, which must succeed.
async fn deploy_instance(harness: &Harness) -> DeploymentRecord {
    let clients = deploy_redis::Clients { ec2: harness.clients.ec2.clone(), ssm: harness.clients.ssm.clone() };
    let flags = deploy_flags();
    let deploy = deploy_redis::deploy(&clients, REGION, &harness.project, &harness.prepared, &flags);
    match within_limit("instance deploy", deploy).await.expect("the instance deploy succeeds") {
        Outcome::Ready(record) => *record,
        Outcome::Planned => panic!("a deploy without --dry-run returned a plan"),
    }
}

/// Returns the contents and modification time of `path`.
fn file_state(path: &camino::Utf8Path) -> (Vec<u8>, std::time::SystemTime) {
    let contents = std::fs::read(path).unwrap_or_else(|error| panic!("reading {path}: {error}"));
    let modified = std::fs::metadata(path).and_then(|metadata| metadata.modified()).expect("modification time");
    (contents, modified)
}

#[tokio::test]
async fn switch_from_instance_backend() {
    let mut harness = Harness::start(TEST_SETTINGS).await;
    let instance_record = deploy_instance(&harness).await;
    let instance_record_path = harness.project.deployment_record();
    let instance_record_before = file_state(&instance_record_path);
    assert_eq!(harness.redis_ip(), instance_record.private_ip, "REDIS_IP starts at the instance");

    harness.change_settings(&default_settings());
    let record = harness.deploy().await.expect("the ElastiCache deploy succeeds").expect("a record");

    assert_eq!(harness.redis_ip(), record.primary_endpoint, "REDIS_IP moved to the primary endpoint");
    assert_eq!(file_state(&instance_record_path), instance_record_before, "{instance_record_path} untouched");
    assert_eq!(harness.emulator.instance_state(&instance_record.instance_id).await, InstanceStateName::Running);
    assert_eq!(Some(&record.redis_password_parameter_arn), instance_record.redis_password_parameter_arn.as_ref(), "one parameter");
    assert_eq!(Some(&record.redis_password_sha256), instance_record.redis_password_sha256.as_ref(), "the same password");

    let destroyed = harness.emulator.run(&["destroy-redis", "--backend", "instance", "--disable-termination-protection"]);
    assert!(destroyed.status.success(), "{}", describe(&destroyed));

    assert_eq!(harness.emulator.instance_state(&instance_record.instance_id).await, InstanceStateName::Terminated);
    assert!(!instance_record_path.exists(), "{instance_record_path} removed");
    assert_eq!(harness.saved_record(), Some(record.clone()), "{RECORD_FILE} kept");
    assert_eq!(harness.redis_ip(), record.primary_endpoint, "REDIS_IP still points at ElastiCache");
}
