//! `deploy.yaml`: what to deploy and where. Parsing is strict, so a typo is an error with a
//! line number instead of a silently ignored key.

use std::fmt;

use anyhow::{Context, bail};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

/// The documented place to look up every key, named in errors.
const SETTINGS_REFERENCE: &str = "README.md#settings";

/// The contents of `deploy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// AWS region; when absent the standard AWS environment and profile decide.
    #[serde(default)]
    pub region: Option<Region>,
    #[serde(default = "default_vpc_name")]
    pub vpc_name: TagValue,
    #[serde(default = "default_subnet_name")]
    pub subnet_name: TagValue,
    /// Security group of the app servers, the only source allowed to reach Redis.
    pub app_security_group: SecurityGroupRef,
    /// Name tag of the instance and its volume, and name of its security group.
    #[serde(default = "default_instance_name")]
    pub instance_name: InstanceName,
    #[serde(default = "default_instance_type")]
    pub instance_type: InstanceType,
    #[serde(default = "default_root_volume_gib")]
    pub root_volume_gib: RootVolumeGib,
    #[serde(default)]
    pub ubuntu_release: UbuntuRelease,
    /// EC2 key pair for SSH. Nothing needs SSH, so by default the instance has no key pair.
    #[serde(default)]
    pub key_pair: Option<TagValue>,
    /// Overrides the `maxmemory` derived from the instance type.
    #[serde(default)]
    pub redis_maxmemory_mib: Option<MaxMemoryMib>,
    #[serde(default)]
    pub readiness: Readiness,
    /// Redis ACL user that the app servers log in as.
    #[serde(default = "default_redis_user")]
    pub redis_user: RedisUser,
    /// SSM Parameter Store name of the `SecureString` that contains the Redis password.
    #[serde(default = "default_redis_password_parameter")]
    pub redis_password_parameter: ParameterName,
    /// The session store to deploy: one EC2 instance (the default) or ElastiCache.
    #[serde(default)]
    pub backend: Backend,
    /// Read when `backend` is `elasticache`, and by `destroy-redis --backend elasticache`.
    #[serde(default)]
    pub elasticache: ElastiCacheSettings,
    pub timezone: Timezone,
    pub file_system_id: FileSystemId,
}

impl Settings {
    /// Reads and validates a settings file. Errors name the file, line and column.
    pub fn load(path: &Utf8Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("failed to read settings file {path}: create it or pass another with --settings PATH")
        })?;
        Settings::parse(path, &text)
    }

    /// Parses settings text; `path` is used only in messages.
    pub fn parse(path: &Utf8Path, text: &str) -> anyhow::Result<Settings> {
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| yaml_error(path, &error))?;
        if document.is_null() {
            bail!(
                "{path}: settings file is empty: it needs at least `app_security_group`, `timezone` and \
                 `file_system_id` (see {SETTINGS_REFERENCE})"
            );
        }
        let settings: Settings = serde_yaml::from_str(text).map_err(|error| yaml_error(path, &error))?;
        settings.check_names(path)?;
        Ok(settings)
    }

    /// Checks the rules that span keys: each backend names its own security group, so the two
    /// names must differ, or one backend's destroy would delete the group the other still uses.
    fn check_names(&self, path: &Utf8Path) -> anyhow::Result<()> {
        if self.elasticache.name.as_str() == self.instance_name.as_str() {
            bail!(
                "{path}: `instance_name` and `elasticache.name` are both `{}`, and each names the security group of its \
                 backend: give them different names (see {SETTINGS_REFERENCE})",
                self.instance_name
            );
        }
        Ok(())
    }

    /// Returns the EC2 architecture that the instance type runs, which picks the Ubuntu image.
    pub fn architecture(&self) -> &'static str {
        self.instance_type.architecture()
    }

    /// Returns Redis's `maxmemory` in MiB: the override, or half the instance's memory.
    pub fn redis_maxmemory_mib(&self) -> anyhow::Result<u32> {
        if let Some(MaxMemoryMib(mib)) = self.redis_maxmemory_mib {
            return Ok(mib);
        }
        // A background snapshot forks Redis, and under write load the copy-on-write pages can
        // double its memory, so half of RAM leaves room for that and for the OS.
        match self.instance_type.memory_mib() {
            Some(memory_mib) => Ok(memory_mib / 2),
            None => bail!(
                "memory of instance type `{}` is unknown to this tool: set `redis_maxmemory_mib` in the \
                 settings file to about half of the instance's memory",
                self.instance_type
            ),
        }
    }
}

/// Turns a YAML error into `path:line:column: message`, the form editors jump to.
fn yaml_error(path: &Utf8Path, error: &serde_yaml::Error) -> anyhow::Error {
    let message = error.to_string();
    let Some(location) = error.location() else {
        return anyhow::anyhow!("{path}: {message} (see {SETTINGS_REFERENCE})");
    };
    let suffix = format!(" at line {} column {}", location.line(), location.column());
    let message = message.replace(&suffix, "");
    anyhow::anyhow!("{path}:{}:{}: {message} (see {SETTINGS_REFERENCE})", location.line(), location.column())
}

fn default_vpc_name() -> TagValue {
    TagValue("openemr-vpc".into())
}

fn default_subnet_name() -> TagValue {
    TagValue("Private".into())
}

fn default_instance_name() -> InstanceName {
    InstanceName("openemr-redis".into())
}

fn default_instance_type() -> InstanceType {
    InstanceType("t3.micro".into())
}

fn default_root_volume_gib() -> RootVolumeGib {
    RootVolumeGib(8)
}

fn default_redis_user() -> RedisUser {
    RedisUser("openemr".into())
}

fn default_redis_password_parameter() -> ParameterName {
    ParameterName("/openemr/redis/password".into())
}

/// Implements `Display` and `as_str` for a validated string newtype.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

/// Implements `Deserialize` through `TryFrom`, called from inside the YAML deserializer's visitor
/// so that a rejected value is reported with its key, line and column. (`#[serde(try_from)]`
/// converts after the deserializer returned, and the position is lost.)
macro_rules! deserialize_with_try_from {
    ($name:ident, text, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                struct TextVisitor;

                impl serde::de::Visitor<'_> for TextVisitor {
                    type Value = $name;

                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        formatter.write_str($expecting)
                    }

                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::try_from(value.to_owned()).map_err(E::custom)
                    }

                    // A plain `null`, `~`, `true` or `12` is not text in YAML. Taking it as the
                    // name "null" would look up resources that do not exist, so ask for quotes.
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$name, E> {
                        Err(E::custom("empty value: write one, or remove the key to use its default"))
                    }

                    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<$name, E> {
                        Err(E::custom(format!("`{value}` is a YAML boolean, not text: quote it if it is meant as text")))
                    }

                    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<$name, E> {
                        Err(E::custom(format!("`{value}` is a YAML number, not text: quote it if it is meant as text")))
                    }

                    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<$name, E> {
                        Err(E::custom(format!("`{value}` is a YAML number, not text: quote it if it is meant as text")))
                    }

                    // Only a release such as `24.04` is written as a float, and its digits are
                    // the release.
                    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<$name, E> {
                        $name::try_from(format!("{value:.2}")).map_err(E::custom)
                    }
                }

                deserializer.deserialize_any(TextVisitor)
            }
        }
    };
    ($name:ident, number, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                struct NumberVisitor;

                impl serde::de::Visitor<'_> for NumberVisitor {
                    type Value = $name;

                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        formatter.write_str($expecting)
                    }

                    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<$name, E> {
                        let value = u32::try_from(value).map_err(|_| E::custom(format!("{value} is too large")))?;
                        $name::try_from(value).map_err(E::custom)
                    }

                    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<$name, E> {
                        match u64::try_from(value) {
                            Ok(value) => self.visit_u64(value),
                            Err(_) => Err(E::custom(format!("{value} is negative"))),
                        }
                    }
                }

                deserializer.deserialize_u32(NumberVisitor)
            }
        }
    };
}

/// An AWS region code such as `us-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Region(String);
deserialize_with_try_from!(Region, text, "an AWS region code such as us-east-1");
string_newtype!(Region);

impl TryFrom<String> for Region {
    type Error = String;

    fn try_from(value: String) -> Result<Region, String> {
        let parts: Vec<&str> = value.split('-').collect();
        let well_formed = parts.len() >= 3
            && parts[..parts.len() - 1].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
            && parts[parts.len() - 1].parse::<u8>().is_ok();
        if !well_formed {
            return Err(format!("invalid AWS region `{value}`: write a region code such as `us-east-1`"));
        }
        Ok(Region(value))
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.0
    }
}

/// The value of an EC2 `Name` tag (at most 256 characters, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct TagValue(String);
deserialize_with_try_from!(TagValue, text, "an EC2 Name tag value");
string_newtype!(TagValue);

impl TryFrom<String> for TagValue {
    type Error = String;

    fn try_from(value: String) -> Result<TagValue, String> {
        if value.trim().is_empty() {
            return Err("empty name: write the EC2 Name tag to look for".to_owned());
        }
        if value.chars().count() > 256 {
            let start: String = value.chars().take(40).collect();
            return Err(format!("name `{start}…` is longer than EC2's 256-character limit for tag values"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("name {value:?} contains a control character, which EC2 tags do not allow"));
        }
        Ok(TagValue(value))
    }
}

impl From<TagValue> for String {
    fn from(tag: TagValue) -> String {
        tag.0
    }
}

/// The instance's Name tag, which also names its security group, so it follows EC2's rules for
/// group names: at most 255 characters of `a-zA-Z0-9`, spaces and `._-:/()#,@[]+=&;{}!$*`, not
/// starting with `sg-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct InstanceName(String);
deserialize_with_try_from!(InstanceName, text, "an instance name such as openemr-redis");
string_newtype!(InstanceName);

impl TryFrom<String> for InstanceName {
    type Error = String;

    fn try_from(value: String) -> Result<InstanceName, String> {
        const ALLOWED_PUNCTUATION: &str = " ._-:/()#,@[]+=&;{}!$*";
        let fix = "it also names the security group, so use letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*";
        if value.trim().is_empty() {
            return Err(format!("empty instance name: {fix}"));
        }
        if value.len() > 255 {
            return Err(format!("instance name is {} characters long: EC2 allows at most 255 for a security group name", value.len()));
        }
        if let Some(bad) = value.chars().find(|c| !c.is_ascii_alphanumeric() && !ALLOWED_PUNCTUATION.contains(*c)) {
            return Err(format!("invalid instance name {value:?}: {bad:?} is not allowed because {fix}"));
        }
        if value.starts_with("sg-") {
            return Err(format!("invalid instance name `{value}`: EC2 rejects security group names that start with `sg-`"));
        }
        Ok(InstanceName(value))
    }
}

impl From<InstanceName> for String {
    fn from(name: InstanceName) -> String {
        name.0
    }
}

/// The app servers' security group, by id (`sg-…`) or by Name tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum SecurityGroupRef {
    Id(String),
    Name(TagValue),
}
deserialize_with_try_from!(SecurityGroupRef, text, "a security group id (sg-...) or Name tag");

impl TryFrom<String> for SecurityGroupRef {
    type Error = String;

    fn try_from(value: String) -> Result<SecurityGroupRef, String> {
        let Some(hex) = value.strip_prefix("sg-") else {
            return TagValue::try_from(value).map(SecurityGroupRef::Name);
        };
        if is_aws_resource_hex(hex) {
            Ok(SecurityGroupRef::Id(value))
        } else {
            Err(format!(
                "invalid security group id `{value}`: an id is `sg-` and 8 or 17 hex digits; \
                 to name the group by its Name tag, use a name that does not start with `sg-`"
            ))
        }
    }
}

impl From<SecurityGroupRef> for String {
    fn from(group: SecurityGroupRef) -> String {
        match group {
            SecurityGroupRef::Id(id) => id,
            SecurityGroupRef::Name(name) => name.0,
        }
    }
}

impl fmt::Display for SecurityGroupRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityGroupRef::Id(id) => write!(formatter, "id {id}"),
            SecurityGroupRef::Name(name) => write!(formatter, "Name tag `{name}`"),
        }
    }
}

/// An EC2 instance type such as `t3.micro`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct InstanceType(String);
deserialize_with_try_from!(InstanceType, text, "an EC2 instance type such as t3.micro");
string_newtype!(InstanceType);

/// Memory of the burstable types, in MiB, from the EC2 instance type specifications.
const BURSTABLE_MEMORY_MIB: [(&str, u32); 7] = [
    ("nano", 512),
    ("micro", 1024),
    ("small", 2048),
    ("medium", 4096),
    ("large", 8192),
    ("xlarge", 16384),
    ("2xlarge", 32768),
];

impl InstanceType {
    fn family(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(family, _)| family)
    }

    fn size(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, size)| size)
    }

    /// Returns the EC2 architecture name: Graviton families carry a `g` after the generation.
    pub fn architecture(&self) -> &'static str {
        let family = self.family();
        let after_generation = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let attributes = after_generation.trim_start_matches(|c: char| c.is_ascii_digit());
        // The first Graviton family, a1, predates the `g` naming.
        if attributes.starts_with('g') || family == "a1" { "arm64" } else { "x86_64" }
    }

    /// Returns the memory of the t3, t3a and t4g types, which share one size table.
    pub fn memory_mib(&self) -> Option<u32> {
        if !matches!(self.family(), "t3" | "t3a" | "t4g") {
            return None;
        }
        BURSTABLE_MEMORY_MIB.iter().find(|(size, _)| *size == self.size()).map(|(_, mib)| *mib)
    }
}

impl TryFrom<String> for InstanceType {
    type Error = String;

    fn try_from(value: String) -> Result<InstanceType, String> {
        let well_formed = value.split_once('.').is_some_and(|(family, size)| {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !size.is_empty()
                && size.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !well_formed {
            return Err(format!("invalid instance type `{value}`: write an EC2 type such as `t3.micro`"));
        }
        Ok(InstanceType(value))
    }
}

impl From<InstanceType> for String {
    fn from(instance_type: InstanceType) -> String {
        instance_type.0
    }
}

/// Size of the root volume in GiB: at least the 8 GiB of Ubuntu's image, at most gp3's 16 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct RootVolumeGib(u32);
deserialize_with_try_from!(RootVolumeGib, number, "a size in GiB");

impl RootVolumeGib {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RootVolumeGib {
    type Error = String;

    fn try_from(value: u32) -> Result<RootVolumeGib, String> {
        if !(8..=16384).contains(&value) {
            return Err(format!(
                "invalid root volume size {value} GiB: Ubuntu's image needs at least 8 and gp3 allows at most 16384"
            ));
        }
        Ok(RootVolumeGib(value))
    }
}

impl From<RootVolumeGib> for u32 {
    fn from(size: RootVolumeGib) -> u32 {
        size.0
    }
}

/// An explicit Redis `maxmemory` in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct MaxMemoryMib(u32);
deserialize_with_try_from!(MaxMemoryMib, number, "a size in MiB");

impl TryFrom<u32> for MaxMemoryMib {
    type Error = String;

    fn try_from(value: u32) -> Result<MaxMemoryMib, String> {
        if value < 64 {
            return Err(format!("invalid redis_maxmemory_mib {value}: give Redis at least 64 MiB"));
        }
        // No EC2 instance type has more than 32 TiB of memory.
        if value > 32 * 1024 * 1024 {
            return Err(format!("invalid redis_maxmemory_mib {value}: that is more than any EC2 instance type has"));
        }
        Ok(MaxMemoryMib(value))
    }
}

impl From<MaxMemoryMib> for u32 {
    fn from(size: MaxMemoryMib) -> u32 {
        size.0
    }
}

/// An Ubuntu LTS release with Canonical's published EC2 images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(into = "String")]
pub enum UbuntuRelease {
    Jammy,
    #[default]
    Noble,
}
deserialize_with_try_from!(UbuntuRelease, text, "an Ubuntu LTS release such as 24.04");

impl UbuntuRelease {
    pub fn version(self) -> &'static str {
        match self {
            UbuntuRelease::Jammy => "22.04",
            UbuntuRelease::Noble => "24.04",
        }
    }

    pub fn codename(self) -> &'static str {
        match self {
            UbuntuRelease::Jammy => "jammy",
            UbuntuRelease::Noble => "noble",
        }
    }

    /// Returns the `DescribeImages` name filter for Canonical's server images of this release.
    pub fn image_name_pattern(self, architecture: &str) -> String {
        // Canonical moved to gp3 root volumes with 24.04; 22.04 images keep the older prefix.
        let volume_kind = match self {
            UbuntuRelease::Jammy => "hvm-ssd",
            UbuntuRelease::Noble => "hvm-ssd-gp3",
        };
        let arch = if architecture == "x86_64" { "amd64" } else { architecture };
        format!("ubuntu/images/{volume_kind}/ubuntu-{}-{}-{arch}-server-*", self.codename(), self.version())
    }
}

impl TryFrom<String> for UbuntuRelease {
    type Error = String;

    fn try_from(text: String) -> Result<UbuntuRelease, String> {
        match text.as_str() {
            "22.04" => Ok(UbuntuRelease::Jammy),
            "24.04" => Ok(UbuntuRelease::Noble),
            _ => Err(format!("unsupported Ubuntu release `{text}`: use an LTS release, \"24.04\" or \"22.04\"")),
        }
    }
}

impl From<UbuntuRelease> for String {
    fn from(release: UbuntuRelease) -> String {
        release.version().to_owned()
    }
}

/// The evidence `deploy-redis` waits for before it calls the instance ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// The completion line the instance prints on its serial console after Redis replied to PING.
    #[default]
    RedisPing,
    /// EC2's instance and system status checks. Used where the console output is not real (the sandbox).
    StatusChecks,
}

/// A Redis ACL user name. Letters, digits, `_` and `-` only, so that it needs no quoting in
/// `redis.conf` or in the phpredis `session.save_path`, and never `default`, which stays disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct RedisUser(String);
deserialize_with_try_from!(RedisUser, text, "a Redis user name such as openemr");
string_newtype!(RedisUser);

impl TryFrom<String> for RedisUser {
    type Error = String;

    fn try_from(value: String) -> Result<RedisUser, String> {
        let well_formed = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(format!(
                "invalid Redis user `{value}`: use 1 to 64 letters, digits, `_` or `-`, such as `openemr`"
            ));
        }
        if value == "default" {
            return Err("Redis user `default` is disabled on the instance: choose another name, such as `openemr`".to_owned());
        }
        Ok(RedisUser(value))
    }
}

impl From<RedisUser> for String {
    fn from(user: RedisUser) -> String {
        user.0
    }
}

/// A fully qualified SSM Parameter Store name such as `/openemr/redis/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ParameterName(String);
deserialize_with_try_from!(ParameterName, text, "an SSM parameter name such as /openemr/redis/password");
string_newtype!(ParameterName);

impl TryFrom<String> for ParameterName {
    type Error = String;

    fn try_from(value: String) -> Result<ParameterName, String> {
        // SSM's rules: at most 1011 characters, letters, digits and `_.-/`, at most 15 levels, and
        // no `aws` or `ssm` prefix. The leading `/` is required here so that the parameter's ARN
        // is `arn:…:parameter` followed by the name.
        let hint = "write a path such as `/openemr/redis/password`";
        let levels = value.split('/').skip(1).count();
        let well_formed = value.starts_with('/')
            && value.len() <= 1011
            && levels <= 15
            && value.split('/').skip(1).all(|level| !level.is_empty())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
        if !well_formed {
            return Err(format!(
                "invalid SSM parameter name `{value}`: {hint}, with letters, digits, `_`, `.`, `-` and at most 15 levels"
            ));
        }
        let first_level = value[1..].to_ascii_lowercase();
        if first_level.starts_with("aws") || first_level.starts_with("ssm") {
            return Err(format!("invalid SSM parameter name `{value}`: SSM reserves names that start with `aws` or `ssm`"));
        }
        Ok(ParameterName(value))
    }
}

impl From<ParameterName> for String {
    fn from(name: ParameterName) -> String {
        name.0
    }
}

/// An IANA time zone name such as `America/New_York`, as PHP's `date.timezone` expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Timezone(String);
deserialize_with_try_from!(Timezone, text, "an IANA time zone name such as America/New_York");
string_newtype!(Timezone);

impl TryFrom<String> for Timezone {
    type Error = String;

    fn try_from(value: String) -> Result<Timezone, String> {
        let hint = "use a name from the IANA time zone database such as `America/New_York` or `UTC`";
        let zone = jiff::tz::db()
            .get(&value)
            .map_err(|_| format!("invalid time zone `{value}`: {hint}"))?;
        // The database lookup ignores case, but PHP's does not on every platform, so insist on
        // the canonical spelling.
        match zone.iana_name() {
            Some(canonical) if canonical == value => Ok(Timezone(value)),
            Some(canonical) => Err(format!("time zone `{value}` is spelled `{canonical}` in the IANA database")),
            None => Err(format!("invalid time zone `{value}`: {hint}")),
        }
    }
}

impl From<Timezone> for String {
    fn from(zone: Timezone) -> String {
        zone.0
    }
}

/// An EFS file system id, `fs-` and 8 or 17 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct FileSystemId(String);
deserialize_with_try_from!(FileSystemId, text, "an EFS file system id such as fs-0123abcd");
string_newtype!(FileSystemId);

impl TryFrom<String> for FileSystemId {
    type Error = String;

    fn try_from(value: String) -> Result<FileSystemId, String> {
        match value.strip_prefix("fs-") {
            Some(hex) if is_aws_resource_hex(hex) => Ok(FileSystemId(value)),
            _ => Err(format!(
                "invalid EFS file system id `{value}`: an id is `fs-` and 8 or 17 lowercase hex digits, \
                 as shown by `aws efs describe-file-systems`"
            )),
        }
    }
}

impl From<FileSystemId> for String {
    fn from(id: FileSystemId) -> String {
        id.0
    }
}

/// Checks the part after the prefix of an AWS resource id: 8 (older) or 17 lowercase hex digits.
fn is_aws_resource_hex(text: &str) -> bool {
    matches!(text.len(), 8 | 17) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

mod elasticache;

pub use elasticache::{Backend, CacheName, ElastiCacheSettings, NodeType, Replicas, SubnetNames, ValkeyVersion};

#[cfg(test)]
mod tests;
