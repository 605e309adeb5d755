//! Text cut short for an operator's line (a status, an error naming a value, a log line's
//! quoted output), and text's fingerprint. Pure; the one shortener of the crate.

/// How many characters of a value an error message quotes.
pub(crate) const SHOWN: usize = 120;

/// `text` cut to at most `max` characters on a character boundary; a cut text ends in `…`,
/// which counts in `max`.
pub(crate) fn shorten(text: impl AsRef<str>, max: usize) -> String {
    let text = text.as_ref();
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => {
            format!("{}…", text.get(..cut).unwrap_or_default())
        }
        _ => text.to_string(),
    }
}

/// A short fingerprint of `bytes` (FNV-1a 64, 16 hex digits): to tell whether a rendered
/// text changed, not a defence against anyone.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_on_a_character_boundary_to_max_characters() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("exactly10!", 10), "exactly10!");
        assert_eq!(shorten("eleven chars", 10), "eleven ch…");
        assert_eq!(shorten("ééééééé", 4), "ééé…");
        assert_eq!(shorten("x".repeat(500), SHOWN).chars().count(), SHOWN);
    }
}
