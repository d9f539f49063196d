//! A fast reader for the text layer of simple PDF pages — what word processors, office
//! suites and form generators make: Type 1 / TrueType fonts in WinAnsi or Standard encoding.
//! pdf-extract builds font tables and decodes every glyph through general machinery; on
//! such pages this walk over the content stream gives the same words many times faster.
//! Anything it does not fully understand (composite or Type 3 fonts, `ToUnicode` maps,
//! `Differences`, form XObjects, rotated text, a stream that does not parse) makes it
//! answer `None`, and the caller reads the page with pdf-extract as before.

use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashMap;

/// The text of one page, or `None` when the page needs the general reader.
pub fn page_text(doc: &Document, page_id: ObjectId) -> Option<String> {
    let fonts = doc.get_page_fonts(page_id).ok()?;
    let mut simple: HashMap<Vec<u8>, SimpleFont> = HashMap::with_capacity(fonts.len());
    for (name, dict) in fonts {
        simple.insert(name, SimpleFont::of(doc, dict)?);
    }
    let forms = form_names(doc, page_id)?;
    let content = doc.get_page_content(page_id).ok()?;
    let mut w = Walker::default();
    each_operation(&content, |operator, operands| {
        w.apply(operator, operands, &simple, &forms)
    })?;
    Some(w.out)
}

/// Reads a content stream through, counting its operators (for the fuzzer).
#[doc(hidden)]
pub fn count_operations(content: &[u8]) -> usize {
    let mut n = 0;
    let _ = each_operation(content, |_, _| {
        n += 1;
        Some(())
    });
    n
}

/// Reads a content stream, calling `op` with each operator and its operands. Text needs
/// only numbers, names, strings and arrays; dictionaries (marked content) are read past and
/// inline images skipped. `None` when the stream does not read (the general reader decides).
fn each_operation(content: &[u8], mut op: impl FnMut(&str, &[Object]) -> Option<()>) -> Option<()> {
    let mut lexer = Lexer {
        s: content,
        i: 0,
        depth: 0,
    };
    let mut operands: Vec<Object> = Vec::new();
    while let Some(token) = lexer.token()? {
        match token {
            Token::Object(o) => operands.push(o),
            Token::Operator(name) => {
                if name == b"BI" {
                    lexer.skip_inline_image()?;
                } else {
                    op(std::str::from_utf8(name).ok()?, &operands)?;
                }
                operands.clear();
            }
            Token::ArrayEnd | Token::DictEnd => return None,
        }
        // A stream of operands with no operator is not a content stream.
        if operands.len() > 4096 {
            return None;
        }
    }
    Some(())
}

enum Token<'a> {
    Object(Object),
    Operator(&'a [u8]),
    ArrayEnd,
    DictEnd,
}

/// Arrays and dictionaries nested deeper than this are not read (each level is a recursive
/// call: a stream of `[[[[…` would otherwise overflow the stack). Found by the fuzzer.
const MAX_DEPTH: usize = 64;

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Arrays and dictionaries open around the current token.
    depth: usize,
}

fn is_delimiter(b: u8) -> bool {
    b"()<>[]{}/%".contains(&b)
}

fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\0')
}

impl<'a> Lexer<'a> {
    /// The next token; `Ok(None)` at the end, `None` on bytes that are not PDF syntax.
    fn token(&mut self) -> Option<Option<Token<'a>>> {
        loop {
            while self.i < self.s.len() && is_white(self.s[self.i]) {
                self.i += 1;
            }
            if self.s.get(self.i) == Some(&b'%') {
                while self.i < self.s.len() && !matches!(self.s[self.i], b'\n' | b'\r') {
                    self.i += 1;
                }
                continue;
            }
            break;
        }
        let Some(&b) = self.s.get(self.i) else {
            return Some(None);
        };
        let token = match b {
            b'/' => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len()
                    && !is_white(self.s[self.i])
                    && !is_delimiter(self.s[self.i])
                {
                    self.i += 1;
                }
                Token::Object(Object::Name(name_bytes(&self.s[start..self.i])))
            }
            b'(' => Token::Object(Object::String(
                self.literal()?,
                lopdf::StringFormat::Literal,
            )),
            b'<' if self.s.get(self.i + 1) == Some(&b'<') => {
                self.i += 2;
                if self.depth >= MAX_DEPTH {
                    return None;
                }
                self.depth += 1;
                // Marked-content properties: read past (a nested dictionary is read whole by
                // the inner call), keep a placeholder operand.
                loop {
                    match self.token()? {
                        Some(Token::DictEnd) => break,
                        Some(_) => {}
                        None => return None,
                    }
                }
                self.depth -= 1;
                Token::Object(Object::Null)
            }
            b'>' if self.s.get(self.i + 1) == Some(&b'>') => {
                self.i += 2;
                Token::DictEnd
            }
            b'<' => {
                let end = self.i + self.s[self.i..].iter().position(|&c| c == b'>')?;
                let digits: Vec<u8> = self.s[self.i + 1..end]
                    .iter()
                    .copied()
                    .filter(|c| !is_white(*c))
                    .collect();
                let mut bytes = Vec::with_capacity(digits.len() / 2 + 1);
                for pair in digits.chunks(2) {
                    let hi = (pair[0] as char).to_digit(16)?;
                    let lo = pair.get(1).map_or(Some(0), |c| (*c as char).to_digit(16))?;
                    bytes.push((hi * 16 + lo) as u8);
                }
                self.i = end + 1;
                Token::Object(Object::String(bytes, lopdf::StringFormat::Hexadecimal))
            }
            b'[' => {
                self.i += 1;
                if self.depth >= MAX_DEPTH {
                    return None;
                }
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    match self.token()? {
                        Some(Token::Object(o)) => items.push(o),
                        Some(Token::ArrayEnd) => break,
                        _ => return None,
                    }
                }
                self.depth -= 1;
                Token::Object(Object::Array(items))
            }
            b']' => {
                self.i += 1;
                Token::ArrayEnd
            }
            b'+' | b'-' | b'.' | b'0'..=b'9' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len() && matches!(self.s[self.i], b'0'..=b'9' | b'.') {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                match text.parse::<i64>() {
                    Ok(n) => Token::Object(Object::Integer(n)),
                    // "-.5", "3.", and producers' "--2" all occur; a bad one reads as 0.
                    Err(_) => Token::Object(Object::Real(
                        text.trim_start_matches(['-', '+'])
                            .parse::<f32>()
                            .map(|v| if text.starts_with('-') { -v } else { v })
                            .unwrap_or(0.0),
                    )),
                }
            }
            b')' | b'{' | b'}' | b'>' => return None,
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && !is_white(self.s[self.i])
                    && !is_delimiter(self.s[self.i])
                {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"true" => Token::Object(Object::Boolean(true)),
                    b"false" => Token::Object(Object::Boolean(false)),
                    b"null" => Token::Object(Object::Null),
                    word => Token::Operator(word),
                }
            }
        };
        Some(Some(token))
    }

    /// A literal string from its `(`: balanced parentheses, escapes resolved.
    fn literal(&mut self) -> Option<Vec<u8>> {
        self.i += 1;
        let mut out = Vec::new();
        let mut depth = 1;
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(out);
                    }
                    out.push(b);
                }
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'0'..=b'7' => {
                            let mut v = (e - b'0') as u32;
                            for _ in 0..2 {
                                match self.s.get(self.i) {
                                    Some(&d @ b'0'..=b'7') => {
                                        v = v * 8 + (d - b'0') as u32;
                                        self.i += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        // A line break after a backslash continues the string.
                        b'\r' => {
                            if self.s.get(self.i) == Some(&b'\n') {
                                self.i += 1;
                            }
                        }
                        b'\n' => {}
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// From after `BI` to after the image's `EI`.
    fn skip_inline_image(&mut self) -> Option<()> {
        // The dictionary up to `ID`, then one white byte, then data up to a white-space
        // delimited `EI`.
        loop {
            match self.token()? {
                Some(Token::Operator(b"ID")) => break,
                Some(Token::Object(_)) => {}
                _ => return None,
            }
        }
        self.i += 1;
        let data = &self.s[self.i.min(self.s.len())..];
        let at = data.windows(4).position(|w| {
            is_white(w[0]) && w[1] == b'E' && w[2] == b'I' && (is_white(w[3]) || w[3] == b'Q')
        });
        match at {
            Some(at) => self.i += at + 3,
            None if data.ends_with(b"EI") => self.i = self.s.len(),
            None => return None,
        }
        Some(())
    }
}

/// A name's bytes with its `#xx` escapes resolved.
fn name_bytes(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'#', Some(v)) = (raw[i], hex) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A font whose codes are single bytes with a known meaning and a known width.
struct SimpleFont {
    /// What each code reads as; `None` where unknown (the page goes to the general reader
    /// if it uses one), "" for codes that draw nothing worth keeping.
    chars: Vec<Option<String>>,
    /// Advance widths in thousandths of the font size.
    widths: [f32; 256],
}

impl SimpleFont {
    fn of(doc: &Document, dict: &Dictionary) -> Option<SimpleFont> {
        let name = |key: &[u8]| {
            dict.get(key)
                .ok()
                .and_then(|o| doc.dereference(o).ok())
                .and_then(|(_, o)| o.as_name().ok())
        };
        let subtype = name(b"Subtype")?;
        if !matches!(subtype, b"Type1" | b"TrueType" | b"MMType1") {
            return None;
        }
        let base = name(b"BaseFont").unwrap_or_default();
        // A subset prefix ("ABCDEF+Helvetica") does not change the metrics.
        let base = match base.iter().position(|&b| b == b'+') {
            Some(6) => &base[7..],
            _ => base,
        };
        let standard = standard_widths(base);
        let mut chars: Vec<Option<String>> = match dict.get(b"Encoding").ok() {
            None if standard.is_some() => standard_encoding(),
            // Any other font without an encoding uses its own built-in one, which only the
            // font program knows: only a ToUnicode map can tell.
            None => vec![None; 256],
            Some(o) => match doc.dereference(o).ok()?.1 {
                Object::Name(n) => base_encoding(n)?,
                Object::Dictionary(d) => {
                    let base = d.get(b"BaseEncoding").ok().and_then(|o| o.as_name().ok());
                    let mut table = match base {
                        Some(n) => base_encoding(n)?,
                        None if standard.is_some() => standard_encoding(),
                        None => vec![None; 256],
                    };
                    if let Ok(list) = d.get(b"Differences") {
                        let list = doc.dereference(list).ok()?.1.as_array().ok()?;
                        let mut code = 0usize;
                        for item in list {
                            match item {
                                Object::Integer(i) => code = (*i).clamp(0, 256) as usize,
                                Object::Name(glyph) => {
                                    if let Some(slot) = table.get_mut(code) {
                                        *slot = glyph_text(glyph);
                                    }
                                    code += 1;
                                }
                                _ => return None,
                            }
                        }
                    }
                    table
                }
                _ => return None,
            },
        };
        if let Ok(map) = dict.get(b"ToUnicode") {
            let stream = doc.dereference(map).ok()?.1.as_stream().ok()?;
            let cmap = stream
                .decompressed_content()
                .unwrap_or_else(|_| stream.content.clone());
            for (code, text) in to_unicode(&cmap)? {
                chars[code as usize] = Some(text);
            }
        }
        let mut widths = [0f32; 256];
        match (dict.get(b"Widths").ok(), standard) {
            (Some(list), _) => {
                let list = doc.dereference(list).ok()?.1.as_array().ok()?;
                let first = dict
                    .get(b"FirstChar")
                    .ok()
                    .and_then(|o| number(doc.dereference(o).ok()?.1))
                    .unwrap_or(0.0) as usize;
                let missing = dict
                    .get(b"FontDescriptor")
                    .ok()
                    .and_then(|o| doc.dereference(o).ok())
                    .and_then(|(_, o)| o.as_dict().ok())
                    .and_then(|d| d.get(b"MissingWidth").ok())
                    .and_then(number)
                    .unwrap_or(0.0);
                widths.iter_mut().for_each(|w| *w = missing);
                for (i, o) in list.iter().enumerate() {
                    if let Some(slot) = widths.get_mut(first + i) {
                        *slot = doc.dereference(o).ok().and_then(|(_, o)| number(o))?;
                    }
                }
            }
            (None, Some(table)) => {
                // Letters outside ASCII (accented ones in WinAnsi) take the width of an
                // average lower-case letter: close enough to tell a word gap from none.
                let average = table[65..91].iter().map(|&w| w as f32).sum::<f32>() / 26.0;
                widths.iter_mut().for_each(|w| *w = average);
                for (i, &w) in table.iter().enumerate() {
                    widths[32 + i] = w as f32;
                }
            }
            (None, None) => return None,
        }
        Some(SimpleFont { chars, widths })
    }
}

/// Names of the page's form XObjects: text inside them needs the general reader.
fn form_names(doc: &Document, page_id: ObjectId) -> Option<Vec<Vec<u8>>> {
    let (own, inherited) = doc.get_page_resources(page_id).ok()?;
    let mut forms = Vec::new();
    let dicts = own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|&id| doc.get_dictionary(id).ok()),
    );
    for resources in dicts {
        let Ok(xobjects) = resources.get(b"XObject") else {
            continue;
        };
        let xobjects = doc.dereference(xobjects).ok()?.1.as_dict().ok()?;
        for (name, o) in xobjects.iter() {
            let stream = doc.dereference(o).ok()?.1.as_stream().ok()?;
            if stream.dict.get(b"Subtype").and_then(|t| t.as_name()).ok() != Some(b"Image") {
                forms.push(name.clone());
            }
        }
    }
    Some(forms)
}

fn number(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

type Matrix = [f32; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// m × n, PDF's row-vector convention.
fn mul(m: &Matrix, n: &Matrix) -> Matrix {
    [
        m[0] * n[0] + m[1] * n[2],
        m[0] * n[1] + m[1] * n[3],
        m[2] * n[0] + m[3] * n[2],
        m[2] * n[1] + m[3] * n[3],
        m[4] * n[0] + m[5] * n[2] + n[4],
        m[4] * n[1] + m[5] * n[3] + n[5],
    ]
}

#[derive(Default)]
struct Walker {
    out: String,
    ctm: Option<Matrix>,
    stack: Vec<Option<Matrix>>,
    tm: Matrix,
    tlm: Matrix,
    font: Option<Vec<u8>>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    scale: Option<f32>,
    leading: f32,
    /// Where the last glyph shown ended (user space) and the font size there.
    pen: Option<(f32, f32, f32)>,
}

impl Walker {
    fn apply(
        &mut self,
        operator: &str,
        args: &[Object],
        fonts: &HashMap<Vec<u8>, SimpleFont>,
        forms: &[Vec<u8>],
    ) -> Option<()> {
        let num = |i: usize| args.get(i).and_then(number);
        match operator {
            "q" => self.stack.push(self.ctm),
            "Q" => self.ctm = self.stack.pop().unwrap_or(None),
            "cm" => {
                let m = [num(0)?, num(1)?, num(2)?, num(3)?, num(4)?, num(5)?];
                self.ctm = Some(mul(&m, &self.ctm.unwrap_or(IDENTITY)));
            }
            "BT" => {
                self.tm = IDENTITY;
                self.tlm = IDENTITY;
            }
            "Tf" => {
                self.font = Some(args.first()?.as_name().ok()?.to_vec());
                self.size = num(1)?;
            }
            "Tc" => self.char_spacing = num(0)?,
            "Tw" => self.word_spacing = num(0)?,
            "Tz" => self.scale = Some(num(0)? / 100.0),
            "TL" => self.leading = num(0)?,
            "Td" => self.next_line(num(0)?, num(1)?),
            "TD" => {
                self.leading = -num(1)?;
                self.next_line(num(0)?, num(1)?);
            }
            "Tm" => {
                self.tm = [num(0)?, num(1)?, num(2)?, num(3)?, num(4)?, num(5)?];
                self.tlm = self.tm;
            }
            "T*" => self.next_line(0.0, -self.leading),
            "Tj" => self.show(args.first()?, fonts)?,
            "'" => {
                self.next_line(0.0, -self.leading);
                self.show(args.first()?, fonts)?;
            }
            "\"" => {
                self.word_spacing = num(0)?;
                self.char_spacing = num(1)?;
                self.next_line(0.0, -self.leading);
                self.show(args.get(2)?, fonts)?;
            }
            "TJ" => {
                for item in args.first()?.as_array().ok()? {
                    match item {
                        Object::String(..) => self.show(item, fonts)?,
                        other => {
                            let adjust = number(other)?;
                            self.advance(-adjust / 1000.0 * self.size * self.horizontal());
                        }
                    }
                }
            }
            "Do" => {
                let name = args.first()?.as_name().ok()?;
                if forms.iter().any(|f| f.as_slice() == name) {
                    return None;
                }
            }
            // Type 3 glyph procedures and marked content carry no text of their own.
            _ => {}
        }
        Some(())
    }

    fn horizontal(&self) -> f32 {
        self.scale.unwrap_or(1.0)
    }

    fn next_line(&mut self, tx: f32, ty: f32) {
        self.tlm = mul(&[1.0, 0.0, 0.0, 1.0, tx, ty], &self.tlm);
        self.tm = self.tlm;
    }

    fn advance(&mut self, tx: f32) {
        self.tm[4] += tx * self.tm[0];
        self.tm[5] += tx * self.tm[1];
    }

    fn show(&mut self, string: &Object, fonts: &HashMap<Vec<u8>, SimpleFont>) -> Option<()> {
        let Object::String(bytes, _) = string else {
            return None;
        };
        let font = fonts.get(self.font.as_deref()?)?;
        let m = mul(&self.tm, &self.ctm.unwrap_or(IDENTITY));
        // Rotated or sheared text: lines and gaps would need a real layout.
        if m[1].abs() > 1e-3 * m[0].abs() || m[2].abs() > 1e-3 * m[3].abs() || m[0] <= 0.0 {
            return None;
        }
        let size = (self.size * m[3].abs()).max(0.5);
        let (x, y) = (m[4], m[5]);
        if let Some((px, py, psize)) = self.pen {
            let line = size.max(psize);
            let starts_blank = bytes
                .first()
                .is_some_and(|&b| font.chars[b as usize].as_deref() == Some(" "));
            if (y - py).abs() > 0.5 * line {
                self.out.push('\n');
            } else if (x - px > 0.15 * line || px - x > line)
                && !starts_blank
                && !self.out.ends_with([' ', '\n'])
            {
                self.out.push(' ');
            }
        }
        let horizontal = self.horizontal();
        for &b in bytes {
            self.out.push_str(font.chars[b as usize].as_deref()?);
            let spacing = if b == b' ' { self.word_spacing } else { 0.0 };
            let w = (font.widths[b as usize] / 1000.0 * self.size + self.char_spacing + spacing)
                * horizontal;
            self.advance(w);
        }
        let end = mul(&self.tm, &self.ctm.unwrap_or(IDENTITY));
        self.pen = Some((end[4], end[5], size));
        Some(())
    }
}

/// Glyph widths of the standard fonts for codes 32–126 (Adobe's AFM files), so pages that
/// use them without a `Widths` array still show where words end. Courier is 600 throughout.
fn standard_widths(base: &[u8]) -> Option<&'static [u16; 95]> {
    const TABLES: [(&str, [u16; 95]); 6] = [
        (
            "Helvetica",
            [
                278, 278, 355, 556, 556, 889, 667, 222, 333, 333, 389, 584, 278, 333, 278, 278,
                556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
                1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
                667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
                222, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
                556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
            ],
        ),
        (
            "Helvetica-Bold",
            [
                278, 333, 474, 556, 556, 889, 722, 278, 333, 333, 389, 584, 278, 333, 278, 278,
                556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
                975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
                667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
                278, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
                611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
            ],
        ),
        (
            "Times-Roman",
            [
                250, 333, 408, 500, 500, 833, 778, 333, 333, 333, 500, 564, 250, 333, 250, 278,
                500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 278, 278, 564, 564, 564, 444,
                921, 722, 667, 667, 722, 611, 556, 722, 722, 333, 389, 722, 611, 889, 722, 722,
                556, 722, 667, 556, 611, 722, 722, 944, 722, 722, 611, 333, 278, 333, 469, 500,
                333, 444, 500, 444, 500, 444, 333, 500, 500, 278, 278, 500, 278, 778, 500, 500,
                500, 500, 333, 389, 278, 500, 500, 722, 500, 500, 444, 480, 200, 480, 541,
            ],
        ),
        (
            "Times-Bold",
            [
                250, 333, 555, 500, 500, 1000, 833, 333, 333, 333, 500, 570, 250, 333, 250, 278,
                500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 333, 333, 570, 570, 570, 500,
                930, 722, 667, 722, 722, 667, 611, 778, 778, 389, 500, 778, 667, 944, 722, 778,
                611, 778, 722, 556, 667, 722, 722, 1000, 722, 722, 667, 333, 278, 333, 581, 500,
                333, 500, 556, 444, 556, 444, 333, 500, 556, 278, 333, 556, 278, 833, 556, 500,
                556, 556, 444, 389, 333, 556, 500, 722, 500, 500, 444, 394, 220, 394, 520,
            ],
        ),
        (
            "Times-Italic",
            [
                250, 333, 420, 500, 500, 833, 778, 333, 333, 333, 500, 675, 250, 333, 250, 278,
                500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 333, 333, 675, 675, 675, 500,
                920, 611, 611, 667, 722, 611, 611, 722, 722, 333, 444, 667, 556, 833, 667, 722,
                611, 722, 611, 500, 556, 722, 611, 833, 611, 556, 556, 389, 278, 389, 422, 500,
                333, 500, 500, 444, 500, 444, 278, 500, 500, 278, 278, 444, 278, 722, 500, 500,
                500, 500, 389, 389, 278, 500, 444, 667, 444, 444, 389, 400, 275, 400, 541,
            ],
        ),
        (
            "Times-BoldItalic",
            [
                250, 389, 555, 500, 500, 833, 778, 333, 333, 333, 500, 570, 250, 333, 250, 278,
                500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 333, 333, 570, 570, 570, 500,
                832, 667, 667, 667, 722, 667, 667, 722, 778, 389, 500, 667, 611, 889, 722, 722,
                611, 722, 667, 556, 611, 722, 667, 889, 667, 611, 611, 333, 278, 333, 570, 500,
                333, 500, 500, 444, 500, 444, 333, 500, 556, 278, 278, 500, 278, 778, 556, 500,
                500, 500, 389, 389, 278, 556, 444, 667, 500, 444, 389, 348, 220, 348, 570,
            ],
        ),
    ];
    static COURIER: [u16; 95] = [600; 95];
    let base = std::str::from_utf8(base).ok()?;
    let family = match base {
        "Helvetica" | "Helvetica-Oblique" | "Arial" | "Arial,Italic" | "ArialMT" => "Helvetica",
        "Helvetica-Bold"
        | "Helvetica-BoldOblique"
        | "Arial,Bold"
        | "Arial,BoldItalic"
        | "Arial-BoldMT" => "Helvetica-Bold",
        "Times-Roman" | "TimesNewRoman" | "TimesNewRomanPSMT" => "Times-Roman",
        "Times-Bold" | "TimesNewRoman,Bold" | "TimesNewRomanPS-BoldMT" => "Times-Bold",
        "Times-Italic" | "TimesNewRoman,Italic" | "TimesNewRomanPS-ItalicMT" => "Times-Italic",
        "Times-BoldItalic" | "TimesNewRoman,BoldItalic" => "Times-BoldItalic",
        b if b.starts_with("Courier") => return Some(&COURIER),
        _ => return None,
    };
    TABLES.iter().find(|(n, _)| *n == family).map(|(_, t)| t)
}

fn base_encoding(name: &[u8]) -> Option<Vec<Option<String>>> {
    match name {
        b"WinAnsiEncoding" => Some(win_ansi()),
        b"StandardEncoding" => Some(standard_encoding()),
        _ => None,
    }
}

/// ASCII printable characters, the rest unknown (so a page using them goes to the general
/// reader).
fn ascii() -> Vec<Option<String>> {
    let mut t = vec![None; 256];
    for b in 0x20u8..0x7f {
        t[b as usize] = Some((b as char).to_string());
    }
    for b in [b'\t', b'\n', b'\r'] {
        t[b as usize] = Some(" ".into());
    }
    t
}

fn standard_encoding() -> Vec<Option<String>> {
    let mut t = ascii();
    t[0x27] = Some("\u{2019}".into());
    t[0x60] = Some("\u{2018}".into());
    t
}

fn win_ansi() -> Vec<Option<String>> {
    const HIGH: [u16; 32] = [
        0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039,
        0x0152, 0, 0x017d, 0, 0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc,
        0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
    ];
    let mut t = ascii();
    for (i, &c) in HIGH.iter().enumerate() {
        // Unassigned codes draw nothing worth keeping.
        t[0x80 + i] = Some(
            char::from_u32(c as u32)
                .filter(|_| c != 0)
                .map(String::from)
                .unwrap_or_default(),
        );
    }
    for b in 0xa0u32..=0xff {
        t[b as usize] = char::from_u32(b).map(String::from);
    }
    t[0xa0] = Some(" ".into());
    t[0xad] = Some(String::new());
    t
}

/// The text of a glyph name (the Adobe Glyph List's Latin part, and `uniXXXX` / `uXXXX`
/// names); `None` for names it does not know.
fn glyph_text(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    // "a.sc", "e.alt": a variant shape of the same letter.
    let name = name.split('.').next().filter(|n| !n.is_empty())?;
    if name.len() == 1 && name.as_bytes()[0].is_ascii_alphabetic() {
        return Some(name.to_string());
    }
    if let Some(hex) = name.strip_prefix("uni").filter(|h| h.len() == 4) {
        return char::from_u32(u32::from_str_radix(hex, 16).ok()?).map(String::from);
    }
    if let Some(hex) = name
        .strip_prefix('u')
        .filter(|h| (4..=6).contains(&h.len()))
    {
        if let Ok(v) = u32::from_str_radix(hex, 16) {
            return char::from_u32(v).map(String::from);
        }
    }
    const DIGITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    if let Some(d) = DIGITS.iter().position(|&d| d == name) {
        return Some(d.to_string());
    }
    const ACCENTS: [(&str, char); 8] = [
        ("grave", '\u{300}'),
        ("acute", '\u{301}'),
        ("circumflex", '\u{302}'),
        ("tilde", '\u{303}'),
        ("dieresis", '\u{308}'),
        ("ring", '\u{30a}'),
        ("cedilla", '\u{327}'),
        ("caron", '\u{30c}'),
    ];
    for (accent, mark) in ACCENTS {
        if let Some(base) = name.strip_suffix(accent).filter(|b| b.len() == 1) {
            let base = base.chars().next()?;
            return Some(
                unicode_normalization::UnicodeNormalization::nfc([base, mark].into_iter())
                    .collect(),
            );
        }
    }
    let text = match name {
        "space" | "nbspace" | "nonbreakingspace" => " ",
        "exclam" => "!",
        "quotedbl" => "\"",
        "numbersign" => "#",
        "dollar" => "$",
        "percent" => "%",
        "ampersand" => "&",
        "quotesingle" => "'",
        "quoteright" => "\u{2019}",
        "quoteleft" => "\u{2018}",
        "parenleft" => "(",
        "parenright" => ")",
        "asterisk" => "*",
        "plus" => "+",
        "comma" => ",",
        "hyphen" => "-",
        "minus" => "\u{2212}",
        "period" => ".",
        "slash" => "/",
        "colon" => ":",
        "semicolon" => ";",
        "less" => "<",
        "equal" => "=",
        "greater" => ">",
        "question" => "?",
        "at" => "@",
        "bracketleft" => "[",
        "backslash" => "\\",
        "bracketright" => "]",
        "asciicircum" => "^",
        "underscore" => "_",
        "grave" => "`",
        "braceleft" => "{",
        "bar" => "|",
        "braceright" => "}",
        "asciitilde" => "~",
        "quotedblleft" => "\u{201c}",
        "quotedblright" => "\u{201d}",
        "quotesinglbase" => "\u{201a}",
        "quotedblbase" => "\u{201e}",
        "guillemotleft" => "\u{ab}",
        "guillemotright" => "\u{bb}",
        "endash" => "\u{2013}",
        "emdash" => "\u{2014}",
        "bullet" => "\u{2022}",
        "ellipsis" => "\u{2026}",
        "degree" => "\u{b0}",
        "ordmasculine" => "\u{ba}",
        "ordfeminine" => "\u{aa}",
        "section" => "\u{a7}",
        "paragraph" => "\u{b6}",
        "copyright" => "\u{a9}",
        "registered" => "\u{ae}",
        "trademark" => "\u{2122}",
        "Euro" | "euro" => "\u{20ac}",
        "sterling" => "\u{a3}",
        "multiply" => "\u{d7}",
        "plusminus" => "\u{b1}",
        "periodcentered" => "\u{b7}",
        "germandbls" => "\u{df}",
        "ae" => "\u{e6}",
        "AE" => "\u{c6}",
        "oe" => "\u{153}",
        "OE" => "\u{152}",
        "oslash" => "\u{f8}",
        "Oslash" => "\u{d8}",
        "dotlessi" => "\u{131}",
        "dagger" => "\u{2020}",
        "daggerdbl" => "\u{2021}",
        "fi" => "fi",
        "fl" => "fl",
        "ff" => "ff",
        "ffi" => "ffi",
        "ffl" => "ffl",
        "softhyphen" | "notdef" => "",
        _ => return None,
    };
    Some(text.to_string())
}

#[derive(PartialEq)]
enum CmapToken<'a> {
    Hex(Vec<u8>),
    Open,
    Close,
    Word(&'a [u8]),
}

fn cmap_tokens(cmap: &[u8]) -> Option<Vec<CmapToken<'_>>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < cmap.len() {
        match cmap[i] {
            b'<' if cmap.get(i + 1) != Some(&b'<') => {
                let end = i + cmap[i..].iter().position(|&b| b == b'>')?;
                let digits: Vec<u8> = cmap[i + 1..end]
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .copied()
                    .collect();
                let bytes = digits
                    .chunks(2)
                    .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                tokens.push(CmapToken::Hex(bytes));
                i = end + 1;
            }
            b'[' => {
                tokens.push(CmapToken::Open);
                i += 1;
            }
            b']' => {
                tokens.push(CmapToken::Close);
                i += 1;
            }
            b'%' => {
                i += cmap[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(cmap.len() - i)
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                let len = cmap[i..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || b"<[]%".contains(b))
                    .unwrap_or(cmap.len() - i)
                    .max(1);
                tokens.push(CmapToken::Word(&cmap[i..i + len]));
                i += len;
            }
        }
    }
    Some(tokens)
}

/// The one-byte codes of a ToUnicode CMap and their text (`bfchar` and `bfrange`); `None`
/// when the map does not read cleanly or has codes wider than a byte.
fn to_unicode(cmap: &[u8]) -> Option<Vec<(u8, String)>> {
    let tokens = cmap_tokens(cmap)?;
    let hex = |t: usize| match tokens.get(t) {
        Some(CmapToken::Hex(h)) => Some(h.as_slice()),
        _ => None,
    };
    let code = |t: usize| match hex(t)? {
        [b] => Some(*b),
        _ => None,
    };
    let text = |t: usize| {
        let units: Vec<u16> = hex(t)?
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16(&units).ok()
    };
    let mut out = Vec::new();
    let mut t = 0;
    while t < tokens.len() {
        match tokens[t] {
            CmapToken::Word(b"begincodespacerange") => {
                t += 1;
                while tokens.get(t) != Some(&CmapToken::Word(b"endcodespacerange")) {
                    code(t)?;
                    t += 1;
                }
            }
            CmapToken::Word(b"beginbfchar") => {
                t += 1;
                while tokens.get(t) != Some(&CmapToken::Word(b"endbfchar")) {
                    out.push((code(t)?, text(t + 1)?));
                    t += 2;
                }
            }
            CmapToken::Word(b"beginbfrange") => {
                t += 1;
                while tokens.get(t) != Some(&CmapToken::Word(b"endbfrange")) {
                    let (low, high) = (code(t)?, code(t + 1)?);
                    if tokens.get(t + 2) == Some(&CmapToken::Open) {
                        t += 3;
                        for c in low..=high {
                            out.push((c, text(t)?));
                            t += 1;
                        }
                        if tokens.get(t) != Some(&CmapToken::Close) {
                            return None;
                        }
                        t += 1;
                    } else {
                        // The last character counts up through the range.
                        let mut next = text(t + 2)?;
                        for c in low..=high {
                            out.push((c, next.clone()));
                            let last = next.pop()?;
                            next.push(char::from_u32(last as u32 + 1)?);
                        }
                        t += 3;
                    }
                }
            }
            _ => {}
        }
        t += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_page(pdf: &[u8]) -> (Document, ObjectId) {
        let doc = Document::load_mem(pdf).unwrap();
        let id = *doc.get_pages().values().next().unwrap();
        (doc, id)
    }

    #[test]
    fn reads_a_winansi_letter_with_accents() {
        let pdf = crate::testdata::pdf(&[vec![
            "Oggetto: richiesta di agibilità".into(),
            "Città dell'Aquila, perché è così".into(),
        ]]);
        let (doc, id) = first_page(&pdf);
        let text = page_text(&doc, id).expect("simple page");
        assert_eq!(
            text,
            "Oggetto: richiesta di agibilità\nCittà dell'Aquila, perché è così"
        );
    }

    #[test]
    fn word_gaps_made_by_positioning_become_spaces() {
        let content = b"BT /F1 12 Tf 72 700 Td [(Domanda)-600(di)] TJ 40 0 Td (contributo) Tj ET";
        let text = with_content(content);
        assert_eq!(text.as_deref(), Some("Domanda di contributo"));
        // Kerning inside a word is not a gap.
        let kerned = with_content(b"BT /F1 12 Tf 72 700 Td [(Ri)30(costruzione)] TJ ET");
        assert_eq!(kerned.as_deref(), Some("Ricostruzione"));
    }

    #[test]
    fn pages_it_cannot_read_exactly_go_to_the_general_reader() {
        // Rotated text.
        assert_eq!(
            with_content(b"BT /F1 12 Tf 0 1 -1 0 100 100 Tm (Verticale) Tj ET"),
            None
        );
        // A font with its own built-in encoding.
        let pdf = crate::testdata::pdf(&[vec!["testo".into()]]).replace_all(
            b"/BaseFont /Helvetica /Encoding /WinAnsiEncoding",
            b"/BaseFont /Foo",
        );
        let (doc, id) = first_page(&pdf);
        assert_eq!(page_text(&doc, id), None);
    }

    #[test]
    fn tounicode_maps_and_glyph_names_read_subset_fonts() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
            1 begincodespacerange <00> <FF> endcodespacerange\n\
            2 beginbfchar <01> <0043> <02> <00E0> endbfchar\n\
            2 beginbfrange <03> <05> <0061> <06> <07> [<FB01> <0020>] endbfrange\n\
            endcmap CMapName currentdict /CMap defineresource pop end end";
        let map = to_unicode(cmap).unwrap();
        let text: String = map.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(text, "Càabc\u{fb01} ");
        assert_eq!(map[0].0, 1);
        // Two-byte codes belong to composite fonts: not this reader's.
        assert_eq!(
            to_unicode(b"1 begincodespacerange <0000> <FFFF> endcodespacerange"),
            None
        );
        assert_eq!(glyph_text(b"egrave").as_deref(), Some("è"));
        assert_eq!(glyph_text(b"Agrave").as_deref(), Some("À"));
        assert_eq!(glyph_text(b"uni20AC").as_deref(), Some("€"));
        assert_eq!(glyph_text(b"fi").as_deref(), Some("fi"));
        assert_eq!(glyph_text(b"a.sc").as_deref(), Some("a"));
        assert_eq!(glyph_text(b"g123"), None);
    }

    #[test]
    fn content_streams_are_read_past_marked_content_and_inline_images() {
        let content = [
            &b"/P <</MCID 0 /Alt (x) /N <</A 1>> >> BDC BT /F1 12 Tf 72 700 Td "[..],
            br"(Citt\340 \(centro\)) Tj ET EMC",
            b" q BI /W 4 /H 1 /BPC 8 /CS /G ID \x00EI\xff\nEI Q % a comment\n",
            b"BT /F1 12 Tf 72 680 Td <4F4B> Tj ET",
        ]
        .concat();
        assert_eq!(
            with_content(&content).as_deref(),
            Some("Città (centro)\nOK")
        );
        // Not a content stream.
        assert_eq!(with_content(b"BT /F1 12 Tf ) Tj ET"), None);
        assert_eq!(with_content(b"BT /F1 12 Tf [(a) 5 ET"), None);
    }

    fn with_content(content: &[u8]) -> Option<String> {
        let mut doc = Document::load_mem(&crate::testdata::pdf(&[vec!["x".into()]])).unwrap();
        let id = *doc.get_pages().values().next().unwrap();
        let content_id = doc.get_page_contents(id)[0];
        doc.get_object_mut(content_id)
            .unwrap()
            .as_stream_mut()
            .unwrap()
            .set_plain_content(content.to_vec());
        page_text(&doc, id)
    }

    trait Replace {
        fn replace_all(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }
    impl Replace for Vec<u8> {
        fn replace_all(self, from: &[u8], to: &[u8]) -> Vec<u8> {
            // Padded to the same length, so the cross-reference offsets stay right.
            let at = self.windows(from.len()).position(|w| w == from).unwrap();
            let mut to = to.to_vec();
            to.resize(from.len(), b' ');
            [&self[..at], &to, &self[at + from.len()..]].concat()
        }
    }

    /// Compares this reader with pdf-extract on every page of the PDFs under DIR it accepts:
    /// `SPORTELLO_PDF_DIR=DIR cargo test --release --lib pdftext -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn agrees_with_pdf_extract() {
        let Ok(dir) = std::env::var("SPORTELLO_PDF_DIR") else {
            return;
        };
        // pdf-extract keeps ligatures (ﬁ) and the minus sign; this reader writes letters
        // and hyphens, which search finds.
        let words = |s: &str| {
            s.replace('\u{fb01}', "fi")
                .replace('\u{fb02}', "fl")
                .replace('\u{2212}', "-")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (mut accepted, mut same, mut total) = (0, 0, 0);
        for entry in walk(std::path::Path::new(&dir)) {
            let Ok(doc) = crate::extract::pdf::open(&std::fs::read(&entry).unwrap()) else {
                continue;
            };
            for (&number, &id) in &doc.get_pages() {
                total += 1;
                let Some(ours) = page_text(&doc, id) else {
                    continue;
                };
                accepted += 1;
                let mut theirs = String::new();
                let mut out = pdf_extract::PlainTextOutput::new(&mut theirs);
                let _ = pdf_extract::output_doc_page(&doc, &mut out, number);
                if words(&ours) == words(&theirs) {
                    same += 1;
                } else {
                    println!(
                        "{} p{number}:\n  ours:   {:.300}\n  theirs: {:.300}",
                        entry.display(),
                        words(&ours),
                        words(&theirs)
                    );
                }
            }
        }
        println!("pages {total}, accepted {accepted}, same words {same}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                out.push(p);
            }
        }
        out
    }
}
