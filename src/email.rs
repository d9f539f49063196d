//! Unpacking one email: sender, date, subject, readable body, and every attachment with its
//! real name, nested messages included. Best effort, never a panic: what cannot be read is
//! reported in `problems`, and the raw message is always kept by the caller.

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;
use std::sync::LazyLock;

/// Nested `message/rfc822` deeper than this is kept as a file, not unpacked further.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Unpacked {
    pub subject: String,
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub reply_to: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub body: String,
    pub attachments: Vec<Attachment>,
    pub problems: Vec<String>,
    /// To and Cc addresses.
    pub recipients: Vec<String>,
    /// Message-IDs this one answers (In-Reply-To, then References), without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Set when the message is a PEC envelope or receipt.
    pub pec: Option<Pec>,
    /// Why no automatic answer may be sent to this message (RFC 3834), if so.
    pub no_auto_reply: Option<String>,
    /// Why the message as a whole is damaged or made to break readers (the ticket's
    /// original is then flagged as unreadable), if it is.
    pub damaged: Option<String>,
    /// Set when the message is a voicemail sent on by Asterisk (`X-Asterisk-VM-*`).
    pub voicemail: Option<Voicemail>,
}

/// The caller of a voicemail sent on by email, as the exchange's headers say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Voicemail {
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    pub duration_secs: Option<u32>,
}

/// The certified facts of a PEC message, from its `daticert.xml` and transport headers.
/// Fields in alphabetical order, as events' are ([`crate::domain::event::Happened`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pec {
    /// When the provider certified it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The provider's error, for non-delivery receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's identifier of the transport (`identificativo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// `posta-certificata` for a message; for receipts `accettazione`, `avvenuta-consegna`,
    /// `non-accettazione`, `errore-consegna`, `preavviso-errore-consegna`, `presa-in-carico`,
    /// `rilevazione-virus`.
    pub kind: String,
    /// Message-ID of the original message (for receipts: the message they are about).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The certified sender (`mittente`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
}

impl Pec {
    pub fn is_receipt(&self) -> bool {
        self.kind != "posta-certificata"
    }
}

pub fn unpack(raw: &[u8]) -> Unpacked {
    let mut out = Unpacked::default();
    let Some(message) = PARSER.parse(raw) else {
        out.problems.push("not a readable email message".into());
        return out;
    };
    if let Some(depth) = too_deep(&message) {
        out.damaged = Some(format!(
            "the message nests its parts {depth} levels deep (damaged or made to break mail readers); parts deeper than {MAX_PART_DEPTH} levels were not read"
        ));
        out.problems.push(out.damaged.clone().unwrap_or_default());
    }
    out.subject = message.subject().unwrap_or_default().trim().to_string();
    if let Some(addr) = message.from().and_then(|a| a.first()) {
        out.from_name = addr
            .name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        out.from_address = addr
            .address()
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| a.contains('@'));
    } else {
        out.problems.push("no sender (From) address".into());
    }
    out.reply_to = message
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_ascii_lowercase());
    out.date = message.date().map(|d| {
        chrono::DateTime::from_timestamp(d.to_timestamp(), 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| d.to_rfc3339())
    });
    out.message_id = message.message_id().map(str::to_string);
    out.recipients = [message.to(), message.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    out.in_reply_to = message_ids(message.in_reply_to());
    for id in message_ids(message.references()) {
        if !out.in_reply_to.contains(&id) {
            out.in_reply_to.push(id);
        }
    }
    out.body = body_text(&message);
    collect_attachments(&message, 0, &mut out);
    out.pec = pec_facts(&message, &out.attachments);
    if out.pec.as_ref().is_some_and(|p| !p.is_receipt()) {
        unwrap_pec_envelope(&mut out);
    }
    out.no_auto_reply = no_auto_reply(&message, &out);
    out.voicemail = voicemail(&message);
    out
}

/// Asterisk's voicemail-to-email headers (`X-Asterisk-VM-Caller-ID-Num`, `…-Name`,
/// `…-Duration`), when the message carries them.
fn voicemail(message: &Message) -> Option<Voicemail> {
    let num = header(message, "X-Asterisk-VM-Caller-ID-Num");
    let name = header(message, "X-Asterisk-VM-Caller-ID-Name");
    let duration = header(message, "X-Asterisk-VM-Duration");
    if num.is_none() && name.is_none() && header(message, "X-Asterisk-VM-Message-Num").is_none() {
        return None;
    }
    let (caller_name, caller_number) = crate::sources::voicemail::split_callerid(&format!(
        "\"{}\" <{}>",
        name.unwrap_or(""),
        num.unwrap_or("")
    ));
    Some(Voicemail {
        caller_name,
        caller_number,
        duration_secs: duration.and_then(|d| d.trim().parse().ok()),
    })
}

/// Deepest nesting of multiparts a real message has (mail clients nest three or four).
const MAX_PART_DEPTH: usize = 50;

/// How deep the message's multiparts nest, when deeper than [`MAX_PART_DEPTH`]. Walked with
/// an explicit stack: the walk cannot overflow, whatever the message.
fn too_deep(message: &Message) -> Option<usize> {
    let mut deepest = 0;
    let mut stack = vec![(0u32, 1usize)];
    let mut seen = 0usize;
    while let Some((id, depth)) = stack.pop() {
        seen += 1;
        if seen > message.parts.len() * 2 + 1 {
            // Parts that list each other: no real message does that.
            return Some(depth.max(MAX_PART_DEPTH + 1));
        }
        deepest = deepest.max(depth);
        if let Some(PartType::Multipart(children)) = message.parts.get(id as usize).map(|p| &p.body)
        {
            stack.extend(children.iter().map(|&c| (c, depth + 1)));
        }
    }
    (deepest > MAX_PART_DEPTH).then_some(deepest)
}

/// mail-parser with its default header parsers, except that it leaves bodies in their
/// transfer encoding: its base64 decoder goes byte by byte (a third of the time spent on a
/// message with a PDF attached), so `part_bytes` decodes instead.
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    use HeaderName::*;
    let mut p = MessageParser::new();
    for h in [Subject, Comments, ContentDescription, ContentLocation] {
        p = p.header_text(h);
    }
    for h in [
        From,
        To,
        Cc,
        Bcc,
        ReplyTo,
        Sender,
        ResentTo,
        ResentFrom,
        ResentBcc,
        ResentCc,
        ResentSender,
        ListArchive,
        ListHelp,
        ListId,
        ListOwner,
        ListPost,
        ListSubscribe,
        ListUnsubscribe,
    ] {
        p = p.header_address(h);
    }
    for h in [Date, ResentDate] {
        p = p.header_date(h);
    }
    for h in [
        MessageId,
        References,
        InReplyTo,
        ReturnPath,
        ContentId,
        ResentMessageId,
    ] {
        p = p.header_id(h);
    }
    for h in [Keywords, ContentLanguage] {
        p = p.header_comma_separated(h);
    }
    p.header_received(Received)
        .header_content_type(ContentType)
        .header_content_type(ContentDisposition)
        .ignore_header(ContentTransferEncoding)
        .default_header_raw()
});

#[derive(Debug, Clone, Copy, PartialEq)]
enum TransferEncoding {
    Base64,
    QuotedPrintable,
    /// 7bit, 8bit, binary, or anything unknown: the bytes as they are.
    Identity,
}

/// A part's `Content-Transfer-Encoding`, read from the raw header (the last one wins, as in
/// mail-parser): a token, case-insensitive, comments and parameters ignored.
fn transfer_encoding(message: &Message, part: &MessagePart) -> TransferEncoding {
    let Some(h) = part
        .headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
    else {
        return TransferEncoding::Identity;
    };
    let value = message
        .raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default();
    let token: Vec<u8> = value
        .iter()
        .copied()
        .skip_while(|c| c.is_ascii_whitespace())
        .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'(' | b';'))
        .collect();
    if token.eq_ignore_ascii_case(b"base64") {
        TransferEncoding::Base64
    } else if token.eq_ignore_ascii_case(b"quoted-printable") {
        TransferEncoding::QuotedPrintable
    } else {
        TransferEncoding::Identity
    }
}

/// A part's body as sent, still in its transfer encoding.
fn raw_body<'a>(message: &'a Message, part: &MessagePart) -> &'a [u8] {
    message
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default()
}

/// A part's content: decoded from its transfer encoding; text parts as UTF-8 (from their
/// charset). A base64 body with stray characters is decoded around them, and said so.
fn part_bytes<'a>(
    message: &'a Message,
    part: &'a MessagePart,
    problems: &mut Vec<String>,
) -> Cow<'a, [u8]> {
    let encoding = transfer_encoding(message, part);
    if encoding == TransferEncoding::Identity {
        return Cow::Borrowed(part.contents());
    }
    let raw = raw_body(message, part);
    let decoded = match encoding {
        TransferEncoding::Base64 => {
            let (bytes, stray) = decode_base64_mime(raw);
            if stray > 0 {
                let name = part.attachment_name().unwrap_or("a part");
                problems.push(format!(
                    "{}: {stray} characters that are not base64 were skipped",
                    sanitize_name(name)
                ));
            }
            bytes
        }
        _ => decode_quoted_printable(raw),
    };
    match &part.body {
        PartType::Text(_) | PartType::Html(_) => {
            Cow::Owned(text_in_charset(part, decoded).into_bytes())
        }
        _ => Cow::Owned(decoded),
    }
}

/// Text from bytes in the part's declared charset (UTF-8 when none or unknown).
fn text_in_charset(part: &MessagePart, bytes: Vec<u8>) -> String {
    let decoder = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()));
    match decoder {
        Some(decode) => decode(&bytes),
        None => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A text part's text, decoded from its transfer encoding and charset.
fn part_text<'a>(message: &'a Message, part: &'a MessagePart) -> Option<Cow<'a, str>> {
    if transfer_encoding(message, part) == TransferEncoding::Identity {
        return part.text_contents().map(Cow::Borrowed);
    }
    match part_bytes(message, part, &mut Vec::new()) {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::Owned),
    }
}

const BASE64_INVALID: u8 = 0xff;

static BASE64_VALUES: [u8; 256] = {
    let mut table = [BASE64_INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// MIME base64 (RFC 2045 6.8), forgiving as mail readers are: line breaks and blanks are
/// skipped, `=` ends a quantum (so concatenated encodings decode whole), and characters
/// outside the alphabet are skipped and counted. Four characters at a time between line
/// breaks; a line of 76 characters is 19 such steps.
pub fn decode_base64_mime(input: &[u8]) -> (Vec<u8>, usize) {
    // Room for the last 8-byte store of the fast path.
    let mut out = vec![0u8; input.len() / 4 * 3 + 8];
    let mut len = 0;
    let mut stray = 0;
    let (mut acc, mut have) = (0u32, 0u8);
    let mut i = 0;
    while i < input.len() {
        if have == 0 {
            // Eight characters (six bytes) at a time, then four: the run between line breaks.
            decode_base64_groups::<8>(input, &mut i, &mut out, &mut len);
            decode_base64_groups::<4>(input, &mut i, &mut out, &mut len);
            if i >= input.len() {
                break;
            }
        }
        let ch = input[i];
        i += 1;
        // A line opening with `--` is a MIME boundary (`-` is not in the alphabet): the body
        // ends there even when the part's end was misjudged.
        if ch == b'-'
            && input.get(i) == Some(&b'-')
            && (i == 1 || matches!(input[i - 2], b'\n' | b'\r'))
        {
            break;
        }
        let v = BASE64_VALUES[ch as usize];
        if v != BASE64_INVALID {
            acc = acc << 6 | v as u32;
            have += 1;
            if have == 4 {
                out[len..len + 3].copy_from_slice(&acc.to_be_bytes()[1..]);
                len += 3;
                (acc, have) = (0, 0);
            }
        } else if ch == b'=' {
            len += flush_base64(&mut out[len..], acc, have);
            (acc, have) = (0, 0);
        } else if !ch.is_ascii_whitespace() {
            stray += 1;
        }
    }
    len += flush_base64(&mut out[len..], acc, have);
    out.truncate(len);
    (out, stray)
}

/// Quoted-printable (RFC 2045 6.7), forgiving: `=XX` is a byte, `=` at the end of a line
/// joins it to the next, any other `=` stays as it is (mail readers show it; a strict decoder
/// would lose the whole part); blanks before a line break are dropped.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let ch = input[i];
        match ch {
            b'=' => {
                if let (Some(h), Some(l)) = (
                    input.get(i + 1).copied().and_then(hex),
                    input.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                let blanks = input[i + 1..]
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                match input.get(i + 1 + blanks) {
                    Some(b'\n') => i += 2 + blanks,
                    Some(b'\r') if input.get(i + 2 + blanks) == Some(&b'\n') => i += 3 + blanks,
                    None => i = input.len(),
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b'\r' | b'\n' => {
                while out.last().is_some_and(|&c| c == b' ' || c == b'\t') {
                    out.pop();
                }
                out.push(ch);
                i += 1;
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Whole groups of `N` characters (8 or 4) from `input[*i..]` while every one is in the
/// alphabet; each group's bytes are stored with one 8-byte write (`out` has room past the end).
fn decode_base64_groups<const N: usize>(
    input: &[u8],
    i: &mut usize,
    out: &mut [u8],
    len: &mut usize,
) {
    while let Some(chunk) = input.get(*i..*i + N) {
        let values: [u8; N] = std::array::from_fn(|k| BASE64_VALUES[chunk[k] as usize]);
        if values.iter().fold(0, |m, v| m | v) & 0xc0 != 0 {
            break;
        }
        let bits = values.iter().fold(0u64, |n, &v| n << 6 | v as u64);
        out[*len..*len + 8].copy_from_slice(&(bits << (64 - 6 * N)).to_be_bytes());
        *len += N / 4 * 3;
        *i += N;
    }
}

/// The bytes of an incomplete quantum of `have` characters.
fn flush_base64(out: &mut [u8], acc: u32, have: u8) -> usize {
    match have {
        2 => {
            out[0] = (acc >> 4) as u8;
            1
        }
        3 => {
            out[0] = (acc >> 10) as u8;
            out[1] = (acc >> 2) as u8;
            2
        }
        _ => 0,
    }
}

fn message_ids(v: &mail_parser::HeaderValue) -> Vec<String> {
    let texts: Vec<&str> = match v.as_text_list() {
        Some(list) => list.iter().map(|c| c.as_ref()).collect(),
        None => v.as_text().into_iter().collect(),
    };
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .map(|id| id.trim_matches(['<', '>']).to_string())
        .filter(|id| id.contains('@'))
        .collect()
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    // Looked up by hand: mail-parser's lookup borrows the name for the message's lifetime.
    message
        .headers()
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .and_then(|h| {
            message
                .raw_message()
                .get(h.offset_start as usize..h.offset_end as usize)
        })
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A PEC message or receipt: by its transport headers (`X-Trasporto`, `X-Ricevuta`), or by a
/// `daticert.xml` among its parts.
fn pec_facts(message: &Message, attachments: &[Attachment]) -> Option<Pec> {
    let transport = header(message, "X-Trasporto").map(str::to_ascii_lowercase);
    let receipt = header(message, "X-Ricevuta").map(str::to_ascii_lowercase);
    let daticert = attachments
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case("daticert.xml"))
        .map(|a| String::from_utf8_lossy(&a.bytes).into_owned());
    if transport.is_none() && receipt.is_none() && daticert.is_none() {
        return None;
    }
    let xml = daticert.unwrap_or_default();
    let kind = receipt
        .or_else(|| xml_attr(&xml, "postacert", "tipo"))
        .or(transport)
        .unwrap_or_else(|| "posta-certificata".into());
    let date = match (xml_tag(&xml, "giorno"), xml_tag(&xml, "ora")) {
        (Some(day), Some(time)) => {
            let zone = xml_attr(&xml, "data", "zona").unwrap_or_else(|| "+0100".into());
            chrono::DateTime::parse_from_str(
                &format!("{day} {time} {zone}"),
                "%d/%m/%Y %H:%M:%S %z",
            )
            .ok()
            .map(|d| {
                d.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
        }
        _ => None,
    };
    Some(Pec {
        kind,
        sender: xml_tag(&xml, "mittente").map(|s| s.to_ascii_lowercase()),
        date,
        identifier: xml_tag(&xml, "identificativo"),
        msgid: header(message, "X-Riferimento-Message-ID")
            .map(str::to_string)
            .or_else(|| xml_tag(&xml, "msgid"))
            .map(|id| id.trim().trim_matches(['<', '>']).to_string()),
        provider: xml_tag(&xml, "gestore-emittente"),
        error: xml_tag(&xml, "errore-esteso")
            .or_else(|| xml_attr(&xml, "postacert", "errore").filter(|e| e != "nessuno")),
    })
}

/// The citizen's message is `postacert.eml` inside the provider's envelope: it becomes the
/// message (sender, subject, body, attachments); the envelope's own parts other than
/// `daticert.xml` and `postacert.eml` (the provider's notice, its signature) are dropped.
fn unwrap_pec_envelope(out: &mut Unpacked) {
    let Some(inner_raw) = out
        .attachments
        .iter()
        .find(|a| a.mime == "message/rfc822" && a.name.eq_ignore_ascii_case("postacert.eml"))
        .or_else(|| out.attachments.iter().find(|a| a.mime == "message/rfc822"))
        .map(|a| a.bytes.clone())
    else {
        out.problems
            .push("PEC envelope without the original message (postacert.eml)".into());
        return;
    };
    let inner = unpack(&inner_raw);
    let kept: Vec<Attachment> = out
        .attachments
        .drain(..)
        .filter(|a| {
            a.name.eq_ignore_ascii_case("daticert.xml")
                || a.name.eq_ignore_ascii_case("postacert.eml")
        })
        .take(2)
        .collect();
    let pec = out.pec.take();
    let envelope_problems = std::mem::take(&mut out.problems);
    let envelope_date = out.date.take();
    *out = Unpacked {
        attachments: kept.into_iter().chain(inner.attachments).collect(),
        pec,
        date: inner.date.or(envelope_date),
        problems: envelope_problems
            .into_iter()
            .chain(inner.problems)
            .collect(),
        ..inner
    };
    // The certified sender is who the office answers, whatever the inner From says.
    if let Some(sender) = out.pec.as_ref().and_then(|p| p.sender.clone()) {
        if out.from_address.is_none() {
            out.from_address = Some(sender);
        }
    }
}

/// RFC 3834 and common practice: messages no person is waiting to be answered on.
fn no_auto_reply(message: &Message, u: &Unpacked) -> Option<String> {
    if let Some(pec) = &u.pec {
        if pec.is_receipt() {
            return Some(format!("PEC receipt ({})", pec.kind));
        }
    }
    if let Some(v) = header(message, "Auto-Submitted") {
        if !v.eq_ignore_ascii_case("no") {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    if let Some(v) = header(message, "Precedence") {
        if ["bulk", "list", "junk"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
        {
            return Some(format!("Precedence: {v}"));
        }
    }
    for h in message.headers() {
        let name = h.name.as_str();
        // By bytes: a header name is outside input and may not be ASCII.
        if name.len() > 5 && name.as_bytes()[..5].eq_ignore_ascii_case(b"List-") {
            return Some(format!("mailing list ({name})"));
        }
        if [
            "X-Loop",
            "X-Autoreply",
            "X-Autorespond",
            "X-Auto-Response-Suppress",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            return Some(format!("{name} header"));
        }
    }
    if header(message, "Return-Path").is_some_and(|v| v.trim_matches(['<', '>', ' ']).is_empty()) {
        return Some("bounce (null sender)".into());
    }
    if message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    }) {
        return Some("delivery or disposition report".into());
    }
    let from = u.from_address.as_deref().unwrap_or_default();
    let local = from
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if local == "mailer-daemon" || local == "postmaster" {
        return Some(format!("bounce (from {local})"));
    }
    let reply_to = if is_no_reply(from) {
        u.reply_to.as_deref()
    } else {
        Some(from)
    };
    match reply_to {
        None | Some("") => Some("no address to answer".into()),
        Some(a) if is_no_reply(a) => Some(format!("no-reply address {a}")),
        Some(_) => None,
    }
}

/// `noreply@…`, `no-reply@…`, `donotreply@…`: addresses nobody reads.
pub fn is_no_reply(address: &str) -> bool {
    let local = address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    local.replace(['-', '_', '.'], "").starts_with("noreply") || local.starts_with("donotreply")
}

/// Text of the first `<tag>` (attributes allowed), XML entities decoded.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let start = from + i + open.len();
        let next = xml[start..].chars().next()?;
        if next == '>' || next.is_whitespace() {
            let body_start = start + xml[start..].find('>')? + 1;
            let end = body_start + xml[body_start..].find(&format!("</{tag}>"))?;
            let text = xml_unescape(xml[body_start..end].trim());
            return (!text.is_empty()).then_some(text);
        }
        from = start;
    }
    None
}

fn xml_attr(xml: &str, tag: &str, attr: &str) -> Option<String> {
    let open = format!("<{tag} ");
    let start = xml.find(&open)? + open.len();
    let head = &xml[start..start + xml[start..].find('>')?];
    let key = format!("{attr}=\"");
    let v = head.find(&key)? + key.len();
    Some(xml_unescape(&head[v..v + head[v..].find('"')?]))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text a person reads: the text/plain body, or the HTML body turned into text.
fn body_text(message: &Message) -> String {
    let plain: Vec<Cow<str>> = message
        .text_bodies()
        .filter(|p| !p.is_text_html())
        .filter_map(|p| part_text(message, p))
        .collect();
    if plain.iter().any(|t| !t.trim().is_empty()) {
        return plain.join("\n\n").trim().to_string();
    }
    let html: Vec<String> = message
        .html_bodies()
        .filter_map(|p| part_text(message, p))
        .map(|h| html_to_text(&h))
        .collect();
    html.join("\n\n").trim().to_string()
}

/// Readable text from HTML: tags dropped, links kept as text, never raw markup.
pub fn html_to_text(html: &str) -> String {
    let text = html2text::from_read(html.as_bytes(), 100);
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn collect_attachments(message: &Message, depth: usize, out: &mut Unpacked) {
    for (i, part) in message.attachments().enumerate() {
        let mime = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_string())
            .to_ascii_lowercase();
        let name = part
            .attachment_name()
            .map(sanitize_name)
            .filter(|n| !n.is_empty());
        let is_message = matches!(part.body, PartType::Message(_))
            || matches!(mime.as_str(), "message/rfc822" | "message/global");
        if is_message && transfer_encoding(message, part) != TransferEncoding::Identity {
            // Forbidden by RFC 2046 but sent: a message in base64 or quoted-printable. The
            // parser left it encoded, so it is parsed again once decoded.
            let raw = part_bytes(message, part, &mut out.problems).into_owned();
            match PARSER.parse(&raw).filter(|m| !m.headers().is_empty()) {
                Some(nested) => push_message(&nested, name, i, depth, out),
                None => {
                    let name = name.unwrap_or_else(|| format!("message-{}.eml", i + 1));
                    out.attachments.push(Attachment {
                        name,
                        mime: "message/rfc822".into(),
                        bytes: raw,
                    });
                }
            }
            continue;
        }
        match &part.body {
            PartType::Message(nested) => push_message(nested, name, i, depth, out),
            _ => {
                let bytes = part_bytes(message, part, &mut out.problems).into_owned();
                let name = name
                    .unwrap_or_else(|| format!("attachment-{}.{}", i + 1, extension_for(&mime)));
                out.attachments.push(Attachment { name, mime, bytes });
            }
        }
    }
}

/// A nested message: kept whole as a `.eml`, then unpacked for its own attachments.
fn push_message(
    nested: &Message,
    name: Option<String>,
    i: usize,
    depth: usize,
    out: &mut Unpacked,
) {
    let name = name.unwrap_or_else(|| {
        let subject = nested.subject().map(sanitize_name).unwrap_or_default();
        if subject.is_empty() {
            format!("message-{}.eml", i + 1)
        } else {
            format!("{subject}.eml")
        }
    });
    out.attachments.push(Attachment {
        name,
        mime: "message/rfc822".into(),
        bytes: nested.raw_message().to_vec(),
    });
    if depth < MAX_DEPTH {
        collect_attachments(nested, depth + 1, out);
    } else {
        out.problems.push(format!(
            "messages nested deeper than {MAX_DEPTH} levels were kept whole, not unpacked"
        ));
    }
}

/// A file name safe to show and to save: no path, no control characters.
pub fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .trim_matches('.')
        .to_string()
}

fn extension_for(mime: &str) -> &'static str {
    match mime {
        "application/pdf" => "pdf",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/tiff" => "tif",
        "text/plain" => "txt",
        "text/html" => "html",
        "message/rfc822" => "eml",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_a_simple_message_with_attachment() {
        let raw = b"From: Mario Rossi <Mario.Rossi@Example.it>\r\nTo: urp@comune.it\r\nSubject: =?UTF-8?Q?Richiesta_allaccio_gas_citt=C3=A0?=\r\nDate: Tue, 1 Jun 2010 10:00:00 +0200\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nChiedo l'allaccio. Citt=E0\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''domanda%20n%C2%B01.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
        let u = unpack(raw);
        assert_eq!(u.subject, "Richiesta allaccio gas città");
        assert_eq!(u.from_address.as_deref(), Some("mario.rossi@example.it"));
        assert_eq!(u.from_name.as_deref(), Some("Mario Rossi"));
        assert_eq!(u.date.as_deref(), Some("2010-06-01T08:00:00Z"));
        assert!(u.body.contains("Città"), "{}", u.body);
        assert_eq!(u.attachments.len(), 1);
        assert_eq!(u.attachments[0].name, "domanda n°1.pdf");
        assert_eq!(u.attachments[0].bytes, b"%PDF-1.4\n");
    }

    #[test]
    fn base64_decodes_every_length_and_line_layout() {
        let bytes: Vec<u8> = (0..400u32).map(|i| (i * 7919 % 251) as u8).collect();
        for n in 0..bytes.len() {
            let encoded = crate::testdata::base64_mime(&bytes[..n]);
            for text in [
                encoded.clone(),
                encoded.replace("\r\n", "\n"),
                encoded.replace("\r\n", ""),
                encoded.replace("\r\n", " \t\r\n"),
            ] {
                let (decoded, stray) = decode_base64_mime(text.as_bytes());
                assert_eq!(decoded, &bytes[..n], "length {n}: {text:?}");
                assert_eq!(stray, 0);
            }
        }
    }

    #[test]
    fn base64_forgives_what_mail_readers_forgive() {
        // Two encodings run together, each with its padding.
        assert_eq!(decode_base64_mime(b"YWI=\r\nY2Rl\r\n").0, b"abcde");
        // Characters outside the alphabet are skipped and counted.
        assert_eq!(decode_base64_mime(b"YW!!Jj\r\n"), (b"abc".to_vec(), 2));
        // A boundary line ends the body.
        assert_eq!(decode_base64_mime(b"YWJj\r\n--XX--\r\n").0, b"abc");
        assert_eq!(decode_base64_mime(b"").0, b"");
    }

    #[test]
    fn quoted_printable_keeps_what_it_cannot_decode() {
        assert_eq!(
            decode_quoted_printable(b"Citt=E0 =\r\nok  \r\nversion=\"1.0\" 5=\n"),
            b"Citt\xe0 ok\r\nversion=\"1.0\" 5"
        );
        assert_eq!(decode_quoted_printable(b"a=3D=3db="), b"a==b");
    }

    #[test]
    fn encoded_text_parts_and_messages_are_decoded() {
        let inner = "From: Anna <anna@example.it>\r\nSubject: interno\r\nContent-Type: multipart/mixed; boundary=\"in\"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nciao\r\n--in\r\nContent-Type: application/pdf; name=\"d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--in--\r\n";
        let raw = format!(
            "From: a@b.it\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
             Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: Base64 (latin)\r\n\r\n{}\r\n--XX\r\n\
             Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
            crate::testdata::base64_mime(b"Perch\xe9 la citt\xe0"),
            crate::testdata::base64_mime(inner.as_bytes()),
        );
        let u = unpack(raw.as_bytes());
        assert_eq!(u.body, "Perché la città");
        let names: Vec<&str> = u.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["interno.eml", "d.pdf"]);
        assert_eq!(u.attachments[0].bytes, inner.as_bytes());
        assert_eq!(u.attachments[1].bytes, b"%PDF-1.4\n");
        assert!(u.problems.is_empty(), "{:?}", u.problems);
    }

    #[test]
    fn a_header_name_that_is_not_ascii_is_no_panic() {
        // Found by the fuzzer: the name's first five bytes cut a character in two.
        let raw = "From: a@b.it\r\nSubject: x\r\nListè-Id: y\r\nX-Lisè: z\r\n\r\nbody\r\n";
        let u = unpack(raw.as_bytes());
        assert_eq!(u.body.trim(), "body");
    }

    #[test]
    fn html_only_bodies_become_text() {
        let raw = b"From: a@b.it\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<html><body><p>Buongiorno,</p><script>alert(1)</script><p>serve <b>aiuto</b></p></body></html>";
        let u = unpack(raw);
        assert!(
            u.body.contains("Buongiorno") && u.body.contains("aiuto"),
            "{}",
            u.body
        );
        assert!(!u.body.contains("<p>"), "{}", u.body);
    }
}
