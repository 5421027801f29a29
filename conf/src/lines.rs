//! Where a key path (`upstream.origins[1].name`) stands in the TOML text, so validation
//! errors name the line the way the TOML parser's errors do. A key the file does not set (a
//! default that conflicts with a set one) is placed at the deepest part of its path that the
//! file does set.

use toml_edit::{Document, Item, TableLike};

/// The 1-based line of `key` in `text`, or of its deepest present ancestor.
pub(crate) fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = Document::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    let mut found = None;
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, item)) = table.get_key_value(name) else {
            break;
        };
        found = k.span().or(found);
        let next: Option<&dyn TableLike> = match (item, index) {
            (Item::ArrayOfTables(array), Some(i)) => match array.get(i) {
                Some(t) => {
                    found = t.span().or(found);
                    Some(t)
                }
                None => None,
            },
            (item, None) => {
                if let Some(t) = item.as_table() {
                    found = t.span().or(found);
                }
                item.as_table_like()
            }
            _ => None,
        };
        match next {
            Some(t) => table = t,
            None => break,
        }
    }
    let offset = found?.start;
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "shutdown_grace_ms = 5\n\n[srt]\nlisten = \"x\"\n\
                        [[upstream.origins]]\nname = \"a\"\n[[upstream.origins]]\nname = \"b\"\n\
                        [https]\ncert = \"c\"\n";

    #[test]
    fn keys_tables_and_arrays_of_tables() {
        assert_eq!(line_of(TEXT, "shutdown_grace_ms"), Some(1));
        assert_eq!(line_of(TEXT, "srt.listen"), Some(4));
        assert_eq!(line_of(TEXT, "upstream.origins[1].name"), Some(8));
        assert_eq!(line_of(TEXT, "upstream.origins[0].name"), Some(6));
        // Not set: the deepest part that is.
        assert_eq!(line_of(TEXT, "https.key"), Some(9));
        assert_eq!(line_of(TEXT, "hls.part_target_ms"), None);
        assert_eq!(line_of("not toml [", "srt.listen"), None);
    }
}
