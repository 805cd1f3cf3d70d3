//! Reading request documents into domain types, with JSON pointers into the document.

use questline_core::pointer::escape;

/// The key under which serde_json (`arbitrary_precision`) passes a number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The JSON pointer (RFC 6901) of the value a serde path names.
pub fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            // serde_json (`arbitrary_precision`) carries a number as a map with a private key:
            // an implementation detail, never part of the client's document.
            Segment::Map { key } if key == NUMBER_TOKEN => {}
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&escape(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_never_names_serde_json_internals() {
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "only deserialized")]
        struct Plain {
            steps: Vec<std::collections::BTreeMap<String, rust_decimal::Decimal>>,
        }
        let value: serde_json::Value = serde_json::from_str(r#"{"steps": [{"target": 1e400}]}"#).unwrap();
        let error = serde_path_to_error::deserialize::<_, Plain>(&value).unwrap_err();
        assert!(error.path().to_string().contains(NUMBER_TOKEN), "the case this guards against: {}", error.path());
        assert_eq!(pointer_of(error.path()), "/steps/0/target");
    }
}
