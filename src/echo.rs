//! Client-supplied text cut to a readable length before an error message or a log line
//! echoes it back.

/// Longest client-supplied text echoed in an error message or log line, in characters.
pub const MAX_ECHO_CHARS: usize = 120;

/// `text` cut to [`MAX_ECHO_CHARS`] characters, with `…` when something was cut.
pub fn shorten(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_ECHO_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_echoed_whole() {
        assert_eq!(shorten("team/app"), "team/app");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_marked() {
        let text = "é".repeat(MAX_ECHO_CHARS + 1);
        let shown = shorten(&text);
        assert_eq!(shown.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert!(shown.starts_with(&"é".repeat(MAX_ECHO_CHARS)));
    }
}
