//! Proto comments as documentation: the leading comment of a declaration, by its path in the
//! file's source code info.

use prost_reflect::FileDescriptor;

/// The leading comment of the declaration at `path` in `file`, trimmed, if it has one.
pub(super) fn leading(file: FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// An operation's summary: the comment's first sentence, its lines joined.
pub(super) fn summary(text: &str) -> String {
    let paragraph = text.split("\n\n").next().unwrap_or(text).replace('\n', " ");
    match paragraph.find(". ") {
        Some(end) => paragraph[..=end].to_owned(),
        None => paragraph,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_first_sentences_across_wrapped_lines() {
        assert_eq!(
            summary("Lists the books of a shelf, a page\nat a time. Filters apply.\n\nMore."),
            "Lists the books of a shelf, a page at a time."
        );
        assert_eq!(summary("Gets a book"), "Gets a book");
    }
}
