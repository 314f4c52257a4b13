//! Template rendering with minijinja: strict about undefined values, and with filters that keep
//! each output format intact whatever a value contains.

use anyhow::{Context, bail};
use camino::Utf8Path;
pub use minijinja::Environment;
use minijinja::{AutoEscape, UndefinedBehavior, Value, syntax::SyntaxConfig};

/// Loads every `*.j2` file of `templates_dir` into a strict environment.
pub fn load_templates(templates_dir: &Utf8Path) -> anyhow::Result<Environment<'static>> {
    let mut environment = new_environment();
    let entries = templates_dir
        .read_dir_utf8()
        .with_context(|| format!("failed to list templates in {templates_dir}"))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list templates in {templates_dir}"))?;
        let path = entry.path();
        if path.extension() != Some("j2") {
            continue;
        }
        let source = std::fs::read_to_string(path).with_context(|| format!("failed to read template {path}"))?;
        environment
            .add_template_owned(entry.file_name().to_owned(), source)
            .map_err(|error| template_error(path, &error))?;
    }
    Ok(environment)
}

/// Creates an environment with this project's rules and filters and no templates.
pub fn new_environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    // Nothing we render is HTML, and each format gets its own quoting filter instead.
    environment.set_auto_escape_callback(|_| AutoEscape::None);
    let syntax = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are valid");
    environment.set_syntax(syntax);
    environment.add_filter("yaml", yaml_scalar);
    environment.add_filter("shell", shell_word);
    environment.add_filter("redis", redis_argument);
    environment.add_filter("comment", comment_text);
    environment
}

/// Renders template `name` with `context`, naming the template, line and variable on failure.
/// `templates_dir` is the directory as shown in messages.
pub fn render(environment: &Environment<'_>, templates_dir: &Utf8Path, name: &str, context: &Value) -> anyhow::Result<String> {
    let template = environment
        .get_template(name)
        .with_context(|| format!("template {name} not found in {templates_dir}"))?;
    let output = template
        .render(context)
        .map_err(|error| template_error(&templates_dir.join(name), &error))?;
    Ok(output.replace("\r\n", "\n"))
}

fn template_error(path: &Utf8Path, error: &minijinja::Error) -> anyhow::Error {
    // An error inside an included template arrives wrapped in one that only names the include,
    // so report the innermost error with its own template name and line.
    let mut error = error;
    while let Some(inner) = std::error::Error::source(error).and_then(|source| source.downcast_ref::<minijinja::Error>()) {
        error = inner;
    }
    let included_path = error.name().map(|name| path.with_file_name(name));
    let path = included_path.as_deref().unwrap_or(path);

    let line = error.line().map(|line| format!(":{line}")).unwrap_or_default();
    let mut message = format!("{path}{line}: {}", error.kind());
    if let Some(detail) = error.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if error.kind() == minijinja::ErrorKind::UndefinedError {
        message.push_str(" (check the variable's spelling against the context in xtask/src/codegen.rs)");
    }
    anyhow::anyhow!(message)
}

/// Formats a value as a YAML flow scalar. Strings are always double-quoted with JSON escapes,
/// which YAML 1.1 and 1.2 both read back as the same string, so `no`, `on`, `0644`, `a: b` and
/// `# x` stay strings.
fn yaml_scalar(value: &Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(minijinja::ErrorKind::UndefinedError, "yaml filter got an undefined value"));
    }
    serde_json::to_string(value).map_err(|error| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("value has no YAML form: {error}"))
    })
}

/// Quotes a value as one POSIX shell word. Line breaks are rejected because the scripts are
/// embedded in YAML block scalars, where a line break could end the block.
fn shell_word(value: &Value) -> Result<String, minijinja::Error> {
    let text = printable_text(value, "shell")?;
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

/// Quotes a value as one `redis.conf` argument.
fn redis_argument(value: &Value) -> Result<String, minijinja::Error> {
    let text = printable_text(value, "redis")?;
    Ok(format!("\"{}\"", text.replace('\\', r"\\").replace('"', "\\\"")))
}

/// Passes text into a comment unchanged, rejecting line breaks, which would end the comment.
fn comment_text(value: &Value) -> Result<String, minijinja::Error> {
    printable_text(value, "comment")
}

fn printable_text(value: &Value, filter: &str) -> Result<String, minijinja::Error> {
    if value.is_undefined() || value.is_none() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            format!("{filter} filter got no value"),
        ));
    }
    let text = value.to_string();
    if text.chars().any(char::is_control) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{filter} filter rejects {text:?} because it contains a control character"),
        ));
    }
    Ok(text)
}

/// Checks that a rendered document parses as YAML, so a template edit cannot ship broken YAML.
pub fn check_yaml(name: &str, text: &str) -> anyhow::Result<()> {
    if let Err(error) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let at = error.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        bail!("rendered {name}{at} is not valid YAML: {error}; fix the template that produced it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(source: &str, context: Value) -> Result<String, minijinja::Error> {
        let mut environment = new_environment();
        environment.add_template_owned("test", source.to_owned())?;
        environment.get_template("test")?.render(context)
    }

    #[test]
    fn yaml_filter_keeps_tricky_strings_as_strings() {
        let tricky = ["no", "on", "0644", "a: b", "# comment", "\"quoted\"", "it's", "line\nbreak", "", "~", "null", "1e3"];
        for text in tricky {
            let output = render_one("key: {{ v | yaml }}\n", minijinja::context! { v => text }).unwrap();
            let parsed: serde_yaml::Value = serde_yaml::from_str(&output).unwrap();
            assert_eq!(parsed["key"], serde_yaml::Value::String(text.to_owned()), "rendered {output:?}");
        }
    }

    #[test]
    fn yaml_filter_writes_numbers_plain() {
        let output = render_one("size: {{ v | yaml }}", minijinja::context! { v => 512 }).unwrap();
        assert_eq!(output, "size: 512");
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let error = render_one("{{ missing }}", minijinja::context! {}).unwrap_err();
        assert_eq!(error.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn undefined_in_include_names_included_template_and_line() {
        let mut environment = new_environment();
        environment.add_template_owned("outer.j2", "first\n{% include \"inner.j2\" %}\n".to_owned()).unwrap();
        environment.add_template_owned("inner.j2", "one\ntwo {{ missing }}\n".to_owned()).unwrap();

        let message = render(&environment, Utf8Path::new("templates"), "outer.j2", &minijinja::context! {}).unwrap_err().to_string();
        assert!(message.starts_with("templates/inner.j2:2: undefined value"), "{message}");
    }

    #[test]
    fn trailing_newline_is_kept() {
        let output = render_one("line\n", minijinja::context! {}).unwrap();
        assert_eq!(output, "line\n");
    }

    #[test]
    fn html_is_not_escaped() {
        let output = render_one("{{ v }}", minijinja::context! { v => "<a&b>" }).unwrap();
        assert_eq!(output, "<a&b>");
    }

    #[test]
    fn shell_filter_quotes_one_word() {
        let output = render_one("{{ v | shell }}", minijinja::context! { v => "it's $HOME" }).unwrap();
        assert_eq!(output, r"'it'\''s $HOME'");
    }

    #[test]
    fn shell_filter_rejects_line_breaks() {
        let error = render_one("{{ v | shell }}", minijinja::context! { v => "a\nb" }).unwrap_err();
        assert_eq!(error.kind(), minijinja::ErrorKind::InvalidOperation);
    }

    #[test]
    fn comment_filter_rejects_line_breaks() {
        let error = render_one("# {{ v | comment }}", minijinja::context! { v => "a\nkey: value" }).unwrap_err();
        assert_eq!(error.kind(), minijinja::ErrorKind::InvalidOperation);
    }

    #[test]
    fn redis_filter_escapes_quotes() {
        let output = render_one("{{ v | redis }}", minijinja::context! { v => r#"a"b\c"# }).unwrap();
        assert_eq!(output, r#""a\"b\\c""#);
    }
}
