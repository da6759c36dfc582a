//! Content-hash ids: the same input gives the same id on every machine, so reruns reuse earlier work.

/// A 32-hex-digit id of `parts`, domain-separated by `kind` (`env`, `config`, ...).
pub fn content_id(kind: &str, parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(&format!("codegym {kind} id v1"));
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::content_id;

    #[test]
    fn ids_depend_on_kind_and_on_part_boundaries() {
        assert_eq!(content_id("env", &["a", "b"]), content_id("env", &["a", "b"]));
        assert_ne!(content_id("env", &["a", "b"]), content_id("config", &["a", "b"]));
        assert_ne!(content_id("env", &["ab", ""]), content_id("env", &["a", "b"]));
    }
}
