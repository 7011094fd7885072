//! RFC 8785 JSON Canonicalization Scheme (JCS): the single byte form of a JSON value that
//! custos hashes and signs.
//!
//! Every ledger entry's `data` passes through here, so the writers append to a caller's
//! `Vec<u8>` and allocate nothing else on the common path.
//!
//! Two choices go beyond the letter of RFC 8785, both so that canonical bytes read back
//! through [`canonicalize_str`] give the same bytes again (a verifier re-canonicalizing a
//! stored entry must not fail where the writer succeeded):
//!
//! - An integer outside ±(2^53 − 1) is refused ([`JcsError::UnsafeInteger`]) instead of being
//!   rounded to the nearest double as ECMAScript would: an audit ledger must not change an
//!   identifier or an amount silently. RFC 8785 Appendix B note (1) recommends this range.
//! - For the same reason a double whose ECMAScript form is an integer literal outside that range
//!   (magnitudes from 2^53 up to 10^21, e.g. `1e16`) is refused too: its canonical text would
//!   read back as such an integer. Larger doubles print with an exponent (`1e+21`) and are kept.

use serde_json::{Map, Number, Value};

/// The largest integer that every IEEE-754 double between it and zero can hold exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a JSON value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// An integer outside ±(2^53 − 1), which I-JSON / IEEE-754 doubles cannot hold exactly.
    #[error("number {0} is outside the I-JSON safe integer range ±(2^53-1); send it as a string")]
    UnsafeInteger(String),
}

/// Returns the RFC 8785 canonical bytes of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Appends the RFC 8785 canonical bytes of `value` to `out`.
///
/// On error `out` holds a partial, meaningless prefix; callers discard it.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => write_object(members, out)?,
    }
    Ok(())
}

/// Writes a JSON string literal (with quotes) escaped per RFC 8785 §3.2.2.2.
///
/// Only `"`, `\` and U+0000..=U+001F are escaped; every other character, U+007F and
/// U+2028 included, is written as its UTF-8 bytes.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Copy unescaped runs in one go; every byte that needs escaping is ASCII, so slicing
    // at it never splits a UTF-8 sequence.
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Writes a number per RFC 8785 §3.2.2.3 (ECMAScript formatting).
///
/// Refuses integers outside ±(2^53 − 1), and doubles whose ECMAScript form would be such an
/// integer (see the module docs), with [`JcsError::UnsafeInteger`] naming the number.
pub fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        return write_safe_integer(false, u, n, out);
    }
    if let Some(i) = n.as_i64() {
        return write_safe_integer(i < 0, i.unsigned_abs(), n, out);
    }
    // Without serde_json's `arbitrary_precision` a non-integer Number always holds a finite
    // double; with it, `None` means the literal overflows a double, which I-JSON forbids too.
    let Some(f) = n.as_f64() else {
        return Err(JcsError::UnsafeInteger(n.to_string()));
    };
    let mut buffer = ryu_js::Buffer::new();
    let text = buffer.format(f);
    // Every double above 2^53 − 1 is an integer; ECMAScript prints it without an exponent
    // below 10^21, and such text would read back as an unsafe integer.
    if f.abs() > MAX_SAFE_INTEGER as f64 && !text.contains('e') {
        return Err(JcsError::UnsafeInteger(text.to_owned()));
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Parses JSON text and returns its canonical bytes (convenience, errors as strings naming the problem).
///
/// serde_json rejects lone surrogates (`"\udead"`), NaN and numbers that overflow a double, as
/// RFC 8785 requires. A repeated member name is not detected: the last occurrence wins.
pub fn canonicalize_str(json: &str) -> Result<Vec<u8>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    to_canonical(&value).map_err(|e| e.to_string())
}

/// Writes `n` in decimal without allocating (for integers custos itself assigns, such as
/// `seq`, which need no I-JSON range check).
pub fn write_u64(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes `magnitude` with a leading `-` when `negative`, after checking the I-JSON range.
fn write_safe_integer(
    negative: bool,
    magnitude: u64,
    n: &Number,
    out: &mut Vec<u8>,
) -> Result<(), JcsError> {
    if magnitude > MAX_SAFE_INTEGER {
        return Err(JcsError::UnsafeInteger(n.to_string()));
    }
    if negative {
        out.push(b'-');
    }
    write_u64(magnitude, out);
    Ok(())
}

/// Writes an object with its members sorted by name as UTF-16 code units (RFC 8785 §3.2.3).
pub fn write_object(members: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), JcsError> {
    out.push(b'{');
    if iteration_order_is_utf16_order(members) {
        write_members(members.iter(), out)?;
    } else {
        let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
        sorted.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
        write_members(sorted.into_iter(), out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
) -> Result<(), JcsError> {
    for (i, (name, value)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_canonical(value, out)?;
    }
    Ok(())
}

/// Whether iterating `members` already yields the names in UTF-16 code-unit order, so the
/// common case needs no sort and no allocation.
///
/// UTF-8 byte order is code point order, which is UTF-16 order except where a character in
/// U+E000..=U+FFFF (UTF-8 lead byte 0xEE or 0xEF) meets a supplementary character (lead byte
/// 0xF0..=0xF4), whose surrogates 0xD800..=0xDFFF sort below it in UTF-16. serde_json's default
/// map iterates in byte order; the order is checked anyway because cargo feature unification
/// can switch on `preserve_order`, which makes it insertion order.
fn iteration_order_is_utf16_order(members: &Map<String, Value>) -> bool {
    let mut has_high_bmp = false;
    let mut has_supplementary = false;
    let mut previous: Option<&str> = None;
    for name in members.keys() {
        if previous.is_some_and(|p| p > name.as_str()) {
            return false;
        }
        previous = Some(name);
        if !name.is_ascii() {
            for &b in name.as_bytes() {
                has_high_bmp |= b == 0xee || b == 0xef;
                has_supplementary |= b >= 0xf0;
            }
        }
    }
    !(has_high_bmp && has_supplementary)
}
