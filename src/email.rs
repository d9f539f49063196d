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
    out.body = body_text(&message);
    collect_attachments(&message, 0, &mut out);
    out
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
