//! The instance's TLS certificate: read from the serial console, where the setup script prints it
//! one PEM line per console line after the marker, and checked before it becomes the file that the
//! app servers trust.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use xtask::codegen::CERTIFICATE_MARKER;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Returns the newest certificate printed on the console, as PEM text ending in a line break.
pub fn extract_certificate(console: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = console.lines().filter_map(certificate_line).collect();
    let Some(start) = lines.iter().rposition(|line| *line == PEM_BEGIN) else {
        bail!("the console shows no certificate between `{CERTIFICATE_MARKER} {PEM_BEGIN}` and `{PEM_END}`");
    };
    let Some(length) = lines[start..].iter().position(|line| *line == PEM_END) else {
        bail!("the certificate on the console is cut off: it has no `{PEM_END}` line");
    };
    let mut pem = lines[start..=start + length].join("\n");
    pem.push('\n');
    Ok(pem)
}

/// Returns the text after the marker of a certificate line, whatever the console put before it.
fn certificate_line(line: &str) -> Option<&str> {
    let start = line.find(CERTIFICATE_MARKER)?;
    let rest = line[start + CERTIFICATE_MARKER.len()..].strip_prefix(' ')?;
    Some(rest.trim_end())
}

/// Returns the current time in seconds since the Unix epoch, the form `check_certificate` takes.
pub fn unix_seconds_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Checks that `pem` is one X.509 certificate that is valid at `now_unix_seconds` and names
/// `private_ip` as an IP address subject alternative name.
pub fn check_certificate(pem: &str, private_ip: &str, now_unix_seconds: i64) -> anyhow::Result<()> {
    let expected_ip: Ipv4Addr = private_ip
        .parse()
        .with_context(|| format!("private IP `{private_ip}` of the instance is not an IPv4 address"))?;
    let (rest, block) = parse_x509_pem(pem.as_bytes()).map_err(|error| anyhow::anyhow!("the certificate is not valid PEM: {error}"))?;
    if !rest.iter().all(u8::is_ascii_whitespace) {
        bail!("the certificate text contains more than one PEM block");
    }
    let certificate = block
        .parse_x509()
        .map_err(|error| anyhow::anyhow!("the certificate is not valid X.509 DER: {error}"))?;

    let validity = certificate.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now_unix_seconds < not_before {
        bail!("the certificate is not valid yet: its validity starts at {}", validity.not_before);
    }
    if now_unix_seconds > not_after {
        bail!("the certificate expired at {}", validity.not_after);
    }

    let names = certificate
        .subject_alternative_name()
        .map_err(|error| anyhow::anyhow!("the certificate's subject alternative names are invalid: {error}"))?;
    let addresses: Vec<String> = names
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::IPAddress(bytes) => Some(format_address(bytes)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !addresses.contains(&expected_ip.to_string()) {
        bail!(
            "the certificate names the IP addresses [{}], not the instance's private IP {private_ip}",
            addresses.join(", ")
        );
    }
    Ok(())
}

fn format_address(bytes: &[u8]) -> String {
    match <[u8; 4]>::try_from(bytes) {
        Ok(octets) => Ipv4Addr::from(octets).to_string(),
        Err(_) => bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_lines_keep_text_after_marker() {
        let console = format!(
            "boot\n[  40.1] {CERTIFICATE_MARKER} {PEM_BEGIN}\r\n{CERTIFICATE_MARKER} QUJD\n{CERTIFICATE_MARKER} {PEM_END}\nready\n"
        );
        assert_eq!(extract_certificate(&console).unwrap(), format!("{PEM_BEGIN}\nQUJD\n{PEM_END}\n"));
    }

    #[test]
    fn newest_certificate_wins() {
        let console = format!(
            "{CERTIFICATE_MARKER} {PEM_BEGIN}\n{CERTIFICATE_MARKER} T0xE\n{CERTIFICATE_MARKER} {PEM_END}\n\
             {CERTIFICATE_MARKER} {PEM_BEGIN}\n{CERTIFICATE_MARKER} TkVX\n{CERTIFICATE_MARKER} {PEM_END}\n"
        );
        assert!(extract_certificate(&console).unwrap().contains("TkVX"));
    }

    #[test]
    fn cut_off_certificate_is_an_error() {
        let console = format!("{CERTIFICATE_MARKER} {PEM_BEGIN}\n{CERTIFICATE_MARKER} QUJD\n");
        let message = extract_certificate(&console).unwrap_err().to_string();
        assert!(message.contains("cut off"), "{message}");
    }

    #[test]
    fn console_without_certificate_is_an_error() {
        let message = extract_certificate("boot\nready\n").unwrap_err().to_string();
        assert!(message.contains("shows no certificate"), "{message}");
    }
}
