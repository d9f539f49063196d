//! Signed files (`.p7m`: CMS/PKCS#7 SignedData, CAdES), as Italian citizens and professionals
//! attach them: the signed content is taken out, and the signers' certificate subjects are
//! read. DER, BER (indefinite lengths, chunked content) and base64/PEM wrappings are accepted.
//! The signature itself is not verified here (that needs the trust list of qualified
//! providers); what is recorded is who the container says signed it.

/// What a signed container holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    pub content: Vec<u8>,
    /// Certificate subjects of the signers (`CN=…, serialNumber=…`), in order.
    pub signers: Vec<String>,
}

const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// Nested envelopes (`file.pdf.p7m.p7m`, a countersignature) unwrapped at most this deep.
const MAX_NESTING: usize = 4;

/// Takes the signed content out of a `.p7m`; unwraps nested envelopes.
pub fn unwrap(bytes: &[u8]) -> Result<Signed, String> {
    let mut current = der_or_decoded(bytes)?;
    let mut signers = Vec::new();
    for _ in 0..MAX_NESTING {
        let (content, mut who) = signed_data(&current)?;
        signers.append(&mut who);
        match der_or_decoded(&content) {
            Ok(inner) if looks_signed(&inner) => current = inner,
            _ => return Ok(Signed { content, signers }),
        }
    }
    Err("signed envelopes nested too deep".into())
}

/// The name of the signed file: `domanda.pdf.p7m` → `domanda.pdf`.
pub fn inner_name(name: &str) -> String {
    let mut n = name.to_string();
    while n.to_ascii_lowercase().ends_with(".p7m") && n.len() > 4 {
        n.truncate(n.len() - 4);
    }
    n
}

pub fn is_p7m_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".p7m")
}

fn looks_signed(der: &[u8]) -> bool {
    signed_data(der).is_ok()
}

/// DER as it is, or decoded from base64 (with or without PEM armour).
fn der_or_decoded(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = String::from_utf8_lossy(bytes);
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let decoded = base64_decode(&body).ok_or("not a signed file (neither DER nor base64)")?;
    if decoded.first() == Some(&0x30) {
        Ok(decoded)
    } else {
        Err("not a signed file (no CMS structure)".into())
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One BER/DER element: tag, whether constructed, its contents.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    constructed: bool,
    body: &'a [u8],
}

/// Reads one element at the start of `b`; returns it and the rest.
fn read(b: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8]), String> {
    let bad = || "damaged signed file (bad ASN.1 structure)".to_string();
    if depth > 64 {
        return Err(bad());
    }
    let (&tag, rest) = b.split_first().ok_or_else(bad)?;
    if tag & 0x1F == 0x1F {
        return Err(bad()); // high tag numbers do not occur in CMS
    }
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let constructed = tag & 0x20 != 0;
    if first == 0x80 {
        // Indefinite length (BER): the contents end with an end-of-contents element.
        if !constructed {
            return Err(bad());
        }
        let mut cursor = rest;
        loop {
            if cursor.starts_with(&[0, 0]) {
                let used = rest.len() - cursor.len();
                return Ok((
                    Tlv {
                        tag,
                        constructed,
                        body: &rest[..used],
                    },
                    &cursor[2..],
                ));
            }
            let (_, after) = read(cursor, depth + 1)?;
            cursor = after;
        }
    }
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7F) as usize;
        if n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("damaged signed file (cut short)".into());
    }
    Ok((
        Tlv {
            tag,
            constructed,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The elements inside a constructed element (end-of-contents markers skipped).
fn children<'a>(t: &Tlv<'a>, depth: usize) -> Result<Vec<Tlv<'a>>, String> {
    let mut out = Vec::new();
    let mut rest = t.body;
    while !rest.is_empty() {
        if rest.starts_with(&[0, 0]) {
            break;
        }
        let (child, after) = read(rest, depth + 1)?;
        out.push(child);
        rest = after;
    }
    Ok(out)
}

/// An OCTET STRING's bytes, joined when BER split it into chunks.
fn octets(t: &Tlv, depth: usize) -> Result<Vec<u8>, String> {
    if !t.constructed {
        return Ok(t.body.to_vec());
    }
    let mut out = Vec::new();
    for c in children(t, depth)? {
        out.extend(octets(&c, depth + 1)?);
    }
    Ok(out)
}

/// ContentInfo → SignedData: the encapsulated content and the signers' subjects.
fn signed_data(der: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    let not_signed = || "not a signed file (no CMS SignedData)".to_string();
    let (info, _) = read(der, 0)?;
    let parts = children(&info, 0)?;
    let (oid, explicit) = match parts.as_slice() {
        [oid, explicit, ..] if oid.tag == 0x06 && explicit.tag == 0xA0 => (oid, explicit),
        _ => return Err(not_signed()),
    };
    if oid.body != SIGNED_DATA {
        return Err(not_signed());
    }
    let signed = children(explicit, 1)?
        .into_iter()
        .next()
        .ok_or_else(not_signed)?;
    let fields = children(&signed, 2)?;
    // version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
    let encap = fields.get(2).ok_or_else(not_signed)?;
    let encap_parts = children(encap, 3)?;
    let content = match encap_parts.get(1) {
        Some(e) if e.tag == 0xA0 => {
            let inner = children(e, 4)?.into_iter().next().ok_or_else(not_signed)?;
            octets(&inner, 5)?
        }
        _ => return Err("detached signature: the signed file is not inside the .p7m".into()),
    };
    let certificates: Vec<Tlv> = match fields.iter().find(|f| f.tag == 0xA0) {
        Some(c) => children(c, 3)?,
        None => Vec::new(),
    };
    let signer_serials: Vec<&[u8]> = fields
        .iter()
        .rev()
        .find(|f| f.tag == 0x31)
        .map(|set| children(set, 3).unwrap_or_default())
        .unwrap_or_default()
        .iter()
        .filter_map(|si| {
            let sid = children(si, 4).ok()?.into_iter().nth(1)?;
            let serial = children(&sid, 5).ok()?.into_iter().nth(1)?;
            (serial.tag == 0x02).then_some(serial.body)
        })
        .collect();
    let mut signers = Vec::new();
    for cert in &certificates {
        let Some((serial, subject)) = certificate_subject(cert) else {
            continue;
        };
        if signer_serials.is_empty() || signer_serials.contains(&serial) {
            signers.push(subject);
        }
    }
    Ok((content, signers))
}

/// A certificate's serial number and subject as `CN=…, serialNumber=…, O=…`.
fn certificate_subject<'a>(cert: &Tlv<'a>) -> Option<(&'a [u8], String)> {
    let tbs = children(cert, 4).ok()?.into_iter().next()?;
    let mut fields = children(&tbs, 5).ok()?.into_iter().peekable();
    if fields.peek().is_some_and(|f| f.tag == 0xA0) {
        fields.next(); // version
    }
    let serial = fields.next()?;
    let _signature_alg = fields.next()?;
    let _issuer = fields.next()?;
    let _validity = fields.next()?;
    let subject = fields.next()?;
    let mut parts = Vec::new();
    for rdn in children(&subject, 6).ok()? {
        for atv in children(&rdn, 7).ok()? {
            let kv = children(&atv, 8).ok()?;
            let (oid, value) = (kv.first()?, kv.get(1)?);
            let label = match oid.body {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x05] => "serialNumber",
                [0x55, 0x04, 0x2A] => "GN",
                [0x55, 0x04, 0x04] => "SN",
                [0x55, 0x04, 0x0A] => "O",
                [0x55, 0x04, 0x06] => "C",
                _ => continue,
            };
            let text = match value.tag {
                // BMPString: UTF-16BE
                0x1E => String::from_utf16_lossy(
                    &value
                        .body
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect::<Vec<_>>(),
                ),
                _ => String::from_utf8_lossy(value.body).into_owned(),
            };
            parts.push(format!("{label}={}", text.trim()));
        }
    }
    // Subject first by common name, as people read it.
    parts.sort_by_key(|p| !p.starts_with("CN="));
    (!parts.is_empty()).then(|| (serial.body, parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_p7m_suffixes() {
        assert_eq!(inner_name("domanda.pdf.p7m"), "domanda.pdf");
        assert_eq!(inner_name("domanda.pdf.P7M.p7m"), "domanda.pdf");
        assert!(is_p7m_name("X.P7M"));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(unwrap(b"").is_err());
        assert!(unwrap(b"hello world").is_err());
        assert!(unwrap(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(unwrap(&[0x30, 0x80, 0x30, 0x80]).is_err());
        let mut nested = vec![0x30u8, 0x80];
        for _ in 0..200 {
            nested.extend([0x30, 0x80]);
        }
        assert!(unwrap(&nested).is_err());
    }
}
