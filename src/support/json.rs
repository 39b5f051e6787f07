//! JSON written field by field into a byte buffer, for the few documents every token request
//! writes (the claims, the audit line, the token response). `serde_json` writes the same bytes (each caller pins
//! that with a test) but checks every byte of every key and value for escaping one at a
//! time; text that needs none, which is nearly all of it, is copied here instead.

/// `text` as a JSON string. Copied between quotes when nothing in it needs escaping (what
/// `serde_json` escapes: `"`, `\` and control characters), else written by `serde_json`.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    // A fold without an early exit: the compiler checks many bytes per instruction.
    let escape = text.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escape {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a string into a Vec cannot fail; an empty string keeps the JSON valid.
        out.extend_from_slice(b"\"\"");
    }
}

/// `text` as a JSON string, or `null`.
pub fn push_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `key` (the bytes up to the value, as `,"name":`) then `text` as a JSON string.
pub fn push_field(out: &mut Vec<u8>, key: &[u8], text: &str) {
    out.extend_from_slice(key);
    push_str(out, text);
}

/// `key` then `text` as a JSON string, or `null`.
pub fn push_opt_field(out: &mut Vec<u8>, key: &[u8], text: Option<&str>) {
    out.extend_from_slice(key);
    push_opt_str(out, text);
}

/// `n` as a JSON number (by `itoa`, as `serde_json` writes it).
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_are_what_serde_json_writes() {
        let texts = [
            "",
            "plain text: repository/x:pull,push *",
            "only a \" quote",
            "only a \\ backslash",
            "only a \u{1} control character",
            "control \u{0} \u{1f} \n \t and \u{7f} (not escaped)",
            "ünïcode \u{2028} 🦀",
            "a long plain text that crosses several vector widths of the byte check ........",
            "a long text whose only escape is at the very end, past the first vector width\n",
        ];
        for text in texts {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        let mut out = Vec::new();
        push_opt_str(&mut out, None);
        assert_eq!(out, b"null");
        for n in [0, -1, 7, 1_800_000_300, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            push_i64(&mut out, n);
            assert_eq!(out, serde_json::to_vec(&n).unwrap());
        }
    }
}
