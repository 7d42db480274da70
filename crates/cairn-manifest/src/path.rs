//! Diagnostic paths: `Marbles.backend.Package`, `Secrets["tls.key"].Type`, `Roles.admin.Actions[2]`.

/// Appends an object key to `base`.
pub(crate) fn key(base: &str, k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-'));
    if plain {
        if base.is_empty() {
            k.to_string()
        } else {
            format!("{base}.{k}")
        }
    } else {
        // serde_json string encoding never fails for a &str.
        let quoted = serde_json::to_string(k).unwrap_or_else(|_| format!("\"{k}\""));
        format!("{base}[{quoted}]")
    }
}

/// Appends an array index to `base`.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_paths() {
        assert_eq!(key("", "Marbles"), "Marbles");
        assert_eq!(key("Marbles", "backend"), "Marbles.backend");
        assert_eq!(key("Secrets", "tls.key"), "Secrets[\"tls.key\"]");
        assert_eq!(key("Users", "a b"), "Users[\"a b\"]");
        assert_eq!(index("Roles.admin.Actions", 2), "Roles.admin.Actions[2]");
        assert_eq!(key("", ""), "[\"\"]");
    }
}
