//! Path templates from arbitrary text: parsing never panics, and whatever parses prints in a
//! canonical form that parses back to the same template.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser is private to protogate-build; the target compiles its one file directly.
#[path = "../../src/template.rs"]
#[allow(dead_code)]
mod template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(template) = template::parse(text) {
        let printed = template.to_string();
        let again = template::parse(&printed).expect("canonical text parses");
        assert_eq!(again, template);
        let _ = template.shape();
        let _ = template.variables();
    }
});
