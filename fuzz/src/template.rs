//! The path template parser of protogate-build.

use protogate_build::fuzzing::{FlatSegment, parse_template};

/// Path templates from arbitrary text: parsing never panics, whatever parses prints in a
/// canonical form that parses back to the same template (and prints the same again), and its
/// flattened form holds at most one `**` with variables over ordered, disjoint, non-empty
/// ranges inside it.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_template(text) else {
        return;
    };
    let printed = parsed.to_string();
    let again = match parse_template(&printed) {
        Ok(again) => again,
        Err(error) => panic!("`{text}` prints as `{printed}`, which does not parse: {error}"),
    };
    assert_eq!(again, parsed, "`{text}` prints as `{printed}`");
    assert_eq!(again.to_string(), printed);

    let flat = parsed.flat();
    let doubles = flat
        .iter()
        .filter(|segment| **segment == FlatSegment::DoubleWildcard)
        .count();
    assert!(doubles <= 1, "`{text}` holds {doubles} `**`");
    let mut next = 0;
    for variable in parsed.variables() {
        assert!(
            next <= variable.start && variable.start < variable.end && variable.end <= flat.len(),
            "`{text}`: variable {variable:?} after segment {next} of {}",
            flat.len()
        );
        next = variable.end;
    }
    let shape = parsed.shape();
    assert!(shape.starts_with('/'), "shape `{shape}` of `{text}`");
    // One `/` per segment: a literal never holds one.
    assert_eq!(
        shape.matches('/').count(),
        flat.len(),
        "shape `{shape}` of `{text}`"
    );
}
