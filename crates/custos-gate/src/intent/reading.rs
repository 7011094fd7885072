//! Reading a user's request into intents: what they want done (verb), to what (resource
//! kinds, names, quantities), where (environment), and what sensitive things they mention
//! (public access, regulated data).
//!
//! The reading is deliberately simple and predictable — a scan over words, not a parser:
//! 1. The text is cut into sentences (`.`, `!`, `?`, `;`, new lines) and words.
//! 2. Each verb word (or two-word verb: "set up", "tear down", "scale up", …, in any
//!    inflection: "adding", "deleted") starts an intent. Kind words that follow attach to it;
//!    kind words before the sentence's first verb attach to that verb ("old VPCs should be
//!    deleted"). A sentence with kinds and no verb gives an intent without a verb.
//! 3. Kind words after a location or purpose preposition (`to`, `in`, `into`, `on`, `from`,
//!    `for`, `of`, …) name context, not the object ("add instances *to the ML segment*", "a
//!    database *for the API*"): they are ignored until `with`, `and`, `plus`, a comma or the
//!    next verb. `to` followed by a number is a target ("scale to 10 nodes"), not a location;
//!    `of` after a number is not a preposition ("a couple of servers").
//! 4. A number ("3", "three", "a couple of", "a dozen") within three words before a kind
//!    word is that kind's quantity. "a"/"an" are not quantities.
//! 5. Names: a word that is quoted or back-ticked, or that contains `-` or `_` and a digit or
//!    an underscore (`dev-vpc-1`, `ml_artifacts`), or a hyphenated word right next to a kind
//!    word ("the `ml-artifacts` bucket") is a resource name — unless it is an environment
//!    (`nonprod-ml`), an address or CIDR, a hyphenated verb ("set-up"), or follows a location
//!    preposition. A name contributes at most one kind: its last kind word (`dev-vpc-1` →
//!    vpc).
//! 6. A kind naming a whole environment ("environments", "stack", "everything") counts only
//!    when the intent names no concrete kind ("add instances in the dev environment" is about
//!    instances).
//! 7. The environment of each intent is read from its own words with
//!    [`crate::plan::environment::read_text`]; the request's as a whole likewise.

use std::collections::BTreeSet;

use super::vocabulary::{self, Family, Kind};
use crate::plan::Verb;
use crate::plan::environment::{self, Reading};

/// A resource kind the request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindMention {
    /// The family.
    pub family: Family,
    /// The countable unit, when the word names one (`vpc`, `instance`).
    pub unit: Option<&'static str>,
    /// The word as the request wrote it (lower case; two words joined by a space).
    pub word: String,
    /// How many, when the request says.
    pub quantity: Option<u64>,
}

/// One thing the user asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// What to do; `None` when the sentence has no verb the reader knows.
    pub verb: Option<Verb>,
    /// The verb as written (lower case).
    pub verb_word: Option<String>,
    /// The resource kinds it names (the object, not the context).
    pub kinds: Vec<KindMention>,
    /// The kinds its context names (after a location preposition: "add a rule *to the
    /// security group*"); adding to or removing from them updates them.
    pub context: Vec<KindMention>,
    /// Resource names it names (lower case).
    pub names: Vec<String>,
    /// The environment its own words name.
    pub environment: Option<Reading>,
}

/// What a request says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestReading {
    /// Its intents, in order.
    pub intents: Vec<Intent>,
    /// The environment the request as a whole names.
    pub environment: Option<Reading>,
    /// Whether it mentions public or internet access (`public`, `internet`, `0.0.0.0/0`, …).
    pub public_access: bool,
    /// Regulated data classes it mentions (`pci` for "payments", "cardholder"; `phi` and
    /// `hipaa` for "health", "patient", …).
    pub data_classes: BTreeSet<String>,
}

/// Verb words (base form) and what they ask for.
const VERBS: &[(&str, Verb)] = &[
    ("add", Verb::Create),
    ("create", Verb::Create),
    ("provision", Verb::Create),
    ("launch", Verb::Create),
    ("deploy", Verb::Create),
    ("build", Verb::Create),
    ("establish", Verb::Create),
    ("allocate", Verb::Create),
    ("install", Verb::Create),
    ("introduce", Verb::Create),
    ("setup", Verb::Create),
    ("update", Verb::Update),
    ("modify", Verb::Update),
    ("change", Verb::Update),
    ("scale", Verb::Update),
    ("resize", Verb::Update),
    ("upgrade", Verb::Update),
    ("downgrade", Verb::Update),
    ("increase", Verb::Update),
    ("decrease", Verb::Update),
    ("expand", Verb::Update),
    ("extend", Verb::Update),
    ("grow", Verb::Update),
    ("shrink", Verb::Update),
    ("reduce", Verb::Update),
    ("adjust", Verb::Update),
    ("reconfigure", Verb::Update),
    ("configure", Verb::Update),
    ("patch", Verb::Update),
    ("edit", Verb::Update),
    ("tune", Verb::Update),
    ("raise", Verb::Update),
    ("bump", Verb::Update),
    ("restart", Verb::Update),
    ("reboot", Verb::Update),
    ("open", Verb::Update),
    ("allow", Verb::Update),
    ("expose", Verb::Update),
    ("grant", Verb::Update),
    ("revoke", Verb::Update),
    ("enable", Verb::Update),
    ("disable", Verb::Update),
    ("attach", Verb::Update),
    ("detach", Verb::Update),
    ("rename", Verb::Update),
    ("fix", Verb::Update),
    ("delete", Verb::Delete),
    ("remove", Verb::Delete),
    ("destroy", Verb::Delete),
    ("terminate", Verb::Delete),
    ("decommission", Verb::Delete),
    ("deprovision", Verb::Delete),
    ("drop", Verb::Delete),
    ("retire", Verb::Delete),
    ("purge", Verb::Delete),
    ("cleanup", Verb::Delete),
    ("clean", Verb::Delete),
    ("teardown", Verb::Delete),
    ("erase", Verb::Delete),
    ("wipe", Verb::Delete),
    ("replace", Verb::Replace),
    ("rotate", Verb::Replace),
    ("recreate", Verb::Replace),
    ("rebuild", Verb::Replace),
    ("redeploy", Verb::Replace),
    ("regenerate", Verb::Replace),
    ("reissue", Verb::Replace),
    ("renew", Verb::Replace),
    ("reprovision", Verb::Replace),
    ("migrate", Verb::Replace),
    ("move", Verb::Replace),
    ("swap", Verb::Replace),
    ("reinstall", Verb::Replace),
];

/// Two-word verbs: first word (base form), second word, verb.
const PHRASAL_VERBS: &[(&str, &str, Verb)] = &[
    ("set", "up", Verb::Create),
    ("spin", "up", Verb::Create),
    ("stand", "up", Verb::Create),
    ("bring", "up", Verb::Create),
    ("roll", "out", Verb::Create),
    ("scale", "up", Verb::Update),
    ("scale", "down", Verb::Update),
    ("scale", "out", Verb::Update),
    ("scale", "in", Verb::Update),
    ("roll", "back", Verb::Update),
    ("tear", "down", Verb::Delete),
    ("shut", "down", Verb::Delete),
    ("clean", "up", Verb::Delete),
    ("wind", "down", Verb::Delete),
    ("get", "rid", Verb::Delete),
];

/// Words that end a pending quantity and, for the locative ones, start context.
const PREPOSITIONS: &[&str] = &[
    "to",
    "in",
    "into",
    "on",
    "onto",
    "inside",
    "within",
    "from",
    "at",
    "under",
    "behind",
    "for",
    "across",
    "via",
    "through",
    "near",
    "beside",
    "alongside",
    "of",
];

/// Words after which kinds are objects again.
const OBJECT_RESUMERS: &[&str] = &["with", "and", "plus", "including", "or"];

/// Number words.
const NUMBERS: &[(&str, u64)] = &[
    ("one", 1),
    ("single", 1),
    ("two", 2),
    ("couple", 2),
    ("pair", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("dozen", 12),
    ("fifteen", 15),
    ("twenty", 20),
    ("thirty", 30),
    ("fifty", 50),
    ("hundred", 100),
];

/// Words that mean public or internet access.
const PUBLIC_WORDS: &[&str] = &[
    "public",
    "publicly",
    "internet",
    "world",
    "everyone",
    "anywhere",
    "external",
    "externally",
];

/// Words that name health data (PHI, HIPAA).
const HEALTH_WORDS: &[&str] = &[
    "phi",
    "hipaa",
    "health",
    "healthcare",
    "medical",
    "patient",
    "patients",
    "clinical",
];

/// Regulated data classes and the words that mention them.
const DATA_CLASS_WORDS: &[(&str, &[&str])] = &[
    (
        "pci",
        &[
            "pci",
            "payment",
            "payments",
            "card",
            "cards",
            "cardholder",
            "cde",
            "dss",
        ],
    ),
    ("phi", HEALTH_WORDS),
    ("hipaa", HEALTH_WORDS),
];

/// Hyphenated words that are verbs, not names.
const HYPHENATED_VERBS: &[&str] = &[
    "set-up",
    "spin-up",
    "tear-down",
    "clean-up",
    "scale-up",
    "scale-down",
    "scale-out",
    "scale-in",
    "roll-out",
    "roll-back",
    "shut-down",
];

/// How many words may stand between a number and the kind it counts.
const QUANTITY_REACH: usize = 3;

/// One word of a sentence, split to the letters and digits the scan reads.
#[derive(Debug)]
struct Token {
    /// Lower case, letters and digits only.
    text: String,
    /// Index into the sentence's names when the token is part of one.
    name: Option<usize>,
    /// Whether the word it belongs to ends with a comma (a clause boundary).
    ends_clause: bool,
}

/// A name candidate found in a sentence.
#[derive(Debug)]
struct NameCandidate {
    text: String,
    /// Whether it follows a location preposition (then it is context).
    locative: bool,
}

/// Reads a request.
pub fn read_request(text: &str) -> RequestReading {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let public_access = words.iter().any(|w| PUBLIC_WORDS.contains(w))
        || lower.contains("0.0.0.0/0")
        || lower.contains("::/0");
    let data_classes = DATA_CLASS_WORDS
        .iter()
        .filter(|(_, mentions)| words.iter().any(|w| mentions.contains(w)))
        .map(|(class, _)| (*class).to_owned())
        .collect();
    let mut intents = Vec::new();
    for sentence in sentences(text) {
        read_sentence(sentence, &mut intents);
    }
    RequestReading {
        intents,
        environment: environment::read_text(text),
        public_access,
        data_classes,
    }
}

/// Cuts text into sentences: at `!`, `?`, `;`, new lines, and at a `.` followed by
/// whitespace or the end (so `g4dn.xlarge` and `10.0.0.0/8` stay whole).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = match c {
            '!' | '?' | ';' | '\n' | '\r' => true,
            '.' => chars.peek().is_none_or(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if boundary {
            if let Some(sentence) = text.get(start..i) {
                out.push(sentence);
            }
            start = i + c.len_utf8();
        }
    }
    if let Some(rest) = text.get(start..) {
        out.push(rest);
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Characters that may surround a word without being part of it.
fn is_wrapping(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '`'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '<'
            | '>'
            | ','
            | ':'
            | '.'
            | '“'
            | '”'
            | '‘'
            | '’'
            | '«'
            | '»'
    )
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '`' | '“' | '”' | '‘' | '’' | '«' | '»')
}

/// Letters-and-digits tokens of a word, lower case.
fn split_tokens(word: &str) -> Vec<String> {
    word.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether a word (wrapping removed, lower case) has the shape of a resource name. `strong`:
/// quoted, or holds a digit or an underscore; otherwise it must stand next to a kind word.
fn name_shape(word: &str, quoted: bool) -> Option<bool> {
    if !word.chars().any(char::is_alphabetic) {
        return None;
    }
    if HYPHENATED_VERBS.contains(&word) {
        return None;
    }
    // A word that is only an environment (`nonprod-ml`, `non-prod`) is not a name.
    if environment::read_text(word)
        .is_some_and(|r| r.word == word.replace('_', "-") || r.word == word)
    {
        return None;
    }
    // Addresses, CIDRs, instance types, domains: dots without underscores are not names.
    if word.contains('.') && !word.contains('_') && !quoted {
        return None;
    }
    if quoted {
        return Some(true);
    }
    if !word.contains('-') && !word.contains('_') {
        return None;
    }
    Some(word.contains('_') || word.chars().any(|c| c.is_ascii_digit()))
}

/// Splits a sentence into tokens, finding its name candidates.
fn tokenize(sentence: &str) -> (Vec<Token>, Vec<NameCandidate>) {
    struct Word {
        bare: String,
        quoted: bool,
        ends_clause: bool,
        tokens: Vec<String>,
    }
    let words: Vec<Word> = sentence
        .split_whitespace()
        .map(|raw| {
            let quoted = raw.starts_with(is_quote) && raw.len() > 1;
            let bare = raw.trim_matches(is_wrapping).to_lowercase();
            let tokens = split_tokens(&bare);
            Word {
                bare,
                quoted,
                ends_clause: raw.ends_with([',', ':']),
                tokens,
            }
        })
        .filter(|w| !w.tokens.is_empty())
        .collect();
    let names_a_kind = |w: &Word| {
        w.tokens
            .iter()
            .any(|t| vocabulary::word_kind(t).is_some_and(|k| k.family != Family::Any))
    };
    let mut tokens = Vec::new();
    let mut names = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let strength = name_shape(&word.bare, word.quoted);
        let is_name = match strength {
            Some(true) => true,
            Some(false) => {
                let before = i.checked_sub(1).and_then(|j| words.get(j));
                let after = words.get(i + 1);
                before.is_some_and(|w| names_a_kind(w) && w.tokens.len() == 1)
                    || after.is_some_and(|w| names_a_kind(w) && w.tokens.len() == 1)
            }
            None => false,
        };
        let name = if is_name {
            let locative = i
                .checked_sub(1)
                .and_then(|j| words.get(j))
                .is_some_and(|w| {
                    w.tokens.len() == 1
                        && w.tokens.iter().any(|t| PREPOSITIONS.contains(&t.as_str()))
                })
                || i.checked_sub(2)
                    .and_then(|j| words.get(j))
                    .zip(i.checked_sub(1).and_then(|j| words.get(j)))
                    .is_some_and(|(p, the)| {
                        p.tokens.len() == 1
                            && p.tokens.iter().any(|t| PREPOSITIONS.contains(&t.as_str()))
                            && matches!(the.bare.as_str(), "the" | "a" | "an" | "our" | "my")
                    });
            names.push(NameCandidate {
                text: word.bare.clone(),
                locative,
            });
            Some(names.len() - 1)
        } else {
            None
        };
        let last = word.tokens.len().saturating_sub(1);
        for (j, text) in word.tokens.iter().enumerate() {
            tokens.push(Token {
                text: text.clone(),
                name,
                ends_clause: word.ends_clause && j == last,
            });
        }
    }
    (tokens, names)
}

/// The base forms a word may be an inflection of (`adding` → `add`, `created` → `create`,
/// `dropped` → `drop`, `deletes` → `delete`), the word itself first.
fn base_forms(word: &str) -> Vec<String> {
    let mut forms: Vec<String> = vec![word.to_owned()];
    for suffix in ["ing", "ed"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 2
        {
            forms.push(stem.to_owned());
            forms.push(format!("{stem}e"));
            let mut chars = stem.chars().rev();
            if let (Some(a), Some(b)) = (chars.next(), chars.next())
                && a == b
                && let Some(undoubled) = stem.get(..stem.len() - a.len_utf8())
            {
                forms.push(undoubled.to_owned());
            }
        }
    }
    for suffix in ["es", "s", "d"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 2
        {
            forms.push(stem.to_owned());
        }
    }
    forms
}

/// The verb a single word names, in any common inflection, with its base form.
fn verb_of_word(word: &str) -> Option<(Verb, &'static str)> {
    base_forms(word).iter().find_map(|form| {
        VERBS
            .iter()
            .find(|(base, _)| base == form)
            .map(|(base, verb)| (*verb, *base))
    })
}

/// The two-word verb `first second` names ("setting up" → create).
fn phrasal_verb(first: &str, second: &str) -> Option<(Verb, String)> {
    let forms = base_forms(first);
    PHRASAL_VERBS
        .iter()
        .find(|(a, b, _)| *b == second && forms.iter().any(|f| f == a))
        .map(|(a, b, verb)| (*verb, format!("{a} {b}")))
}

/// The number a word names.
fn number_of_word(word: &str) -> Option<u64> {
    if word.chars().all(|c| c.is_ascii_digit()) {
        return word.parse().ok();
    }
    NUMBERS.iter().find(|(w, _)| *w == word).map(|(_, n)| *n)
}

/// An intent being assembled.
#[derive(Default)]
struct Building {
    verb: Option<(Verb, String)>,
    kinds: Vec<KindMention>,
    context: Vec<KindMention>,
    /// Kinds named only inside names (used when no other kind is named).
    name_kinds: Vec<KindMention>,
    names: Vec<String>,
    words: Vec<String>,
}

impl Building {
    fn finish(mut self) -> Option<Intent> {
        if self.kinds.is_empty() {
            self.kinds = std::mem::take(&mut self.name_kinds);
        }
        // A whole environment counts only when nothing concrete is named.
        if self.kinds.iter().any(|k| k.family != Family::Any) {
            self.kinds.retain(|k| k.family != Family::Any);
        }
        if self.verb.is_none() && self.kinds.is_empty() && self.names.is_empty() {
            return None;
        }
        let environment = environment::read_text(&self.words.join(" "));
        let (verb, verb_word) = match self.verb {
            Some((verb, word)) => (Some(verb), Some(word)),
            None => (None, None),
        };
        Some(Intent {
            verb,
            verb_word,
            kinds: self.kinds,
            context: self.context,
            names: self.names,
            environment,
        })
    }

    fn add_kind(&mut self, mention: KindMention, adjacent: bool) {
        // "gpu instances": adjacent words of one family are one mention.
        if adjacent
            && let Some(previous) = self.kinds.last_mut()
            && previous.family == mention.family
        {
            previous.word = format!("{} {}", previous.word, mention.word);
            previous.unit = mention.unit.or(previous.unit);
            previous.quantity = previous.quantity.or(mention.quantity);
            return;
        }
        self.kinds.push(mention);
    }
}

/// Reads one sentence, appending its intents.
fn read_sentence(sentence: &str, intents: &mut Vec<Intent>) {
    let (tokens, names) = tokenize(sentence);
    let mut current = Building::default();
    // Whether `current` has its verb yet: kinds before the first verb wait for it.
    let mut context = false;
    let mut pending_quantity: Option<(u64, usize)> = None;
    let mut last_was_kind = false;
    let mut seen_name: Option<usize> = None;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        let text = token.text.as_str();
        let next = tokens.get(i + 1);
        current.words.push(text.to_owned());
        // Names: handled once, at their first token.
        if let Some(n) = token.name {
            if seen_name != Some(n)
                && let Some(candidate) = names.get(n)
            {
                seen_name = Some(n);
                if !candidate.locative && !context {
                    current.names.push(candidate.text.clone());
                    let kind = split_tokens(&candidate.text)
                        .iter()
                        .rev()
                        .find_map(|t| vocabulary::word_kind(t).map(|k| (t.clone(), k)));
                    if let Some((word, kind)) = kind {
                        current.name_kinds.push(mention(kind, word, None));
                    }
                }
            }
            last_was_kind = false;
            if token.ends_clause {
                context = false;
            }
            i += 1;
            continue;
        }
        // Verbs, two words first.
        let phrasal = next.and_then(|n| phrasal_verb(text, &n.text));
        let verb = phrasal.clone().or_else(|| {
            verb_of_word(text)
                .filter(|_| !(text == "change" && next.is_some_and(|n| n.text == "ticket")))
                .map(|(verb, base)| (verb, base.to_owned()))
        });
        if let Some((verb, word)) = verb {
            if current.verb.is_some() {
                let done = std::mem::take(&mut current);
                intents.extend(done.finish());
            }
            current.verb = Some((verb, word));
            context = false;
            pending_quantity = None;
            last_was_kind = false;
            i += if phrasal.is_some() { 2 } else { 1 };
            continue;
        }
        // Kinds, two words first.
        let phrase = next.and_then(|n| vocabulary::phrase_kind(text, &n.text).map(|k| (k, n)));
        let (kind, word, width) = match phrase {
            Some((kind, n)) => (kind, format!("{text} {}", n.text), 2),
            None => (vocabulary::word_kind(text), text.to_owned(), 1),
        };
        if width == 2 && kind.is_none() {
            // A phrase that names nothing ("machine learning").
            last_was_kind = false;
            i += 2;
            continue;
        }
        if let Some(kind) = kind {
            if context {
                current.context.push(mention(kind, word, None));
            } else {
                let quantity = pending_quantity.take().map(|(n, _)| n);
                current.add_kind(mention(kind, word, quantity), last_was_kind);
            }
            last_was_kind = !context;
            if tokens.get(i + width - 1).is_some_and(|t| t.ends_clause) {
                context = false;
            }
            i += width;
            continue;
        }
        last_was_kind = false;
        if let Some(n) = number_of_word(text) {
            pending_quantity = Some((n, 0));
        } else if text == "of" && pending_quantity.is_some() {
            // "a couple of servers", "three of the VPCs": still the object.
        } else if PREPOSITIONS.contains(&text) {
            pending_quantity = None;
            let target = text == "to" && next.is_some_and(|n| number_of_word(&n.text).is_some());
            if !target {
                context = true;
            }
        } else if OBJECT_RESUMERS.contains(&text) {
            pending_quantity = None;
            context = false;
        } else if let Some((n, distance)) = pending_quantity {
            pending_quantity = (distance < QUANTITY_REACH).then_some((n, distance + 1));
        }
        if token.ends_clause {
            context = false;
            pending_quantity = None;
        }
        i += 1;
    }
    intents.extend(current.finish());
}

fn mention(kind: Kind, word: String, quantity: Option<u64>) -> KindMention {
    KindMention {
        family: kind.family,
        unit: kind.unit,
        word,
        quantity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Intents as `verb: family(word)×quantity, …; names` strings, for compact tables.
    fn summary(text: &str) -> Vec<String> {
        read_request(text)
            .intents
            .iter()
            .map(|intent| {
                let verb = intent
                    .verb
                    .map(|v| format!("{v:?}").to_lowercase())
                    .unwrap_or_else(|| "none".to_owned());
                let kinds: Vec<String> = intent
                    .kinds
                    .iter()
                    .map(|k| {
                        let quantity = k.quantity.map(|q| format!("×{q}")).unwrap_or_default();
                        format!("{}({}){quantity}", k.family.as_str(), k.word)
                    })
                    .collect();
                let names = if intent.names.is_empty() {
                    String::new()
                } else {
                    format!("; {}", intent.names.join(","))
                };
                let env = intent
                    .environment
                    .as_ref()
                    .map(|e| format!(" @{}", e.word))
                    .unwrap_or_default();
                format!("{verb}: {}{names}{env}", kinds.join(", "))
            })
            .collect()
    }

    #[test]
    fn requests_read_into_intents() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Add a new microsegment for machine learning workloads with GPU instances",
                &["create: network(microsegment), compute(gpu instances)"],
            ),
            (
                "Clean up old dev environments",
                &["delete: any(environments) @dev"],
            ),
            (
                "Scale up our production API to handle Black Friday traffic",
                &["update: service(api) @production"],
            ),
            (
                "Delete the three dev VPCs",
                &["delete: network(vpcs)×3 @dev"],
            ),
            ("add 3 GPU instances", &["create: compute(gpu instances)×3"]),
            (
                "Create a bucket and delete the old database",
                &["create: storage(bucket)", "delete: database(database)"],
            ),
            (
                "Old staging VPCs should be removed.",
                &["delete: network(vpcs) @staging"],
            ),
            (
                "Add two instances to the ML segment",
                &["create: compute(instances)×2"],
            ),
            (
                "Scale the workers to 10 nodes",
                &["update: compute(workers), compute(nodes)×10"],
            ),
            (
                "delete dev-vpc-1",
                &["delete: network(vpc); dev-vpc-1 @dev"],
            ),
            (
                "Delete the ml-artifacts bucket",
                &["delete: storage(bucket); ml-artifacts"],
            ),
            (
                "Rotate the security group rules of the api",
                &["replace: firewall(security group rules)"],
            ),
            (
                "Add instances in the dev environment",
                &["create: compute(instances) @dev"],
            ),
            ("GPU machines for research", &["none: compute(gpu)"]),
            ("hello there", &[]),
            ("", &[]),
            (
                "Set up a k8s cluster in nonprod-ml",
                &["create: cluster(k8s cluster) @nonprod"],
            ),
            (
                "Open port 443 on the production firewall to the internet",
                &["update: firewall(port) @production"],
            ),
            (
                "We deleted nothing; now spin up a couple of servers",
                &["delete: ", "create: compute(servers)×2"],
            ),
            ("Update the change ticket", &["update: "]),
            ("Setting up two VMs", &["create: compute(vms)×2"]),
        ];
        for (text, expected) in cases {
            assert_eq!(summary(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn sensitive_mentions() {
        let reading = read_request("Open the payments firewall to 0.0.0.0/0");
        assert!(reading.public_access);
        assert_eq!(reading.data_classes, BTreeSet::from(["pci".to_owned()]));
        let reading = read_request("Add GPU instances");
        assert!(!reading.public_access);
        assert!(reading.data_classes.is_empty());
    }

    #[test]
    fn verbs_in_any_inflection() {
        for (word, verb) in [
            ("adding", Some(Verb::Create)),
            ("created", Some(Verb::Create)),
            ("scaling", Some(Verb::Update)),
            ("dropped", Some(Verb::Delete)),
            ("deletes", Some(Verb::Delete)),
            ("rotating", Some(Verb::Replace)),
            ("setting", None),
            ("traffic", None),
            ("addresses", None),
        ] {
            assert_eq!(verb_of_word(word).map(|(v, _)| v), verb, "{word}");
        }
    }
}
