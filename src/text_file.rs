//! Text files users hand us (corpora, released tables, reference scores, configurations, SQL files,
//! programs, LLM recordings), read without the UTF-8 byte order mark that some editors and
//! spreadsheet exports put first. The mark is not part of the text: left in, it would make the
//! first JSON line malformed, the first TOML key or SQL keyword unknown, the first Python line a
//! syntax error.

use std::path::Path;

/// U+FEFF in UTF-8.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading byte order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// `text` without a leading byte order mark.
pub fn strip_bom_str(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The file at `path` as UTF-8 text, without a leading byte order mark.
pub fn read(path: &Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_byte_order_mark_is_dropped_and_nothing_else() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{\"a\": 1}"), b"{\"a\": 1}");
        assert_eq!(strip_bom(b"{\"a\": \"\xEF\xBB\xBF\"}"), b"{\"a\": \"\xEF\xBB\xBF\"}", "only a leading mark");
        assert_eq!(strip_bom_str("\u{feff}SELECT 1"), "SELECT 1");
        assert_eq!(strip_bom_str("SELECT 1"), "SELECT 1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "\u{feff}corpus = \"x\"\n").unwrap();
        assert_eq!(read(&path).unwrap(), "corpus = \"x\"\n");
    }
}
