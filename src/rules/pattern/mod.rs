//! A fast path for rule patterns, so that most messages are judged without compiling a regex.
//!
//! Compiling the rules' regexes is most of what a process spends (about 40–1,000 µs each, see
//! `benches/stages.rs`), so patterns written in a common subset of the regex syntax are parsed
//! here, cheaply, into three things:
//!
//! - necessary literals ([`Needle`]): every match contains one of them (ASCII case folded), so a
//!   value containing none cannot match and the pattern is skipped;
//! - a small backtracking program that finds the same leftmost-first match as the `regex` crate
//!   in ASCII text (the usual header, subject and body), with a bounded memory of visited states;
//! - an upper bound of the size the `regex` crate would give the compiled pattern, to check the
//!   size limit without compiling.
//!
//! Anything outside the subset (flags, counted repetition, Unicode classes `\p`, nested classes,
//! class set operations, repetition of what can match empty, ...) is not parsed here: the rule
//! then compiles its regex as before. Text that is not ASCII goes to a regex too, compiled from
//! only the patterns whose literals it contains. So every answer is the regex crate's.

use std::borrow::Cow;
use std::sync::OnceLock;

mod parse;

use parse::*;

/// Limits that keep the work of the fast path small and bounded.
const MAX_DEPTH: usize = 64;
/// Longer patterns are left to the regex crate.
const MAX_SOURCE: usize = 1 << 20;
/// Largest finite set of exact strings tracked for a sub-pattern.
const MAX_EXACT: usize = 64;
/// At most this many (instruction, position) pairs are tracked by one backtracking search;
/// longer texts or programs go to the regex.
const MAX_VISITED: usize = 1 << 23;

/// A string that every match of a pattern contains (compared ignoring ASCII case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Needle {
    /// This text, ASCII lower-cased (its non-ASCII characters are caseless).
    Text(Cow<'static, str>),
    /// Some non-ASCII character (a cased letter whose case variants are all non-ASCII).
    NonAscii,
}

impl Needle {
    fn len(&self) -> usize {
        match self {
            Needle::Text(t) => t.len(),
            Needle::NonAscii => 1,
        }
    }
}

/// A text as the necessary literals are looked for in it: ASCII lower-cased, and for long
/// texts a set of the (hashed) three-byte sequences it holds, which rules most needles out
/// without a search.
#[derive(Debug)]
pub(crate) struct Haystack {
    lower: String,
    ascii: bool,
    trigrams: Option<Box<[u64; TRIGRAM_WORDS]>>,
}

/// Texts at least this long get a trigram set.
const TRIGRAM_MIN: usize = 512;
const TRIGRAM_BITS: u32 = 16;
const TRIGRAM_WORDS: usize = 1 << (TRIGRAM_BITS - 6);

/// The hash of the three bytes in the low 24 bits of `v`.
fn trigram(v: u32) -> usize {
    ((v & 0xFF_FFFF).wrapping_mul(0x9E37_79B1) >> (32 - TRIGRAM_BITS)) as usize
}

/// Each three-byte window of `bytes` as the low 24 bits of a word, in order.
fn windows3(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut v = bytes
        .iter()
        .take(2)
        .fold(0u32, |v, &b| v << 8 | u32::from(b));
    bytes.iter().skip(2).map(move |&b| {
        v = v << 8 | u32::from(b);
        v
    })
}

impl Haystack {
    pub(crate) fn new(text: &str) -> Haystack {
        let lower = text.to_ascii_lowercase();
        let ascii = lower.is_ascii();
        let trigrams = (lower.len() >= TRIGRAM_MIN).then(|| {
            let mut set = Box::new([0u64; TRIGRAM_WORDS]);
            for v in windows3(lower.as_bytes()) {
                let h = trigram(v);
                set[h / 64] |= 1 << (h % 64);
            }
            set
        });
        Haystack {
            lower,
            ascii,
            trigrams,
        }
    }

    pub(crate) fn is_ascii(&self) -> bool {
        self.ascii
    }

    fn contains(&self, needle: &Needle) -> bool {
        match needle {
            Needle::NonAscii => !self.ascii,
            Needle::Text(t) => {
                if let Some(set) = &self.trigrams
                    && !windows3(t.as_bytes()).all(|v| {
                        let h = trigram(v);
                        set[h / 64] >> (h % 64) & 1 == 1
                    })
                {
                    return false;
                }
                self.lower.contains(t.as_ref())
            }
        }
    }
}

/// Zero-width assertions (multi-line mode: `^` and `$` are line anchors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    LineStart,
    LineEnd,
    WordBoundary,
    NotWordBoundary,
}

/// What one character-consuming item contributes to necessary literals.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lit {
    /// Exactly this character (its UTF-8 bytes, ASCII lower-cased).
    One([u8; 4], u8),
    /// Exactly one of these byte strings (ASCII lower-cased).
    Choice(Vec<Vec<u8>>),
    /// A cased non-ASCII letter.
    NonAscii,
    /// Too wide to be a literal (`.`, `\w`, negated classes, ...).
    Wide,
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    /// One character; `ascii` is the set of ASCII bytes it matches (bit b for byte b).
    Char {
        ascii: u128,
        lit: Lit,
        bound: usize,
    },
    Look(Look),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    /// `?` (max one), `*` or `+`.
    Repeat {
        node: Box<Node>,
        min: u8,
        max_one: bool,
        greedy: bool,
    },
    /// A capturing group (it only costs size).
    Capture(Box<Node>),
}

impl Node {
    /// Whether the node can match the empty string.
    fn nullable(&self) -> bool {
        match self {
            Node::Empty | Node::Look(_) => true,
            Node::Char { .. } => false,
            Node::Concat(v) => v.iter().all(Node::nullable),
            Node::Alt(v) => v.iter().any(Node::nullable),
            Node::Repeat { node, min, .. } => *min == 0 || node.nullable(),
            Node::Capture(n) => n.nullable(),
        }
    }
}

/// One backtracking instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inst {
    Set(u128),
    Look(Look),
    /// Try the first target, then the second.
    Split(u32, u32),
    Jmp(u32),
    Match,
}

/// A pattern of the subset, ready for the fast path (build.rs writes the default rules' ones
/// as static data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The backtracking program (empty when `lazy` builds it).
    pub(crate) prog: Cow<'static, [Inst]>,
    /// Every match contains one of these; None when no literal is known.
    pub(crate) needles: Option<Cow<'static, [Needle]>>,
    /// An upper bound of the size the regex crate's compiled form (each of its NFAs) takes.
    pub(crate) bound: usize,
    /// For patterns read at run time (user rules): the program is built when first searched
    /// with, as most patterns are ruled out by their literals.
    pub(crate) lazy: Option<Box<Lazy>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lazy {
    source: Box<str>,
    case_insensitive: bool,
    prog: OnceLock<Vec<Inst>>,
}

/// What a search on ASCII text found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    At(usize, usize),
    Nothing,
    /// The text is too long for the bounded search: use the regex.
    TooLong,
}

impl Pattern {
    /// Parses `source` (one pattern, as written in a rule) for the fast path; None when it is
    /// outside the subset. Whatever is accepted is valid for the regex crate.
    pub(crate) fn parse(source: &str, case_insensitive: bool) -> Option<Pattern> {
        Pattern::parse_with(source, case_insensitive, true)
    }

    /// Like [`Pattern::parse`], leaving the program to be built on first use.
    pub(crate) fn parse_lazy(source: &str, case_insensitive: bool) -> Option<Pattern> {
        Pattern::parse_with(source, case_insensitive, false)
    }

    fn parse_with(source: &str, case_insensitive: bool, program: bool) -> Option<Pattern> {
        if source.len() > MAX_SOURCE {
            return None;
        }
        let mut p = Parser {
            chars: source.chars().collect(),
            pos: 0,
            ci: case_insensitive,
            depth: 0,
        };
        let node = p.alternation()?;
        if p.pos != p.chars.len() {
            return None;
        }
        let mut prog = Vec::new();
        let mut lazy = None;
        if program {
            prog.reserve(p.chars.len() + 8);
            compile(&node, &mut prog)?;
            prog.push(Inst::Match);
        } else {
            // Building it later cannot fail: programs of patterns this short have
            // fewer than 2^32 instructions (a few per character at most).
            lazy = Some(Box::new(Lazy {
                source: source.into(),
                case_insensitive,
                prog: OnceLock::new(),
            }));
        }
        let needles = literals(&node)
            .need
            .filter(|n| !n.is_empty() && n.iter().all(|x| x.len() > 0));
        Some(Pattern {
            prog: Cow::Owned(prog),
            needles: needles.map(Cow::Owned),
            bound: BOUND_BASE + size_bound(&node),
            lazy,
        })
    }

    /// Whether a text may hold a match, by the necessary literals.
    pub(crate) fn may_match(&self, hay: &Haystack) -> bool {
        self.needles
            .as_ref()
            .is_none_or(|ns| ns.iter().any(|n| hay.contains(n)))
    }

    /// The backtracking program (built now for a lazy pattern).
    pub(crate) fn program(&self) -> &[Inst] {
        match &self.lazy {
            None => &self.prog,
            Some(l) => l.prog.get_or_init(|| {
                Pattern::parse(&l.source, l.case_insensitive)
                    .map_or_else(Vec::new, |p| p.prog.into_owned())
            }),
        }
    }

    /// The leftmost-first match in ASCII `hay` that starts at or before `max_start`.
    pub(crate) fn find_ascii(&self, hay: &[u8], max_start: usize) -> Found {
        debug_assert!(hay.is_ascii());
        let prog = self.program();
        if prog.is_empty() {
            return Found::TooLong;
        }
        let n = hay.len();
        let stride = n + 1;
        let Some(cells) = prog.len().checked_mul(stride).filter(|c| *c <= MAX_VISITED) else {
            return Found::TooLong;
        };
        let mut visited = vec![0u64; cells.div_ceil(64)];
        let mut stack: Vec<(u32, usize)> = Vec::new();
        // A start position can only begin a match if the first instruction allows it.
        let first_set = match prog.first() {
            Some(Inst::Set(bits)) => Some(*bits),
            _ => None,
        };
        for start in 0..=n.min(max_start) {
            if let Some(bits) = first_set
                && (start == n || bits >> hay[start] & 1 == 0)
            {
                continue;
            }
            stack.push((0, start));
            while let Some((mut pc, mut pos)) = stack.pop() {
                loop {
                    let cell = pc as usize * stride + pos;
                    let (word, bit) = (cell / 64, 1u64 << (cell % 64));
                    if visited[word] & bit != 0 {
                        break;
                    }
                    visited[word] |= bit;
                    match prog[pc as usize] {
                        Inst::Set(bits) => {
                            if pos < n && bits >> hay[pos] & 1 == 1 {
                                pc += 1;
                                pos += 1;
                            } else {
                                break;
                            }
                        }
                        Inst::Look(look) => {
                            if look_at(look, hay, pos) {
                                pc += 1;
                            } else {
                                break;
                            }
                        }
                        Inst::Split(a, b) => {
                            stack.push((b, pos));
                            pc = a;
                        }
                        Inst::Jmp(a) => pc = a,
                        Inst::Match => return Found::At(start, pos),
                    }
                }
            }
        }
        Found::Nothing
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn look_at(look: Look, hay: &[u8], pos: usize) -> bool {
    match look {
        Look::LineStart => pos == 0 || hay[pos - 1] == b'\n',
        Look::LineEnd => pos == hay.len() || hay[pos] == b'\n',
        Look::WordBoundary | Look::NotWordBoundary => {
            let before = pos > 0 && is_word(hay[pos - 1]);
            let after = pos < hay.len() && is_word(hay[pos]);
            (before != after) == (look == Look::WordBoundary)
        }
    }
}

fn compile(node: &Node, prog: &mut Vec<Inst>) -> Option<()> {
    let here = |prog: &Vec<Inst>| u32::try_from(prog.len()).ok();
    match node {
        Node::Empty => {}
        Node::Char { ascii, .. } => prog.push(Inst::Set(*ascii)),
        Node::Look(l) => prog.push(Inst::Look(*l)),
        Node::Concat(v) => {
            for n in v {
                compile(n, prog)?;
            }
        }
        Node::Capture(n) => compile(n, prog)?,
        Node::Alt(v) => {
            let mut jumps = Vec::new();
            for (i, n) in v.iter().enumerate() {
                if i + 1 < v.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(0, 0));
                    compile(n, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = here(prog)?;
                    prog[split] = Inst::Split(u32::try_from(split + 1).ok()?, next);
                } else {
                    compile(n, prog)?;
                }
            }
            let end = here(prog)?;
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat {
            node,
            min,
            max_one,
            greedy,
        } => {
            let order = |a: u32, b: u32| {
                if *greedy {
                    Inst::Split(a, b)
                } else {
                    Inst::Split(b, a)
                }
            };
            if *min == 1 {
                // X+: X, then loop back or go on.
                let start = here(prog)?;
                compile(node, prog)?;
                let next = here(prog)? + 1;
                prog.push(order(start, next));
            } else if *max_one {
                // X?
                let split = prog.len();
                prog.push(Inst::Split(0, 0));
                compile(node, prog)?;
                let next = here(prog)?;
                prog[split] = order(u32::try_from(split + 1).ok()?, next);
            } else {
                // X*
                let split = prog.len();
                prog.push(Inst::Split(0, 0));
                compile(node, prog)?;
                prog.push(Inst::Jmp(u32::try_from(split).ok()?));
                let next = here(prog)?;
                prog[split] = order(u32::try_from(split + 1).ok()?, next);
            }
        }
    }
    Some(())
}

// --- Necessary literals ---------------------------------------------------------------------

#[derive(Debug, Default)]
struct Info {
    /// Every string the node can match, when that set is small (lower-cased).
    exact: Option<Vec<Vec<u8>>>,
    /// Every match contains one of these.
    need: Option<Vec<Needle>>,
}

/// How good a needle set is: longer shortest needle first, then fewer needles.
fn quality(set: &[Needle]) -> (usize, std::cmp::Reverse<usize>) {
    (
        set.iter().map(Needle::len).min().unwrap_or(0),
        std::cmp::Reverse(set.len()),
    )
}

fn better(a: Option<Vec<Needle>>, b: Option<Vec<Needle>>) -> Option<Vec<Needle>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if quality(&b) > quality(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn to_needles(exact: &[Vec<u8>]) -> Option<Vec<Needle>> {
    if exact.is_empty() || exact.iter().any(Vec::is_empty) {
        return None;
    }
    // Literals are made of whole characters, so they are text.
    let mut v = exact
        .iter()
        .map(|e| {
            String::from_utf8(e.clone())
                .ok()
                .map(|t| Needle::Text(Cow::Owned(t)))
        })
        .collect::<Option<Vec<Needle>>>()?;
    v.dedup();
    Some(v)
}

fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Some(out)
}

fn literals(node: &Node) -> Info {
    match node {
        Node::Empty | Node::Look(_) => Info {
            exact: Some(vec![Vec::new()]),
            need: None,
        },
        Node::Char { lit, .. } => match lit {
            Lit::One(b, n) => {
                let one = vec![b[..usize::from(*n)].to_vec()];
                Info {
                    need: to_needles(&one),
                    exact: Some(one),
                }
            }
            Lit::Choice(c) => Info {
                exact: Some(c.clone()),
                need: to_needles(c),
            },
            Lit::NonAscii => Info {
                exact: None,
                need: Some(vec![Needle::NonAscii]),
            },
            Lit::Wide => Info::default(),
        },
        Node::Capture(n) => literals(n),
        Node::Alt(v) => {
            let infos: Vec<Info> = v.iter().map(literals).collect();
            let mut exact = Some(Vec::new());
            let mut need = Some(Vec::new());
            for i in infos {
                exact = match (exact, i.exact) {
                    (Some(mut all), Some(e)) if all.len() + e.len() <= MAX_EXACT => {
                        for s in e {
                            if !all.contains(&s) {
                                all.push(s);
                            }
                        }
                        Some(all)
                    }
                    _ => None,
                };
                need = match (need, i.need) {
                    (Some(mut all), Some(n)) => {
                        for x in n {
                            if !all.contains(&x) {
                                all.push(x);
                            }
                        }
                        Some(all)
                    }
                    _ => None,
                };
            }
            let from_exact = exact.as_deref().and_then(to_needles);
            Info {
                need: better(need, from_exact),
                exact,
            }
        }
        Node::Repeat {
            node, min, max_one, ..
        } => {
            let inner = literals(node);
            if *min == 1 {
                Info {
                    exact: None,
                    need: inner.need,
                }
            } else if *max_one {
                let exact = inner.exact.map(|mut e| {
                    if !e.contains(&Vec::new()) {
                        e.insert(0, Vec::new());
                    }
                    e
                });
                Info { exact, need: None }
            } else {
                Info::default()
            }
        }
        Node::Concat(v) => {
            let mut best: Option<Vec<Needle>> = None;
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::with_capacity(32)]);
            let mut all_exact = true;
            for n in v {
                match n {
                    // Zero-width: the run goes on.
                    Node::Look(_) | Node::Empty => continue,
                    // One character of a literal: extend the run in place.
                    Node::Char {
                        lit: Lit::One(b, len),
                        ..
                    } => {
                        if let Some(r) = run.as_mut() {
                            for s in r.iter_mut() {
                                s.extend_from_slice(&b[..usize::from(*len)]);
                            }
                            continue;
                        }
                    }
                    _ => {}
                }
                let info = literals(n);
                match info.exact {
                    Some(e) => {
                        run = match run.as_deref().map(|r| product(r, &e)) {
                            Some(Some(p)) => Some(p),
                            // The product grew too large: keep what the run had, start anew.
                            Some(None) => {
                                best = better(best, run.as_deref().and_then(to_needles));
                                all_exact = false;
                                Some(e)
                            }
                            None => Some(e),
                        };
                    }
                    None => {
                        best = better(best, run.as_deref().and_then(to_needles));
                        run = Some(vec![Vec::new()]);
                        all_exact = false;
                    }
                }
                best = better(best, info.need);
            }
            best = better(best, run.as_deref().and_then(to_needles));
            Info {
                exact: if all_exact { run } else { None },
                need: best,
            }
        }
    }
}

// --- Size bound -------------------------------------------------------------------------------
//
// The regex crate refuses a pattern whose compiled NFA (forward or reverse) exceeds its size
// limit. These are upper bounds, per item, of what each NFA spends on it: about twice the
// largest cost measured with regex-automata 0.4 (the tests check the bound against the regex
// crate itself by compiling with the bound as the limit).

const BOUND_BASE: usize = 2_048;
/// Per node: glue states (empty, union, capture).
const BOUND_NODE: usize = 160;
const BOUND_ASCII: usize = 64;
const BOUND_ASCII_LETTER_CI: usize = 400;
const BOUND_NON_ASCII: usize = 600;
const BOUND_WORD: usize = 80_000;
const BOUND_DIGIT: usize = 20_000;
const BOUND_SPACE: usize = 3_200;
/// `.`, negated classes: the non-ASCII part of the class.
const BOUND_WIDE: usize = 2_000;

fn size_bound(node: &Node) -> usize {
    match node {
        Node::Empty | Node::Look(_) => BOUND_NODE,
        Node::Char { bound, .. } => *bound,
        Node::Concat(v) | Node::Alt(v) => BOUND_NODE + v.iter().map(size_bound).sum::<usize>(),
        Node::Repeat { node, .. } | Node::Capture(node) => BOUND_NODE + size_bound(node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::RegexBuilder;

    fn regex(p: &str, ci: bool) -> regex::Regex {
        RegexBuilder::new(&format!("(?:{p})"))
            .case_insensitive(ci)
            .multi_line(true)
            .build()
            .unwrap()
    }

    fn check_same(p: &str, ci: bool, hay: &str) {
        let Some(pat) = Pattern::parse(p, ci) else {
            return;
        };
        let re = regex(p, ci);
        let want = re.find(hay).map(|m| (m.start(), m.end()));
        if want.is_some() {
            assert!(
                pat.may_match(&Haystack::new(hay)),
                "{p:?} on {hay:?}: needles {:?}",
                pat.needles
            );
        }
        if hay.is_ascii() {
            let got = match pat.find_ascii(hay.as_bytes(), usize::MAX) {
                Found::At(s, e) => Some((s, e)),
                Found::Nothing => None,
                Found::TooLong => return,
            };
            assert_eq!(got, want, "{p:?} ci={ci} on {hay:?}");
        }
    }

    #[test]
    fn subset_matches_like_the_regex_crate() {
        let pats = [
            "^message/(global-)?delivery-status$",
            r"(^|[<\s])(mailer-?daemon|postmaster)@",
            r"\bis out of (the )?office\.?\s*$",
            r"^\s*(\[[^\]]*\]\s*)*(re|fwd?|aw)\s*(\[\d+\])?\s*:",
            "a+?b",
            "a*?b",
            "(a|ab)(c|bcd)(d*)",
            r"x\Bb",
            r"[\w.-]+@",
            "k",
            "[^k]",
            r"message delivery to .* failed",
            "(?:ab|a)c?",
        ];
        let hays = [
            "message/delivery-status",
            "Message/Global-Delivery-Status",
            "x <MAILER-DAEMON@example.org>",
            "John is out of the Office.  ",
            "[list] Re [2]: hi",
            "aaab",
            "abcd",
            "xbb ab",
            "foo.bar@example",
            "K",
            "message delivery to a@b failed\nmore",
            "abc",
            "",
        ];
        for p in pats {
            assert!(Pattern::parse(p, true).is_some(), "{p}");
            for h in hays {
                check_same(p, true, h);
                check_same(p, false, h);
            }
        }
    }

    #[test]
    fn outside_the_subset_is_refused() {
        for p in [
            "(?i)a",
            "a{2}",
            r"\p{L}",
            "[[a]]",
            "[a&&b]",
            "(a*)*",
            "a**",
            "*a",
            "^*",
            r"\<",
            "(",
            ")",
            "[]a]",
            "[z-a]",
            r"\e",
            "(?P<x>a)",
            r"\b{start}",
        ] {
            assert!(Pattern::parse(p, true).is_none(), "{p}");
        }
    }

    #[test]
    fn only_kelvin_and_long_s_fold_to_ascii() {
        let re = RegexBuilder::new("^[\\x00-\\x7F]$")
            .case_insensitive(true)
            .build()
            .unwrap();
        let mut buf = [0u8; 4];
        let found: Vec<char> = (0x80..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| re.is_match(c.encode_utf8(&mut buf)))
            .collect();
        assert_eq!(found, vec!['\u{17F}', '\u{212A}']);
    }

    #[test]
    fn caseless_scripts_have_no_case() {
        let re = RegexBuilder::new("^[\\x{3040}-\\x{30FF}\\x{4E00}-\\x{9FFF}\\x{AC00}-\\x{D7A3}]$")
            .case_insensitive(true)
            .build()
            .unwrap();
        let mut buf = [0u8; 4];
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(re.is_match(c.encode_utf8(&mut buf)), caseless(c), "{c:?}");
            if caseless(c) {
                assert!(
                    c.to_lowercase().eq([c]) && c.to_uppercase().eq([c]),
                    "{c:?}"
                );
            }
        }
    }
}
