//! Unpacking one email: sender, date, subject, readable body, and every attachment with its
//! real name, nested messages included. Best effort, never a panic: what cannot be read is
//! reported in `problems`, and the raw message is always kept by the caller.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

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
}

/// The certified facts of a PEC message, from its `daticert.xml` and transport headers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Pec {
    /// `posta-certificata` for a message; for receipts `accettazione`, `avvenuta-consegna`,
    /// `non-accettazione`, `errore-consegna`, `preavviso-errore-consegna`, `presa-in-carico`,
    /// `rilevazione-virus`.
    pub kind: String,
    /// The certified sender (`mittente`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// When the provider certified it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The provider's identifier of the transport (`identificativo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Message-ID of the original message (for receipts: the message they are about).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's error, for non-delivery receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Pec {
    pub fn is_receipt(&self) -> bool {
        self.kind != "posta-certificata"
    }
}

pub fn unpack(raw: &[u8]) -> Unpacked {
    let mut out = Unpacked::default();
    let Some(message) = MessageParser::default().parse(raw) else {
        out.problems.push("not a readable email message".into());
        return out;
    };
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
    out
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
        if name.len() > 5 && name[..5].eq_ignore_ascii_case("List-") {
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
    let plain: Vec<String> = message
        .text_bodies()
        .filter(|p| !p.is_text_html())
        .filter_map(|p| p.text_contents())
        .map(str::to_string)
        .collect();
    if plain.iter().any(|t| !t.trim().is_empty()) {
        return plain.join("\n\n").trim().to_string();
    }
    let html: Vec<String> = message
        .html_bodies()
        .filter_map(|p| p.text_contents())
        .map(html_to_text)
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
        match &part.body {
            PartType::Message(nested) => {
                let name = name.unwrap_or_else(|| {
                    let subject = nested.subject().map(sanitize_name).unwrap_or_default();
                    if subject.is_empty() {
                        format!("message-{}.eml", i + 1)
                    } else {
                        format!("{subject}.eml")
                    }
                });
                let raw = nested.raw_message().to_vec();
                out.attachments.push(Attachment {
                    name,
                    mime: "message/rfc822".into(),
                    bytes: raw,
                });
                if depth < MAX_DEPTH {
                    collect_attachments(nested, depth + 1, out);
                } else {
                    out.problems.push(format!("messages nested deeper than {MAX_DEPTH} levels were kept whole, not unpacked"));
                }
            }
            _ => {
                let bytes = part.contents().to_vec();
                let name = name
                    .unwrap_or_else(|| format!("attachment-{}.{}", i + 1, extension_for(&mime)));
                out.attachments.push(Attachment { name, mime, bytes });
            }
        }
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
