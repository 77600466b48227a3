//! The parser of the fast subset: pattern text to the syntax tree ([`Node`]) that the rest of
//! `pattern` compiles, mines for literals and bounds.

use super::*;

pub(super) struct Parser {
    pub(super) chars: Vec<char>,
    pub(super) pos: usize,
    /// Case-insensitive.
    pub(super) ci: bool,
    pub(super) depth: usize,
}

pub(super) const fn ascii_set(lo: u8, hi: u8) -> u128 {
    let mut set = 0u128;
    let mut b = lo;
    while b <= hi {
        set |= 1 << b;
        b += 1;
    }
    set
}

/// `\s`, `\d` and `\w` (Unicode classes) restricted to ASCII.
pub(super) const SPACE: u128 = ascii_set(b'\t', b'\r') | 1 << b' ';
pub(super) const DIGIT: u128 = ascii_set(b'0', b'9');
pub(super) const WORD: u128 = DIGIT | ascii_set(b'a', b'z') | ascii_set(b'A', b'Z') | 1 << b'_';

/// The ASCII bytes of a Perl class escape, whether it is negated, and its size bound.
pub(super) fn perl_ascii(c: char) -> Option<(u128, bool, usize)> {
    Some(match c {
        's' => (SPACE, false, BOUND_SPACE),
        'S' => (!SPACE, true, BOUND_SPACE),
        'd' => (DIGIT, false, BOUND_DIGIT),
        'D' => (!DIGIT, true, BOUND_DIGIT),
        'w' => (WORD, false, BOUND_WORD),
        'W' => (!WORD, true, BOUND_WORD),
        _ => return None,
    })
}

/// Characters whose simple case folding reaches ASCII (checked by a test against the regex crate).
pub(super) fn ascii_fold_of(c: char) -> Option<u8> {
    match c {
        '\u{212A}' => Some(b'k'),
        '\u{17F}' => Some(b's'),
        _ => None,
    }
}

/// Scripts without case (checked by a test): their characters match only themselves.
pub(super) fn caseless(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}')
}

pub(super) fn fold_ascii(bits: u128) -> u128 {
    let mut out = bits;
    for b in b'a'..=b'z' {
        let upper = b - 32;
        if bits >> b & 1 == 1 || bits >> upper & 1 == 1 {
            out |= 1 << b | 1 << upper;
        }
    }
    out
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, i: usize) -> Option<char> {
        self.chars.get(self.pos + i).copied()
    }

    pub(super) fn alternation(&mut self) -> Option<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        self.depth -= 1;
        Some(if branches.len() == 1 {
            branches.pop()?
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Option<Node> {
        let mut items: Vec<Node> = Vec::with_capacity(self.chars.len() - self.pos);
        while let Some(c) = self.peek() {
            match c {
                '|' | ')' => break,
                '*' | '+' | '?' => {
                    // A quantifier applies to the last item, which must consume characters and
                    // must not itself be quantified or able to match empty.
                    let last = items.pop()?;
                    if matches!(last, Node::Look(_) | Node::Repeat { .. } | Node::Empty)
                        || last.nullable()
                    {
                        return None;
                    }
                    self.pos += 1;
                    let greedy = if self.peek() == Some('?') {
                        self.pos += 1;
                        false
                    } else {
                        true
                    };
                    if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
                        return None;
                    }
                    let (min, max_one) = match c {
                        '*' => (0, false),
                        '+' => (1, false),
                        _ => (0, true),
                    };
                    items.push(Node::Repeat {
                        node: Box::new(last),
                        min,
                        max_one,
                        greedy,
                    });
                }
                '(' => {
                    self.pos += 1;
                    let capture = if self.peek() == Some('?') {
                        if self.peek_at(1) != Some(':') {
                            return None;
                        }
                        self.pos += 2;
                        false
                    } else {
                        true
                    };
                    let inner = self.alternation()?;
                    if self.peek() != Some(')') {
                        return None;
                    }
                    self.pos += 1;
                    items.push(if capture {
                        Node::Capture(Box::new(inner))
                    } else {
                        inner
                    });
                }
                '[' => items.push(self.class()?),
                '.' => {
                    self.pos += 1;
                    items.push(Node::Char {
                        ascii: !(1 << b'\n'),
                        lit: Lit::Wide,
                        bound: BOUND_WIDE,
                    });
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::LineStart));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::LineEnd));
                }
                '\\' => {
                    let e = self.peek_at(1)?;
                    self.pos += 2;
                    if let Some((ascii, _, bound)) = perl_ascii(e) {
                        items.push(Node::Char {
                            ascii,
                            lit: Lit::Wide,
                            bound,
                        });
                    } else if e == 'b' {
                        if self.peek() == Some('{') {
                            return None;
                        }
                        items.push(Node::Look(Look::WordBoundary));
                    } else if e == 'B' {
                        items.push(Node::Look(Look::NotWordBoundary));
                    } else {
                        items.push(self.literal(escaped(e)?));
                    }
                }
                '{' | '}' | ']' => return None,
                c => {
                    self.pos += 1;
                    items.push(self.literal(c));
                }
            }
        }
        Some(match items.len() {
            0 => Node::Empty,
            1 => items.pop()?,
            _ => Node::Concat(items),
        })
    }

    /// One literal character.
    fn literal(&self, c: char) -> Node {
        if c.is_ascii() {
            let b = c as u8;
            let letter = b.is_ascii_alphabetic();
            let ascii = if self.ci && letter {
                1u128 << b.to_ascii_lowercase() | 1 << b.to_ascii_uppercase()
            } else {
                1 << b
            };
            let bound = if self.ci && letter {
                BOUND_ASCII_LETTER_CI
            } else {
                BOUND_ASCII
            };
            return Node::Char {
                ascii,
                lit: Lit::One([b.to_ascii_lowercase(), 0, 0, 0], 1),
                bound,
            };
        }
        if self.ci
            && let Some(a) = ascii_fold_of(c)
        {
            // Matches the ASCII letter in both cases too.
            let ascii = 1u128 << a | 1 << a.to_ascii_uppercase();
            return Node::Char {
                ascii,
                lit: Lit::One([a, 0, 0, 0], 1),
                bound: BOUND_NON_ASCII,
            };
        }
        let lit = if !self.ci || caseless(c) {
            let mut buf = [0u8; 4];
            let len = c.encode_utf8(&mut buf).len() as u8;
            Lit::One(buf, len)
        } else {
            Lit::NonAscii
        };
        Node::Char {
            ascii: 0,
            lit,
            bound: BOUND_NON_ASCII,
        }
    }

    /// A bracketed class: ASCII items, ranges and `\s\d\w` (any case), with non-ASCII single
    /// characters; anything else (nested classes, set operations, non-ASCII ranges) is refused.
    fn class(&mut self) -> Option<Node> {
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ascii = 0u128;
        let mut non_ascii: Vec<char> = Vec::new();
        let mut wide = false;
        let mut bound = 0usize;
        let mut first = true;
        loop {
            let c = self.peek()?;
            match c {
                ']' if !first => {
                    self.pos += 1;
                    break;
                }
                ']' | '[' => return None,
                '&' | '~' | '-' if self.peek_at(1) == Some(c) => return None,
                _ => {}
            }
            first = false;
            // One item: a single character (maybe the start of a range) or a Perl class.
            let single = if c == '\\' {
                let e = self.peek_at(1)?;
                self.pos += 2;
                if let Some((bits, is_wide, b)) = perl_ascii(e) {
                    ascii |= bits;
                    wide |= is_wide || b == BOUND_WORD || b == BOUND_DIGIT || b == BOUND_SPACE;
                    bound += b;
                    if self.peek() == Some('-') && self.peek_at(1) != Some(']') {
                        return None;
                    }
                    continue;
                }
                escaped(e)?
            } else {
                self.pos += 1;
                c
            };
            let (lo, hi) = if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']')
            {
                self.pos += 1;
                let h = match self.peek()? {
                    '\\' => {
                        let e = self.peek_at(1)?;
                        self.pos += 2;
                        escaped(e)?
                    }
                    '[' => return None,
                    h => {
                        self.pos += 1;
                        h
                    }
                };
                if h < single {
                    return None;
                }
                (single, h)
            } else {
                (single, single)
            };
            if hi.is_ascii() {
                for b in lo as u8..=hi as u8 {
                    ascii |= 1 << b;
                }
                bound += BOUND_ASCII;
            } else if lo == hi {
                non_ascii.push(lo);
                bound += BOUND_NON_ASCII;
            } else {
                return None;
            }
        }
        if self.ci {
            ascii = fold_ascii(ascii);
            for c in &non_ascii {
                if let Some(a) = ascii_fold_of(*c) {
                    ascii |= 1 << a | 1 << a.to_ascii_uppercase();
                }
            }
            bound += 4 * BOUND_ASCII;
        }
        let lit = if negated || wide || !non_ascii.is_empty() {
            Lit::Wide
        } else {
            let mut choices: Vec<Vec<u8>> = Vec::new();
            for b in 0..128u8 {
                if ascii >> b & 1 == 1 && !choices.contains(&vec![b.to_ascii_lowercase()]) {
                    choices.push(vec![b.to_ascii_lowercase()]);
                }
            }
            if choices.is_empty() || choices.len() > 4 {
                Lit::Wide
            } else {
                Lit::Choice(choices)
            }
        };
        if negated {
            ascii = !ascii;
            bound += BOUND_WIDE;
        }
        Some(Node::Char {
            ascii,
            lit,
            bound: bound + BOUND_NODE,
        })
    }
}

/// The character an escape stands for, for the escapes of the subset.
pub(super) fn escaped(e: char) -> Option<char> {
    match e {
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        | '#' | '&' | '-' | '~' => Some(e),
        ' ' | '!' | '"' | '%' | '\'' | ',' | '/' | ':' | ';' | '=' | '@' | '_' | '`' => Some(e),
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        _ => None,
    }
}
