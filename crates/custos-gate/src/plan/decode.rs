//! From bytes to JSON: the encodings plans arrive in. UTF-8 (with or without a byte order
//! mark) and UTF-16 LE/BE (with or without one — PowerShell's `>` writes UTF-16 LE with a BOM)
//! are decoded; UTF-32 is recognised and refused by name; anything else that is not UTF-8 is
//! refused naming the first bad byte.
//!
//! Without a byte order mark the encoding is told from where the zero bytes fall among the
//! first four (RFC 4627 §3): a JSON text starts with an ASCII character, so UTF-16 LE starts
//! `xx 00`, UTF-16 BE `00 xx`, UTF-32 LE `xx 00 00 00`, UTF-32 BE `00 00 00 xx`.

use serde_json::Value;

use super::PlanError;

/// The encodings a plan can arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf16Le => "UTF-16 LE",
            Encoding::Utf16Be => "UTF-16 BE",
            Encoding::Utf32Le => "UTF-32 LE",
            Encoding::Utf32Be => "UTF-32 BE",
        }
    }
}

/// The encoding of `bytes` and the length of its byte order mark (0 if none).
fn sniff(bytes: &[u8]) -> (Encoding, usize) {
    match bytes {
        [0xEF, 0xBB, 0xBF, ..] => (Encoding::Utf8, 3),
        [0x00, 0x00, 0xFE, 0xFF, ..] => (Encoding::Utf32Be, 4),
        [0xFF, 0xFE, 0x00, 0x00, ..] => (Encoding::Utf32Le, 4),
        [0xFE, 0xFF, ..] => (Encoding::Utf16Be, 2),
        [0xFF, 0xFE, ..] => (Encoding::Utf16Le, 2),
        [0x00, 0x00, 0x00, b, ..] if *b != 0 => (Encoding::Utf32Be, 0),
        [a, 0x00, 0x00, 0x00, ..] if *a != 0 => (Encoding::Utf32Le, 0),
        [0x00, b, ..] if *b != 0 => (Encoding::Utf16Be, 0),
        [a, 0x00, ..] if *a != 0 => (Encoding::Utf16Le, 0),
        _ => (Encoding::Utf8, 0),
    }
}

/// Decodes `bytes` to text. Returns the text and, when it was not plain UTF-8, a note saying
/// what was done.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<(String, Option<String>), PlanError> {
    let (encoding, bom) = sniff(bytes);
    let body = bytes.get(bom..).unwrap_or_default();
    let with_bom = if bom > 0 { "with" } else { "without" };
    let note = format!(
        "the plan was {} text ({with_bom} a byte order mark) and was decoded",
        encoding.name()
    );
    match encoding {
        Encoding::Utf8 => {
            let text = utf8(body, bom)?;
            Ok((text.to_owned(), (bom > 0).then_some(note)))
        }
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let text = utf16(body, bom, encoding)?;
            Ok((text, Some(note)))
        }
        Encoding::Utf32Le | Encoding::Utf32Be => Err(PlanError::UnsupportedEncoding {
            encoding: encoding.name(),
        }),
    }
}

/// `body` as UTF-8; errors carry offsets into the whole input (`skipped` bytes precede it).
fn utf8(body: &[u8], skipped: usize) -> Result<&str, PlanError> {
    std::str::from_utf8(body).map_err(|e| {
        let offset = e.valid_up_to();
        match (e.error_len(), body.get(offset)) {
            (Some(_), Some(byte)) => PlanError::InvalidUtf8 {
                offset: skipped + offset,
                byte: *byte,
            },
            _ => PlanError::TruncatedUtf8 {
                offset: skipped + offset,
            },
        }
    })
}

/// `body` as UTF-16 of the given byte order.
fn utf16(body: &[u8], skipped: usize, encoding: Encoding) -> Result<String, PlanError> {
    let problem = |offset: usize, problem: &'static str| PlanError::InvalidUtf16 {
        encoding: encoding.name(),
        offset,
        problem,
    };
    if !body.len().is_multiple_of(2) {
        return Err(problem(skipped + body.len() - 1, "an odd number of bytes"));
    }
    let units = body.chunks_exact(2).map(|pair| match (encoding, pair) {
        (Encoding::Utf16Be, [hi, lo]) => u16::from_be_bytes([*hi, *lo]),
        (_, [lo, hi]) => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    });
    let mut text = String::with_capacity(body.len() / 2);
    let mut position = skipped;
    for decoded in char::decode_utf16(units) {
        match decoded {
            Ok(c) => {
                text.push(c);
                position += 2 * c.len_utf16();
            }
            Err(_) => return Err(problem(position, "an unpaired surrogate")),
        }
    }
    Ok(text)
}

/// Decodes `bytes` and parses them as JSON. Returns the value and the notes decoding left.
pub(crate) fn decode_json(bytes: &[u8]) -> Result<(Value, Vec<String>), PlanError> {
    let (text, note) = decode_text(bytes)?;
    // A byte order mark encoded inside the text (UTF-8 BOM re-encoded as UTF-16) is not JSON.
    let json = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let value = serde_json::from_str(json).map_err(|e| PlanError::Json {
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    Ok((value, note.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    fn utf16be(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFE, 0xFF] } else { Vec::new() };
        out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        out
    }

    const DOC: &str = "{\"actions\": [], \"name\": \"naïve ✓ 𝄞\"}";

    fn expected() -> Value {
        json!({"actions": [], "name": "naïve ✓ 𝄞"})
    }

    #[test]
    fn every_supported_encoding_decodes_to_the_same_value() {
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(DOC.as_bytes());
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (DOC.as_bytes().to_vec(), None),
            (bom8, Some("UTF-8 text (with a byte order mark)")),
            (
                utf16le(DOC, true),
                Some("UTF-16 LE text (with a byte order mark)"),
            ),
            (
                utf16le(DOC, false),
                Some("UTF-16 LE text (without a byte order mark)"),
            ),
            (
                utf16be(DOC, true),
                Some("UTF-16 BE text (with a byte order mark)"),
            ),
            (
                utf16be(DOC, false),
                Some("UTF-16 BE text (without a byte order mark)"),
            ),
        ];
        for (bytes, note) in cases {
            let (value, notes) = decode_json(&bytes).unwrap_or_else(|e| panic!("{note:?}: {e}"));
            assert_eq!(value, expected(), "{note:?}");
            match note {
                None => assert!(notes.is_empty()),
                Some(text) => assert!(notes.iter().any(|n| n.contains(text)), "{notes:?}"),
            }
        }
    }

    #[test]
    fn refusals_name_the_encoding_or_the_offset() {
        let utf32: Vec<u8> = [0xFF, 0xFE, 0x00, 0x00, b'{', 0, 0, 0].to_vec();
        assert_eq!(
            decode_json(&utf32).err(),
            Some(PlanError::UnsupportedEncoding {
                encoding: "UTF-32 LE"
            })
        );
        let utf32_plain: Vec<u8> = [0, 0, 0, b'{'].to_vec();
        assert_eq!(
            decode_json(&utf32_plain).err(),
            Some(PlanError::UnsupportedEncoding {
                encoding: "UTF-32 BE"
            })
        );
        let latin1 = b"{\"name\": \"caf\xe9\"}";
        let err = decode_json(latin1).err();
        assert_eq!(
            err,
            Some(PlanError::InvalidUtf8 {
                offset: 13,
                byte: 0xe9
            })
        );
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "plan is not valid UTF-8: the byte at offset 13 (0xe9) is not part of a valid UTF-8 character"
            )
        );
        let truncated = b"{\"a\": \"\xe2\x9c";
        assert_eq!(
            decode_json(truncated).err(),
            Some(PlanError::TruncatedUtf8 { offset: 7 })
        );
        let mut odd = utf16le("{}", true);
        odd.push(0x20);
        assert!(matches!(
            decode_json(&odd),
            Err(PlanError::InvalidUtf16 {
                problem: "an odd number of bytes",
                offset: 6,
                ..
            })
        ));
        let mut lone = utf16le("{\"a\":\"", true);
        lone.extend_from_slice(&[0x00, 0xD8, b'"', 0, b'}', 0]);
        assert!(matches!(
            decode_json(&lone),
            Err(PlanError::InvalidUtf16 {
                problem: "an unpaired surrogate",
                offset: 14,
                ..
            })
        ));
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let err = decode_json(b"{\n  \"actions\": [,]\n}").err();
        assert!(
            matches!(
                err,
                Some(PlanError::Json {
                    line: 2,
                    column: 15,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(decode_json(b"").is_err());
    }
}
