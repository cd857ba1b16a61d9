//! Tokenization: the one definition of a "word" shared by the index and every scan.
//!
//! A token is a maximal run of characters for which `char::is_alphanumeric()` is true
//! (Unicode letters and numbers) or that are `_`. Everything else separates tokens.
//! Matching is ASCII-case-insensitive: the index stores tokens with ASCII letters
//! lower-cased ([`normalize`]); a query word is normalized the same way; non-ASCII
//! letters are compared as they are. An index lookup and a brute-force scan with
//! [`contains_token`] must always agree (tested by property tests).

use std::borrow::Cow;

/// Whether `c` belongs inside a token.
pub fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Iterates the tokens of `text`, in order, as slices of it.
pub fn tokens(text: &str) -> Tokens<'_> {
    Tokens { text, pos: 0 }
}

/// Iterator returned by [`tokens`].
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    text: &'a str,
    pos: usize,
}

/// Whether the character starting at byte `i` of `text` (a char boundary) is a token
/// character, and its length in bytes. ASCII is classified from the byte alone; only
/// non-ASCII characters are decoded.
#[inline]
fn class_at(text: &str, i: usize) -> Option<(bool, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((b.is_ascii_alphanumeric() || b == b'_', 1));
    }
    let c = text.get(i..)?.chars().next()?;
    Some((is_token_char(c), c.len_utf8()))
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        let mut i = self.pos;
        // Skip separators.
        let start = loop {
            let (is_tok, len) = class_at(text, i)?;
            if is_tok {
                break i;
            }
            i += len;
        };
        // Take token characters.
        i = start;
        while let Some((true, len)) = class_at(text, i) {
            i += len;
        }
        self.pos = i;
        text.get(start..i)
    }
}

/// The form a token is indexed and looked up under: ASCII letters lower-cased.
pub fn normalize(token: &str) -> Cow<'_, str> {
    if token.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(token.to_ascii_lowercase())
    } else {
        Cow::Borrowed(token)
    }
}

/// Brute-force check: does `text` contain `word` as a whole token (ASCII case ignored)?
/// `word` must itself be a single token; anything else never matches.
pub fn contains_token(text: &str, word: &str) -> bool {
    tokens(text).any(|t| t.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_on_everything_but_letters_digits_underscore() {
        let t: Vec<&str> =
            tokens("PacketResponder 1 for block blk_-38865049064139660 terminating").collect();
        assert_eq!(
            t,
            [
                "PacketResponder",
                "1",
                "for",
                "block",
                "blk_",
                "38865049064139660",
                "terminating"
            ]
        );
        let t: Vec<&str> = tokens("10.250.9.207:59759 dest=/x/y.log;ok").collect();
        assert_eq!(
            t,
            ["10", "250", "9", "207", "59759", "dest", "x", "y", "log", "ok"]
        );
        assert_eq!(tokens("").count(), 0);
        assert_eq!(tokens(" \t-- ").count(), 0);
    }

    #[test]
    fn unicode_letters_and_numbers_are_token_characters() {
        let t: Vec<&str> = tokens("Größe=äöü über² 東京タワー—ok").collect();
        assert_eq!(t, ["Größe", "äöü", "über²", "東京タワー", "ok"]);
    }

    #[test]
    fn ascii_case_is_ignored_other_case_is_not() {
        assert!(contains_token("ERROR: Disk full", "error"));
        assert!(contains_token("error: disk FULL", "Full"));
        assert!(!contains_token("errors: none", "error"));
        assert!(!contains_token("ÄRGER", "ärger"));
        assert_eq!(normalize("MiXed_Case9"), "mixed_case9");
        assert_eq!(normalize("ÄB"), "Äb");
    }

    proptest! {
        #[test]
        fn tokens_are_maximal_and_cover_every_token_char(s in "\\PC{0,60}") {
            let mut rebuilt_token_chars = String::new();
            for t in tokens(&s) {
                prop_assert!(!t.is_empty());
                prop_assert!(t.chars().all(is_token_char));
                rebuilt_token_chars.push_str(t);
            }
            let expected: String = s.chars().filter(|c| is_token_char(*c)).collect();
            prop_assert_eq!(rebuilt_token_chars, expected);
            // Maximal: consecutive tokens are separated by at least one non-token char.
            let spans: Vec<(usize, usize)> = tokens(&s)
                .map(|t| {
                    let start = t.as_ptr() as usize - s.as_ptr() as usize;
                    (start, start + t.len())
                })
                .collect();
            for w in spans.windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
        }
    }
}
