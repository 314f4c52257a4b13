use camino::Utf8Path;

use super::*;

const MINIMAL: &str = "app_security_group: openemr-app\ntimezone: America/New_York\nfile_system_id: fs-0123abcd\n";

fn parse(text: &str) -> anyhow::Result<Settings> {
    Settings::parse(Utf8Path::new("deploy.yaml"), text)
}

fn parse_error(text: &str) -> String {
    format!("{:#}", parse(text).unwrap_err())
}

#[test]
fn minimal_settings_take_defaults() {
    let settings = parse(MINIMAL).unwrap();

    assert_eq!(settings.region, None);
    assert_eq!(settings.vpc_name.as_str(), "openemr-vpc");
    assert_eq!(settings.subnet_name.as_str(), "Private");
    assert_eq!(settings.instance_name.as_str(), "openemr-redis");
    assert_eq!(settings.instance_type.as_str(), "t3.micro");
    assert_eq!(settings.root_volume_gib.get(), 8);
    assert_eq!(settings.ubuntu_release, UbuntuRelease::Noble);
    assert_eq!(settings.key_pair, None);
    assert_eq!(settings.readiness, Readiness::RedisPing);
    assert_eq!(settings.app_security_group, SecurityGroupRef::Name(TagValue("openemr-app".into())));
}

#[test]
fn checked_in_settings_parse() {
    let path = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.yaml");
    Settings::load(&path).unwrap();
}

#[test]
fn security_group_id_is_recognised() {
    let settings = parse(&MINIMAL.replace("openemr-app", "sg-0123456789abcdef0")).unwrap();
    assert_eq!(settings.app_security_group, SecurityGroupRef::Id("sg-0123456789abcdef0".into()));
}

#[test]
fn unknown_key_names_key_and_line() {
    let message = parse_error(&format!("{MINIMAL}instance_typo: t3.micro\n"));
    assert!(message.starts_with("deploy.yaml:4:"), "{message}");
    assert!(message.contains("unknown field `instance_typo`"), "{message}");
    assert!(message.contains("expected one of"), "{message}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let message = parse_error(&format!("{MINIMAL}root_volume_gib: eight\n"));
    assert!(message.starts_with("deploy.yaml:4:"), "{message}");
    assert!(message.contains("root_volume_gib"), "{message}");
}

#[test]
fn timezone_no_is_an_invalid_zone() {
    let message = parse_error(&MINIMAL.replace("America/New_York", "no"));
    assert!(message.starts_with("deploy.yaml:2:"), "{message}");
    assert!(message.contains("invalid time zone `no`"), "{message}");
}

#[test]
fn timezone_with_space_is_rejected() {
    let message = parse_error(&MINIMAL.replace("America/New_York", "America/New York"));
    assert!(message.contains("invalid time zone `America/New York`"), "{message}");
    assert!(message.contains("America/New_York"), "{message}");
}

#[test]
fn timezone_in_wrong_case_names_canonical_spelling() {
    let message = parse_error(&MINIMAL.replace("America/New_York", "america/new_york"));
    assert!(message.contains("spelled `America/New_York`"), "{message}");
}

#[test]
fn file_system_id_is_validated() {
    for bad in ["fs-123", "fs-0123ABCD", "efs-0123abcd", "fs-0123abcd0"] {
        let message = parse_error(&MINIMAL.replace("fs-0123abcd", bad));
        assert!(message.starts_with("deploy.yaml:3:"), "{bad}: {message}");
        assert!(message.contains(&format!("invalid EFS file system id `{bad}`")), "{message}");
    }
    parse(&MINIMAL.replace("fs-0123abcd", "fs-0123456789abcdef0")).unwrap();
}

#[test]
fn unquoted_release_is_read_as_text() {
    let settings = parse(&format!("{MINIMAL}ubuntu_release: 22.04\n")).unwrap();
    assert_eq!(settings.ubuntu_release, UbuntuRelease::Jammy);
}

#[test]
fn unsupported_release_lists_supported_ones() {
    let message = parse_error(&format!("{MINIMAL}ubuntu_release: \"23.10\"\n"));
    assert!(message.contains("unsupported Ubuntu release `23.10`"), "{message}");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let message = parse_error("app_security_group: [unclosed\n");
    assert!(message.starts_with("deploy.yaml:"), "{message}");
    let location: Vec<&str> = message.splitn(4, ':').collect();
    assert!(location[1].parse::<u32>().is_ok(), "line: {message}");
    assert!(location[2].parse::<u32>().is_ok(), "column: {message}");
}

#[test]
fn empty_file_names_required_keys() {
    for text in ["", "# only a comment\n"] {
        let message = parse_error(text);
        assert!(message.contains("settings file is empty"), "{message}");
        assert!(message.contains("app_security_group"), "{message}");
    }
}

#[test]
fn missing_file_names_path_and_flag() {
    let message = format!("{:#}", Settings::load(Utf8Path::new("/nonexistent/deploy.yaml")).unwrap_err());
    assert!(message.contains("/nonexistent/deploy.yaml"), "{message}");
    assert!(message.contains("--settings"), "{message}");
}

#[test]
fn missing_required_key_is_named() {
    let message = parse_error("app_security_group: openemr-app\ntimezone: UTC\n");
    assert!(message.contains("missing field `file_system_id`"), "{message}");
}

#[test]
fn invalid_values_are_rejected() {
    let cases = [
        ("region: useast1\n", "invalid AWS region `useast1`"),
        ("instance_type: T3-MICRO\n", "invalid instance type `T3-MICRO`"),
        ("root_volume_gib: 4\n", "invalid root volume size 4 GiB"),
        ("vpc_name: \"\"\n", "empty name"),
        ("redis_maxmemory_mib: 10\n", "at least 64 MiB"),
        ("readiness: soon\n", "unknown variant `soon`"),
    ];
    for (line, expected) in cases {
        let message = parse_error(&format!("{MINIMAL}{line}"));
        assert!(message.contains(expected), "{line:?}: {message}");
        assert!(message.starts_with("deploy.yaml:4:"), "{line:?}: {message}");
    }
}

#[test]
fn maxmemory_is_half_of_instance_memory() {
    let settings = parse(&format!("{MINIMAL}instance_type: t3.small\n")).unwrap();
    assert_eq!(settings.redis_maxmemory_mib().unwrap(), 1024);
}

#[test]
fn maxmemory_of_unknown_type_asks_for_override() {
    let settings = parse(&format!("{MINIMAL}instance_type: m7i.large\n")).unwrap();
    let message = settings.redis_maxmemory_mib().unwrap_err().to_string();
    assert!(message.contains("redis_maxmemory_mib"), "{message}");

    let settings = parse(&format!("{MINIMAL}instance_type: m7i.large\nredis_maxmemory_mib: 4096\n")).unwrap();
    assert_eq!(settings.redis_maxmemory_mib().unwrap(), 4096);
}

#[test]
fn graviton_types_are_arm64() {
    let settings = parse(&format!("{MINIMAL}instance_type: t4g.small\n")).unwrap();
    assert_eq!(settings.architecture(), "arm64");
    assert_eq!(parse(MINIMAL).unwrap().architecture(), "x86_64");
}

#[test]
fn image_pattern_matches_canonical_names() {
    assert_eq!(
        UbuntuRelease::Noble.image_name_pattern("x86_64"),
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
    );
    assert_eq!(
        UbuntuRelease::Jammy.image_name_pattern("arm64"),
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*"
    );
}

#[test]
fn redis_user_and_parameter_take_defaults() {
    let settings = parse("app_security_group: app\ntimezone: UTC\nfile_system_id: fs-0123abcd\n").unwrap();
    assert_eq!(settings.redis_user.as_str(), "openemr");
    assert_eq!(settings.redis_password_parameter.as_str(), "/openemr/redis/password");
}

#[test]
fn redis_user_default_is_rejected() {
    let message = parse_error("app_security_group: app\ntimezone: UTC\nfile_system_id: fs-0123abcd\nredis_user: default\n");
    assert!(message.contains("redis_user: Redis user `default` is disabled"), "{message}");
}

#[test]
fn redis_user_with_space_is_rejected() {
    let message = parse_error("app_security_group: app\ntimezone: UTC\nfile_system_id: fs-0123abcd\nredis_user: open emr\n");
    assert!(message.contains("invalid Redis user `open emr`"), "{message}");
}

#[test]
fn parameter_name_is_validated() {
    for (name, expected) in [
        ("openemr/redis", "invalid SSM parameter name `openemr/redis`"),
        ("/openemr//redis", "invalid SSM parameter name `/openemr//redis`"),
        ("/openemr/redis pw", "invalid SSM parameter name `/openemr/redis pw`"),
        ("/aws/redis", "SSM reserves names that start with `aws` or `ssm`"),
    ] {
        let text = format!("app_security_group: app\ntimezone: UTC\nfile_system_id: fs-0123abcd\nredis_password_parameter: {name:?}\n");
        let message = parse_error(&text);
        assert!(message.contains(expected), "{name}: {message}");
    }
}

#[test]
fn plain_null_bool_and_number_are_not_names() {
    let cases = [
        ("vpc_name: ~\n", "empty value"),
        ("vpc_name: null\n", "empty value"),
        ("subnet_name: true\n", "`true` is a YAML boolean"),
        ("instance_name: 12345\n", "`12345` is a YAML number"),
    ];
    for (line, expected) in cases {
        let message = parse_error(&format!("{MINIMAL}{line}"));
        assert!(message.contains(expected), "{line:?}: {message}");
        assert!(message.starts_with("deploy.yaml:4:"), "{line:?}: {message}");
    }
}

#[test]
fn quoted_null_is_a_name() {
    let settings = parse(&format!("{MINIMAL}vpc_name: \"null\"\n")).unwrap();
    assert_eq!(settings.vpc_name.as_str(), "null");
}

#[test]
fn instance_name_follows_group_name_rules() {
    for (name, expected) in [("sg-redis", "start with `sg-`"), ("redis\u{e9}", "is not allowed"), ("a|b", "is not allowed")] {
        let message = parse_error(&format!("{MINIMAL}instance_name: \"{name}\"\n"));
        assert!(message.contains(expected), "{name}: {message}");
    }
    parse(&format!("{MINIMAL}instance_name: \"Redis (sessions) #1\"\n")).unwrap();
}

#[test]
fn a1_types_are_arm64() {
    let settings = parse(&format!("{MINIMAL}instance_type: a1.large\nredis_maxmemory_mib: 2048\n")).unwrap();
    assert_eq!(settings.architecture(), "arm64");
}

#[test]
fn maxmemory_has_an_upper_bound() {
    let message = parse_error(&format!("{MINIMAL}redis_maxmemory_mib: 999999999\n"));
    assert!(message.contains("more than any EC2 instance type has"), "{message}");
}

#[test]
fn backend_and_elasticache_take_defaults() {
    let settings = parse(MINIMAL).unwrap();

    assert_eq!(settings.backend, Backend::Instance);
    assert_eq!(settings.elasticache.name.as_str(), "openemr-sessions");
    assert_eq!(settings.elasticache.engine_version.as_str(), "8.0");
    assert_eq!(settings.elasticache.node_type.as_str(), "cache.t4g.micro");
    assert_eq!(settings.elasticache.replicas.get(), 1);
    let subnets: Vec<&str> = settings.elasticache.subnet_names.as_slice().iter().map(TagValue::as_str).collect();
    assert_eq!(subnets, ["Private", "Other Private"]);
    assert_eq!(settings.elasticache.app_user_id(), "openemr-sessions-app");
    assert_eq!(settings.elasticache.default_user_id(), "openemr-sessions-default");
}

#[test]
fn elasticache_section_is_read() {
    let text = format!(
        "{MINIMAL}backend: elasticache\nelasticache:\n  name: sessions\n  engine_version: \"7.2\"\n  \
         node_type: cache.m7g.large\n  replicas: 2\n  subnet_names: [A, B, C]\n"
    );
    let settings = parse(&text).unwrap();

    assert_eq!(settings.backend, Backend::Elasticache);
    assert_eq!(settings.elasticache.name.as_str(), "sessions");
    assert_eq!(settings.elasticache.engine_version.major(), 7);
    assert_eq!(settings.elasticache.node_type.as_str(), "cache.m7g.large");
    assert_eq!(settings.elasticache.replicas.get(), 2);
    assert_eq!(settings.elasticache.subnet_names.as_slice().len(), 3);
}

#[test]
fn backends_need_different_names() {
    let message = parse_error(&format!("{MINIMAL}instance_name: sessions\nelasticache:\n  name: sessions\n"));
    assert!(message.starts_with("deploy.yaml: `instance_name` and `elasticache.name` are both `sessions`"), "{message}");
}

#[test]
fn unknown_backend_lists_the_backends() {
    let message = parse_error(&format!("{MINIMAL}backend: redis\n"));
    assert!(message.starts_with("deploy.yaml:4:"), "{message}");
    assert!(message.contains("expected `instance` or `elasticache`"), "{message}");
}

#[test]
fn elasticache_values_are_validated() {
    let cases = [
        ("name: Sessions", "write `sessions`"),
        ("name: open--emr", "single hyphens"),
        ("name: 1sessions", "starting with a letter"),
        ("name: a-name-that-is-far-longer-than-32-characters", "1 to 32"),
        ("engine_version: \"8\"", "pin a major and minor version"),
        ("engine_version: \"08.0\"", "pin a major and minor version"),
        ("engine_version: \"8.00\"", "pin a major and minor version"),
        ("engine_version: \"7.0\"", "its first is \"7.2\""),
        ("engine_version: 8.1", "write the version in quotes"),
        ("node_type: t4g.micro", "cache.t4g.micro"),
        ("replicas: 0", "needs a replica to promote"),
        ("replicas: 6", "at most 5"),
        ("subnet_names: []", "in at least two zones"),
        ("subnet_names: [Private, Private]", "listed twice"),
        ("nodes: 2", "unknown field `nodes`"),
    ];
    for (line, expected) in cases {
        let message = parse_error(&format!("{MINIMAL}elasticache:\n  {line}\n"));
        assert!(message.starts_with("deploy.yaml:"), "{line}: {message}");
        assert!(message.contains(expected), "{line}: {message}");
    }
}
