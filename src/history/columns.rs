//! Helpers for the fixed-width tables of `history` and `status`.

/// Pads or cuts `value` to exactly `width` characters; a cut ends in `~`.
///
/// Widths count characters, not terminal cells, so a name in a script whose
/// characters are double width pushes the rest of its row to the right.
pub(super) fn fit(value: &str, width: usize) -> String {
    let value = clean(value);
    let length = value.chars().count();
    if length <= width {
        format!("{value}{}", " ".repeat(width - length))
    } else {
        let mut cut: String = value.chars().take(width.saturating_sub(1)).collect();
        cut.push('~');
        cut
    }
}

/// A value holding a newline or a tab must not break its row.
pub(super) fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `2025-09-11T03:19:14.000000Z` as `2025-09-11 03:19:14`; any other text as is.
pub(super) fn short_time(time: &str) -> String {
    match time.get(..19) {
        Some(head) if time.as_bytes().get(10) == Some(&b'T') => head.replacen('T', " ", 1),
        _ => time.to_owned(),
    }
}

/// Ends a row: no trailing blanks, one newline.
pub(super) fn end_line(mut line: String) -> String {
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_value_is_padded_and_a_long_one_cut_to_the_width() {
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("été!", 4), "été!");
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(clean("a\nb\tc"), "a b c");
    }

    #[test]
    fn a_stored_time_is_shown_to_the_second() {
        assert_eq!(
            short_time("2025-09-11T03:19:14.000000Z"),
            "2025-09-11 03:19:14"
        );
        assert_eq!(short_time("soon"), "soon");
    }
}
