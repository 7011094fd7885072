//! RFC 8785 conformance of `custos_core::jcs`: the RFC's own examples (§3.2.2, §3.2.3, §3.2.4,
//! Appendix B), the custos range rule for integers, and properties over generated values.

use custos_core::jcs::{JcsError, canonicalize_str, to_canonical, write_number, write_string};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Canonicalizes `input` (JSON text) and compares with `expected`, either the canonical text
/// or, for `Err`, the error message.
fn check(input: &str, expected: Result<&str, &str>) {
    let actual = canonicalize_str(input).map(|bytes| String::from_utf8(bytes).expect("UTF-8"));
    let expected = expected.map(str::to_owned).map_err(str::to_owned);
    assert_eq!(actual, expected, "input: {input}");
}

/// RFC 8785 Appendix B, Table 1: IEEE 754 bits and their JSON representation.
const APPENDIX_B: &[(u64, &str)] = &[
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0xffefffffffffffff, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xc340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44b52d02c7e14af5, "9.999999999999997e+22"),
    (0x44b52d02c7e14af6, "1e+23"),
    (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
    (0x444b1ae4d6e2ef4e, "999999999999999700000"),
    (0x444b1ae4d6e2ef4f, "999999999999999900000"),
    (0x444b1ae4d6e2ef50, "1e+21"),
    (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
    (0x3eb0c6f7a0b5ed8d, "0.000001"),
    (0x41b3de4355555553, "333333333.3333332"),
    (0x41b3de4355555554, "333333333.33333325"),
    (0x41b3de4355555555, "333333333.3333333"),
    (0x41b3de4355555556, "333333333.3333334"),
    (0x41b3de4355555557, "333333333.33333343"),
    (0xbecbf647612f3696, "-0.0000033333333333333333"),
    (0x43143ff3c1cb0959, "1424953923781206.2"),
];

/// The RFC's representation is an integer literal beyond ±(2^53 − 1), which custos refuses
/// (module docs of `jcs`); the error then carries the RFC's text.
fn is_unsafe_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<f64>().expect("digits") > 9_007_199_254_740_991.0
}

#[test]
fn appendix_b_numbers() {
    for &(bits, rfc_text) in APPENDIX_B {
        let f = f64::from_bits(bits);
        let expected = if is_unsafe_integer_text(rfc_text) {
            Err(JcsError::UnsafeInteger(rfc_text.to_owned()))
        } else {
            Ok(rfc_text.to_owned())
        };

        let number = Number::from_f64(f).expect("finite");
        let mut out = Vec::new();
        let written =
            write_number(&number, &mut out).map(|()| String::from_utf8(out).expect("UTF-8"));
        assert_eq!(written, expected, "write_number of {bits:016x}");

        // The same double as JSON input text; `{:e}` is exact and never reads back as an integer.
        let input = format!("{f:e}");
        let reparsed = serde_json::from_str::<f64>(&input).expect("parses");
        assert_eq!(
            reparsed.to_bits(),
            bits,
            "{input} reads back as {bits:016x}"
        );
        let message = unsafe_message(rfc_text);
        check(&input, expected.as_deref().map_err(|_| message.as_str()));
    }
}

fn unsafe_message(number: &str) -> String {
    JcsError::UnsafeInteger(number.to_owned()).to_string()
}

#[test]
fn appendix_b_nan_and_infinity_have_no_json_number() {
    // Rows 0x7fffffffffffffff (NaN) and 0x7ff0000000000000 (Infinity): RFC 8785 §3.2.2.3 says
    // they must be an error. serde_json cannot hold them, and refuses them as text.
    for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
        assert_eq!(Number::from_f64(f64::from_bits(bits)), None, "{bits:016x}");
    }
    for input in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"] {
        assert!(canonicalize_str(input).is_err(), "{input} must be refused");
    }
}

#[test]
fn rfc_examples() {
    // §3.2.2 input, §3.2.3 canonical form.
    check(
        r#"{
            "numbers": [333333333.33333329, 1E30, 4.50,
                        2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#,
        Ok(
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#,
        ),
    );
    // §3.2.3 sorting test data: UTF-16 puts the emoji's surrogates (0xD83D) below U+FB33,
    // where UTF-8 byte order would put it after.
    check(
        r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#,
        Ok(
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
            \"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        ),
    );
}

#[test]
fn rfc_section_3_2_4_utf8_bytes() {
    let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#;
    let expected_hex = "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
        75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
        5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
        65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
        5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
        30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d";
    let expected: Vec<u8> = expected_hex
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    assert_eq!(canonicalize_str(input), Ok(expected));
}

#[test]
fn canonical_forms() {
    let cases: &[(&str, &str)] = &[
        // Literals and empty containers.
        ("null", "null"),
        (" true ", "true"),
        ("false", "false"),
        ("{}", "{}"),
        ("[]", "[]"),
        ("{ }", "{}"),
        ("[ ]", "[]"),
        // Nesting: members sorted at every depth, array order kept.
        (
            r#"{"b": [3, {"z": 1, "a": [{"y": null, "x": {}}]}, 1], "a": {"d": true, "c": []}}"#,
            r#"{"a":{"c":[],"d":true},"b":[3,{"a":[{"x":{},"y":null}],"z":1},1]}"#,
        ),
        ("[[[]], [{}], {\"\": []}]", r#"[[[]],[{}],{"":[]}]"#),
        // Sorting is by code unit, shorter prefix first, upper case before lower case.
        (
            r#"{"ab": 1, "a": 2, "": 3, "B": 4, "aa": 5}"#,
            r#"{"":3,"B":4,"a":2,"aa":5,"ab":1}"#,
        ),
        // U+E000 (one unit 0xE000) against U+10000 (units 0xD800 0xDC00).
        (
            r#"{"\ue000": 1, "\ud800\udc00": 2}"#,
            "{\"\u{10000}\":2,\"\u{e000}\":1}",
        ),
        (
            r#"{"\uffff": 1, "\ud83d\ude00": 2, "z": 3}"#,
            "{\"z\":3,\"😀\":2,\"\u{ffff}\":1}",
        ),
        // Names are escaped like any string.
        (r#"{"\n": 1, "\"": 2}"#, r#"{"\n":1,"\"":2}"#),
        // Strings: short escapes, \u00xx in lowercase for the other controls, the rest literal.
        (r#""\u0000\u0001\u001f""#, r#""\u0000\u0001\u001f""#),
        (r#""\u0008\u0009\u000a\u000c\u000d""#, r#""\b\t\n\f\r""#),
        (r#""\u000b\u001A\u001B""#, r#""\u000b\u001a\u001b""#),
        (r#""\/\"\\""#, r#""/\"\\""#),
        (
            "\"\\u007f\\u2028\\u2029\\u00e9\"",
            "\"\u{7f}\u{2028}\u{2029}é\"",
        ),
        ("\"\\ud83d\\ude00 \u{1f600}\"", "\"😀 😀\""),
        ("\"\"", "\"\""),
        // Integers, up to the I-JSON bounds.
        ("0", "0"),
        ("-0", "0"),
        ("-1", "-1"),
        ("1234567890", "1234567890"),
        ("9007199254740991", "9007199254740991"),
        ("-9007199254740991", "-9007199254740991"),
        // Doubles in ECMAScript form.
        ("1.0", "1"),
        ("-0.0", "0"),
        ("1E2", "100"),
        ("1.5e-1", "0.15"),
        ("1e21", "1e+21"),
        ("-1e21", "-1e+21"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("123456789.125", "123456789.125"),
        ("9007199254740991.0", "9007199254740991"),
        ("0.1", "0.1"),
        ("1e300", "1e+300"),
    ];
    for &(input, expected) in cases {
        check(input, Ok(expected));
    }
}

#[test]
fn numbers_outside_the_safe_range_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("18446744073709551615", "18446744073709551615"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("[1, {\"a\": 9007199254740993}]", "9007199254740993"),
        // Doubles whose ECMAScript form is such an integer.
        ("1e16", "10000000000000000"),
        ("9007199254740992.0", "9007199254740992"),
        ("-1.5e20", "-150000000000000000000"),
    ];
    for &(input, number) in cases {
        check(input, Err(&unsafe_message(number)));
    }
    assert_eq!(
        to_canonical(&Value::from(u64::MAX)),
        Err(JcsError::UnsafeInteger("18446744073709551615".to_owned()))
    );
    assert_eq!(
        to_canonical(&Value::from(i64::MIN)),
        Err(JcsError::UnsafeInteger("-9223372036854775808".to_owned()))
    );
}

#[test]
fn text_that_is_not_i_json_is_refused() {
    for input in [
        r#""\udead""#,
        r#""\ud83d""#,
        "{",
        "[1,]",
        "01",
        "\"\u{1}\"",
        "",
    ] {
        let result = canonicalize_str(input);
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.starts_with("not valid JSON: ")),
            "{input:?} gave {result:?}"
        );
    }
}

/// Values covering every JSON type (some with refused doubles), with names that mix U+E000..=U+FFFF and supplementary
/// characters so both the in-order and the sorting path of objects are taken.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-9_007_199_254_740_991_i64..=9_007_199_254_740_991).prop_map(Value::from),
        prop_oneof![any::<f64>(), arb_large_double()]
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(arb_name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Doubles of magnitude 1 to 2^75, spread evenly over the exponent: many fall in 2^53..10^21,
/// whose ECMAScript form is an unsafe integer literal, and on both sides of it.
fn arb_large_double() -> impl Strategy<Value = f64> {
    (1.0..2.0_f64, 0..75_i32, any::<bool>())
        .prop_map(|(m, e, negative)| if negative { -m } else { m } * 2.0_f64.powi(e))
}

fn arb_name() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        prop::char::range('a', 'c'),
        prop::char::range('\u{e000}', '\u{e001}'),
        prop::char::range('\u{ffff}', '\u{ffff}'),
        prop::char::range('\u{10000}', '\u{10001}'),
        prop::char::range('\u{1f600}', '\u{1f600}'),
        any::<char>(),
    ];
    prop::collection::vec(ch, 0..4).prop_map(|cs| cs.into_iter().collect())
}

/// Whether `json` has a whitespace or raw control byte outside a string literal, or a raw
/// control byte inside one.
fn stray_byte(json: &[u8]) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in json.iter().enumerate() {
        if b < 0x20 || (!in_string && b == b' ') {
            return Some(i);
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    None
}

proptest! {
    #[test]
    fn canonicalization_is_idempotent(value in arb_json()) {
        // A value holding a refused double has no canonical form to re-read.
        let Ok(once) = to_canonical(&value) else { return Ok(()) };
        let text = std::str::from_utf8(&once).expect("UTF-8");
        let reparsed: Value = serde_json::from_str(text).expect("canonical form is JSON");
        prop_assert_eq!(to_canonical(&reparsed), Ok(once.clone()), "first pass: {}", text);
    }

    #[test]
    fn no_whitespace_outside_strings(value in arb_json()) {
        let Ok(bytes) = to_canonical(&value) else { return Ok(()) };
        prop_assert_eq!(stray_byte(&bytes), None, "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn members_follow_utf16_order(names in prop::collection::btree_set(arb_name(), 0..12)) {
        let object: Map<String, Value> =
            names.iter().enumerate().map(|(i, n)| (n.clone(), Value::from(i))).collect();
        let mut expected_order: Vec<(usize, &String)> = names.iter().enumerate().collect();
        expected_order.sort_by(|(_, a), (_, b)| a.encode_utf16().cmp(b.encode_utf16()));
        let mut expected = String::from("{");
        for (k, (i, name)) in expected_order.into_iter().enumerate() {
            if k > 0 {
                expected.push(',');
            }
            expected.push_str(&serde_json::to_string(name).expect("string"));
            expected.push_str(&format!(":{i}"));
        }
        expected.push('}');
        let actual = to_canonical(&Value::Object(object)).expect("small integers");
        prop_assert_eq!(String::from_utf8(actual).expect("UTF-8"), expected);
    }

    #[test]
    fn strings_escape_like_ecmascript(s in any::<String>()) {
        // serde_json escapes exactly `"`, `\` and U+0000..=U+001F, with the same short forms and
        // lowercase hex, so it serves as an independent oracle for §3.2.2.2.
        let mut out = Vec::new();
        write_string(&s, &mut out);
        prop_assert_eq!(String::from_utf8(out).expect("UTF-8"), serde_json::to_string(&s).expect("string"));
    }
}
