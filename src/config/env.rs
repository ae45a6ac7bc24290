//! Environment-variable references in config values, Collector style:
//! `${env:NAME}` and `${NAME}` are replaced by the variable's value (an unset
//! variable gives the empty string), `${env:NAME:-default}` falls back to
//! `default`, and `$$` stands for a literal `$`. Only string values are
//! expanded (not keys or comments), after the YAML is parsed, so lines stay
//! right and a value containing `#` or `: ` cannot change the document's shape.

use super::{
    node::{Node, Value},
    ConfigError, EnvLookup,
};

/// Expands references in every string value of the tree.
pub fn substitute(root: &mut Node, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    walk(root, "", env)
}

fn walk(node: &mut Node, path: &str, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    match &mut node.value {
        Value::Str(s) => {
            if s.contains('$') {
                *s = expand(s, env).map_err(|m| ConfigError::new(path, node.line, m))?;
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let child = if path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{path}.{}", k.name)
                };
                walk(v, &child, env)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    Ok(())
}

/// Expands one string. A `$` not followed by `{` or `$` is kept as is.
pub fn expand(s: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("unterminated `${{` in `{s}`"));
            };
            out.push_str(&reference(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the inside of `${...}`.
fn reference(inner: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let var = match inner.split_once(':') {
        None => inner,
        Some(("env", v)) => v,
        Some((scheme, _)) if is_name(scheme) && scheme.len() > 1 => {
            return Err(format!(
                "`${{{inner}}}`: the `{scheme}` config provider is not supported by sluice (only `env`)"
            ))
        }
        Some(_) => inner,
    };
    let (name, default) = match var.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (var, None),
    };
    if !is_name(name) {
        return Err(format!(
            "`${{{inner}}}`: `{name}` is not a valid environment variable name (write `$$` for a literal `$`)"
        ));
    }
    Ok(match (env(name), default) {
        (Some(v), Some(d)) if v.is_empty() => d.to_string(),
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => String::new(),
    })
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
