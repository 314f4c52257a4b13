//! The Markdown plan of `deploy-redis --dry-run --markdown`, compared with golden files. After an
//! intended change, run `UPDATE_GOLDEN=1 cargo test -p xtask-aws --test plan_summary`.

use aws_sdk_ec2::types::{InstanceStateName, IpPermission, IpRange};
use camino::Utf8PathBuf;
use xtask::generated::StaleFile;
use xtask::project::Project;
use xtask::settings::Backend;
use xtask_aws::deploy_redis::{Found, InstancePlan, Prepared};
use xtask_aws::ec2::image::Image;
use xtask_aws::ec2::instance::InstanceView;
use xtask_aws::ec2::network::{SecurityGroup, Subnet, Vpc};
use xtask_aws::ec2::security_group::{RedisGroup, redis_rule};
use xtask_aws::deploy_elasticache::NamedSubnet;
use xtask_aws::plan::{self, PlanReport};

fn golden_dir() -> Utf8PathBuf {
    Project::from_manifest_dir().root().join("tests/golden")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join("expected").join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}; create it with UPDATE_GOLDEN=1"));
    let diff = similar::TextDiff::from_lines(expected.as_str(), actual).unified_diff().header("golden", "rendered").to_string();
    assert!(expected == actual, "{name} differs from its golden copy; if intended, rerun with UPDATE_GOLDEN=1\n{diff}");
}

fn prepared() -> Prepared {
    Prepared::load(&Project::from_manifest_dir(), &golden_dir().join("deploy.yaml")).unwrap()
}

fn found(redis_group: Option<RedisGroup>, instance: Option<InstanceView>) -> Found {
    Found {
        vpc: Vpc { id: "vpc-0123456789abcdef0".into(), name: "emr-network".into() },
        subnet: Subnet { id: "subnet-0123456789abcdef0".into(), availability_zone: "eu-central-1a".into() },
        app_group: SecurityGroup { id: "sg-0123456789abcdef0".into(), name: "emr-app".into() },
        image: Image {
            id: "ami-0123456789abcdef0".into(),
            name: "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-20251105".into(),
            creation_date: "2025-11-05T09:30:00.000Z".into(),
            root_device_name: "/dev/sda1".into(),
        },
        redis_group,
        instance,
        password: None,
    }
}

fn running_instance() -> InstanceView {
    InstanceView {
        id: "i-0123456789abcdef0".into(),
        state: InstanceStateName::Running,
        private_ip: Some("10.20.1.37".into()),
        image_id: "ami-0123456789abcdef0".into(),
        instance_type: "t4g.small".into(),
        subnet_id: "subnet-0123456789abcdef0".into(),
        security_group_ids: vec!["sg-0fedcba9876543210".into()],
        state_reason: None,
    }
}

/// Builds a report with a fixed diff, so the golden files do not depend on the checkout.
fn report(found: &Found, instance_plan: &InstancePlan, diffs: Vec<StaleFile>) -> PlanReport {
    let prepared = prepared();
    let (rows, warnings) = plan::plan_rows(&prepared, found, instance_plan);
    PlanReport {
        region: "eu-central-1".into(),
        backend: Backend::Instance,
        rows,
        user_data: Some((prepared.user_data.contents.clone(), prepared.user_data_sha256.clone())),
        diffs,
        warnings,
    }
}

fn options_diff(old_ip: &str) -> StaleFile {
    StaleFile {
        path: "openemr/.ebextensions/00-options.config".into(),
        diff: format!(
            "--- a/openemr/.ebextensions/00-options.config\n+++ b/openemr/.ebextensions/00-options.config\n@@ -4,3 +4,3 @@\n     TIMEZONE: \"Europe/Berlin\"\n-    REDIS_IP: \"{old_ip}\"\n+    REDIS_IP: \"<assigned at launch>\"\n     FILE_SYSTEM_ID: \"fs-0123456789abcdef0\"\n"
        ),
    }
}

#[test]
fn plan_that_creates_everything() {
    let found = found(None, None);
    let markdown = plan::render_markdown(&report(&found, &InstancePlan::Launch, vec![options_diff("")]));
    check_golden("plan-create.md", &markdown);
}

#[test]
fn plan_that_reuses_everything() {
    let group = RedisGroup { id: "sg-0fedcba9876543210".into(), ingress: vec![redis_rule("sg-0123456789abcdef0")] };
    let found = found(Some(group), Some(running_instance()));
    let markdown = plan::render_markdown(&report(&found, &InstancePlan::Reuse(running_instance()), Vec::new()));
    check_golden("plan-reuse.md", &markdown);
}

#[test]
fn plan_with_drift() {
    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    let group = RedisGroup { id: "sg-0fedcba9876543210".into(), ingress: vec![redis_rule("sg-0123456789abcdef0"), ssh] };
    let found = found(Some(group), Some(running_instance()));
    let instance_plan = InstancePlan::NeedsReplace { existing: running_instance(), live_user_data_sha256: "f".repeat(64) };
    let markdown = plan::render_markdown(&report(&found, &instance_plan, vec![options_diff("10.20.1.37")]));

    assert!(markdown.contains("### Warnings"), "{markdown}");
    assert!(markdown.contains("unexpected rule: TCP 22 from 0.0.0.0/0"), "{markdown}");
    assert!(markdown.contains("--replace"), "{markdown}");
    check_golden("plan-drift.md", &markdown);
}

/// Returns what the ElastiCache deploy finds in an account where only the guide's network exists.
fn elasticache_found() -> xtask_aws::deploy_elasticache::Found {
    let subnet = |name: &str, id: &str, zone: &str| NamedSubnet {
        name: name.into(),
        subnet: Subnet { id: id.into(), availability_zone: zone.into() },
    };
    xtask_aws::deploy_elasticache::Found {
        vpc: Vpc { id: "vpc-0123456789abcdef0".into(), name: "emr-network".into() },
        subnets: vec![
            subnet("Private", "subnet-0123456789abcdef0", "eu-central-1a"),
            subnet("Other Private", "subnet-0123456789abcdef1", "eu-central-1b"),
        ],
        app_group: SecurityGroup { id: "sg-0123456789abcdef0".into(), name: "emr-app".into() },
        security_group: None,
        subnet_group: None,
        app_user: None,
        default_user: None,
        user_group: None,
        replication_group: None,
        password: None,
        recorded_password_sha256: None,
    }
}

#[test]
fn elasticache_plan_creates_everything() {
    let mut prepared = prepared();
    prepared.settings.backend = Backend::Elasticache;
    let found = elasticache_found();
    let report = PlanReport {
        region: "eu-central-1".into(),
        backend: Backend::Elasticache,
        rows: xtask_aws::deploy_elasticache::plan_rows(&prepared, &found),
        user_data: None,
        diffs: Vec::new(),
        warnings: Vec::new(),
    };
    let markdown = plan::render_markdown(&report);

    assert!(markdown.starts_with("## Redis deploy plan, ElastiCache backend (eu-central-1)\n"), "{markdown}");
    assert!(!markdown.contains("User data"), "ElastiCache has no user data: {markdown}");
    check_golden("plan-elasticache-create.md", &markdown);
}
