//! A one-pass, allocation-light check that bytes are exactly the canonical form of an entry,
//! for full verification, where parsing every entry into owned values and re-rendering it was
//! most of the cost.
//!
//! [`check_entry`] accepts exactly the byte strings [`Entry::from_canonical`] accepts (a
//! property test holds the two to each other on valid entries and on every single-bit flip of
//! them) and returns the two fields verification needs: `seq` and `prev_hash`.
//!
//! [`Entry::from_canonical`]: crate::entry::Entry::from_canonical

use crate::merkle::Hash;

/// What verification needs from an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHead {
    /// The entry's `seq` field.
    pub seq: u64,
    /// The entry's `prev_hash` field, decoded.
    pub prev_hash: Hash,
}

/// How deep `data` may nest; entry validation never allows more, whatever the configuration.
pub const MAX_DEPTH: usize = 64;
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Seq,
    Outcome,
    Severity,
    PrevHash,
    Data,
    Request,
}

/// The members of an entry in canonical order: (name, kind, required).
const MEMBERS: [(&str, Kind, bool); 19] = [
    ("action", Kind::String, true),
    ("actor", Kind::String, true),
    ("client_ts", Kind::String, false),
    ("data", Kind::Data, true),
    ("event_type", Kind::String, true),
    ("id", Kind::String, true),
    ("matched_rule", Kind::String, false),
    ("outcome", Kind::Outcome, true),
    ("policy_decision", Kind::String, false),
    ("prev_hash", Kind::PrevHash, true),
    ("request", Kind::Request, false),
    ("resource", Kind::String, false),
    ("seq", Kind::Seq, true),
    ("session_id", Kind::String, false),
    ("severity", Kind::Severity, true),
    ("target", Kind::String, false),
    ("tenant", Kind::String, true),
    ("trace_id", Kind::String, false),
    ("ts", Kind::String, true),
];

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

type Check<T> = Result<T, String>;

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Check<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", c as char, self.i))
        }
    }

    fn eat(&mut self, lit: &[u8]) -> Check<()> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("unexpected bytes at {}", self.i))
        }
    }

    /// A canonical string; returns its raw (escaped) body.
    fn string(&mut self) -> Check<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated string".into());
            };
            match c {
                b'"' => break,
                b'\\' => {
                    let esc = self.b.get(self.i + 1).copied();
                    match esc {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self
                                .b
                                .get(self.i + 2..self.i + 6)
                                .ok_or("short \\u escape")?;
                            // Canonical JCS uses \u only for controls without a short form,
                            // lowercase hex.
                            let v = std::str::from_utf8(hex)
                                .ok()
                                .filter(|h| {
                                    h.bytes()
                                        .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
                                })
                                .and_then(|h| u16::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return Err(format!("non-canonical escape at byte {}", self.i));
                            }
                            self.i += 6;
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                0x00..=0x1f => return Err(format!("raw control character at byte {}", self.i)),
                _ => self.i += 1,
            }
        }
        let body = &self.b[start..self.i];
        self.i += 1;
        Ok(body)
    }

    /// Is raw key `a` strictly before raw key `b` in UTF-16 code-unit order? Plain ASCII keys
    /// (the usual case) compare as bytes; anything else is decoded.
    fn key_less(a: &[u8], b: &[u8]) -> Check<bool> {
        let plain = |k: &[u8]| k.iter().all(|&c| c.is_ascii() && c != b'\\');
        if plain(a) && plain(b) {
            return Ok(a < b);
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        Self::utf16(a, &mut x)?;
        Self::utf16(b, &mut y)?;
        Ok(x < y)
    }

    /// Decodes an escaped string body into UTF-16 code units (for key ordering).
    fn utf16(body: &[u8], out: &mut Vec<u16>) -> Check<()> {
        out.clear();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'\\' {
                let unit = match body[i + 1] {
                    b'"' => 0x22,
                    b'\\' => 0x5c,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => 0x0a,
                    b'r' => 0x0d,
                    b't' => 0x09,
                    _ => {
                        let h =
                            std::str::from_utf8(&body[i + 2..i + 6]).map_err(|e| e.to_string())?;
                        let v = u16::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                        i += 6;
                        out.push(v);
                        continue;
                    }
                };
                out.push(unit);
                i += 2;
            } else {
                let run_end = body[i..]
                    .iter()
                    .position(|&c| c == b'\\')
                    .map_or(body.len(), |p| i + p);
                let s = std::str::from_utf8(&body[i..run_end]).map_err(|e| e.to_string())?;
                out.extend(s.encode_utf16());
                i = run_end;
            }
        }
        Ok(())
    }

    /// After a member or element: `,` (more follow) or `close` (done).
    fn list_end(&mut self, close: u8) -> Check<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            _ => Err(format!(
                "expected `,` or `{}` at byte {}",
                close as char, self.i
            )),
        }
    }

    fn number(&mut self) -> Check<()> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
        let value: f64 = text
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        if !json_number_grammar(text) {
            return Err(format!("`{text}` is not a JSON number"));
        }
        let mut buf = ryu_js::Buffer::new();
        if buf.format(value) != text {
            return Err(format!("`{text}` is not in canonical number form"));
        }
        let integer_form = !text.contains(['.', 'e']);
        if integer_form && value.abs() > MAX_SAFE_INTEGER {
            return Err(format!("`{text}` is outside the I-JSON safe integer range"));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Check<()> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err("nested too deeply".into());
                }
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    if self.list_end(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.eat(b"true"),
            Some(b'f') => self.eat(b"false"),
            Some(b'n') => self.eat(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(format!("expected a value at byte {}", self.i)),
        }
    }

    fn object(&mut self, depth: usize) -> Check<()> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<&'a [u8]> = None;
        loop {
            let key = self.string()?;
            if let Some(p) = prev
                && !Self::key_less(p, key)?
            {
                return Err(format!(
                    "object keys not in canonical order at byte {}",
                    self.i
                ));
            }
            prev = Some(key);
            self.expect(b':')?;
            self.value(depth)?;
            if self.list_end(b'}')? {
                return Ok(());
            }
        }
    }
}

fn json_number_grammar(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

/// Checks that `bytes` are exactly the canonical form of a ledger entry.
pub fn check_entry(bytes: &[u8]) -> Result<EntryHead, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut c = Cursor { b: bytes, i: 0 };
    c.expect(b'{')?;
    let mut next_member = 0usize;
    let mut seq = None;
    let mut prev_hash = None;
    loop {
        let key = c.string()?;
        let pos = MEMBERS[next_member..]
            .iter()
            .position(|(name, _, _)| name.as_bytes() == key)
            .ok_or_else(|| {
                format!(
                    "member `{}` is unknown, repeated or out of canonical order",
                    String::from_utf8_lossy(key)
                )
            })?;
        if let Some((name, _, _)) = MEMBERS[next_member..next_member + pos].iter().find(|m| m.2) {
            return Err(format!("required member `{name}` is missing"));
        }
        let (_, kind, _) = MEMBERS[next_member + pos];
        next_member += pos + 1;
        c.expect(b':')?;
        match kind {
            Kind::String => {
                c.string()?;
            }
            Kind::Outcome => {
                let v = c.string()?;
                if !matches!(v, b"success" | b"failure" | b"denied" | b"error") {
                    return Err("unknown outcome".into());
                }
            }
            Kind::Severity => {
                let v = c.string()?;
                if !matches!(v, b"info" | b"low" | b"medium" | b"high" | b"critical") {
                    return Err("unknown severity".into());
                }
            }
            Kind::PrevHash => {
                let v = c.string()?;
                if v.len() != 64
                    || !v
                        .iter()
                        .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(x))
                {
                    return Err("prev_hash is not 64 lowercase hex digits".into());
                }
                // Digits were checked above, so decoding cannot fail.
                let nibble = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
                let mut h = [0u8; 32];
                for (byte, pair) in h.iter_mut().zip(v.chunks_exact(2)) {
                    *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
                }
                prev_hash = Some(h);
            }
            Kind::Seq => {
                let start = c.i;
                while c.peek().is_some_and(|x| x.is_ascii_digit()) {
                    c.i += 1;
                }
                let digits = &bytes[start..c.i];
                if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
                    return Err("seq is not a canonical unsigned integer".into());
                }
                let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
                seq = Some(text.parse::<u64>().map_err(|e| format!("seq: {e}"))?);
            }
            Kind::Data => c.object(1)?,
            Kind::Request => {
                c.expect(b'{')?;
                let mut allowed: &[&[u8]] = &[b"ip", b"user_agent"];
                if c.peek() == Some(b'}') {
                    c.i += 1;
                } else {
                    loop {
                        let k = c.string()?;
                        let p = allowed
                            .iter()
                            .position(|a| *a == k)
                            .ok_or("request has an unknown, repeated or misordered member")?;
                        allowed = &allowed[p + 1..];
                        c.expect(b':')?;
                        c.string()?;
                        if c.list_end(b'}')? {
                            break;
                        }
                    }
                }
            }
        }
        if c.list_end(b'}')? {
            break;
        }
    }
    if let Some((name, _, _)) = MEMBERS[next_member..].iter().find(|m| m.2) {
        return Err(format!("required member `{name}` is missing"));
    }
    if c.i != bytes.len() {
        return Err("bytes after the entry".into());
    }
    match (seq, prev_hash) {
        (Some(seq), Some(prev_hash)) => Ok(EntryHead { seq, prev_hash }),
        _ => Err("seq or prev_hash missing".into()),
    }
}
