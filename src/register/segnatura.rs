//! The *segnatura di protocollo* of a registration: AgID's `SegnaturaInformatica` (schema
//! `segnatura_protocollo.xsd` 3.0.0, namespace `http://www.agid.gov.it/protocollo/`), with
//! the impronta (SHA-256, base64) of every original, sealed by the AOO (see `seal.rs`).
//!
//! The schema qualifies attributes too (`attributeFormDefault="qualified"`), so every
//! attribute carries the `prot:` prefix; elements follow the schema's sequences in order.

use super::{seal, xml_escape as x, RegisterConfig, RegisterError, SealFiles};
use crate::classify::rules::TopicDef;
use crate::model::{DocumentKind, Ticket};
use crate::store::blobs::{sha256_hex, BlobStore};
use base64::Engine as _;

pub const NAMESPACE: &str = "http://www.agid.gov.it/protocollo/";

/// Shown as the classification of a registration whose topic has no *classifica* (unsorted,
/// or a topic the admin did not map to the titolario).
pub const UNCLASSIFIED: (&str, &str) = ("Da classificare", "n.c.");

/// The topic of the registration as the titolario names it: its label and *classifica*.
pub struct Classification<'a> {
    pub label: &'a str,
    pub code: &'a str,
}

impl<'a> Classification<'a> {
    pub fn of(topic: Option<&'a TopicDef>) -> Classification<'a> {
        match topic {
            Some(t) => Classification {
                label: &t.label,
                code: t.classifica.as_deref().unwrap_or(UNCLASSIFIED.1),
            },
            None => Classification {
                label: UNCLASSIFIED.0,
                code: UNCLASSIFIED.1,
            },
        }
    }
}

/// The number AgID wants (`[0-9]{7,}`) and the registration's date and time in the office's
/// local time (the daily register's days are local days too), with its offset.
fn number_date_time(t: &Ticket) -> (String, String, String) {
    let number = t
        .protocol
        .split_once('/')
        .map_or(t.protocol.as_str(), |(_, n)| n);
    let number = format!("{:0>7}", number);
    match chrono::DateTime::parse_from_rfc3339(&t.registered_at) {
        Ok(at) => {
            let local = at.with_timezone(&chrono::Local);
            (
                number,
                local.format("%Y-%m-%d").to_string(),
                local.format("%H:%M:%S%:z").to_string(),
            )
        }
        // The store writes RFC 3339; anything else is shown as it is.
        Err(_) => {
            let (date, time) = t
                .registered_at
                .split_once('T')
                .unwrap_or((&t.registered_at, "00:00:00Z"));
            (number, date.to_string(), time.to_string())
        }
    }
}

/// The impronta of a stored original, after checking the stored bytes still have it.
fn impronta(
    blobs: &BlobStore,
    name: &str,
    sha256_hex_stored: &str,
) -> Result<String, RegisterError> {
    let original = |detail: String| RegisterError::Original {
        name: name.to_string(),
        expected: sha256_hex_stored.to_string(),
        detail,
    };
    let bytes = blobs
        .get(sha256_hex_stored)
        .map_err(|e| original(format!("cannot read it: {e}")))?;
    let actual = sha256_hex(&bytes);
    if actual != sha256_hex_stored {
        return Err(original(format!("its bytes now hash to {actual}")));
    }
    let raw = hex::decode(sha256_hex_stored).map_err(|e| original(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The citizen as AgID's `PersonaFisica`: the name as written, split at its first space
/// (a name alone is kept whole as the surname), with the addresses the request came from.
fn sender(t: &Ticket) -> String {
    let name = t.sender.name.as_deref().unwrap_or("").trim();
    let (nome, cognome) = match name.split_once(char::is_whitespace) {
        Some((n, c)) => (n.trim(), c.trim()),
        None => ("", name),
    };
    let mut contacts = String::new();
    if let Some(email) = &t.sender.email {
        contacts.push_str(&format!(
            "<prot:IndirizzoTelematico prot:tipo=\"smtp\">{}</prot:IndirizzoTelematico>",
            x(email)
        ));
    }
    for phone in [&t.sender.phone, &t.sender.fax].into_iter().flatten() {
        contacts.push_str(&format!("<prot:Telefono>{}</prot:Telefono>", x(phone)));
    }
    let contacts = if contacts.is_empty() {
        String::new()
    } else {
        format!("<prot:Contatti>{contacts}</prot:Contatti>")
    };
    format!(
        "<prot:Mittente><prot:PersonaFisica><prot:Nome>{}</prot:Nome><prot:Cognome>{}</prot:Cognome>{contacts}</prot:PersonaFisica></prot:Mittente>",
        x(nome),
        x(cognome)
    )
}

/// A code's `prot:descrizione` attribute (with its leading space), or nothing.
fn descrizione(name: Option<&str>) -> String {
    name.map(|n| format!(" prot:descrizione=\"{}\"", x(n)))
        .unwrap_or_default()
}

/// The office receiving the request, as AgID's `Amministrazione` (with its AOO). Earlier
/// drafts of the schema called it `PA` (`DenominazionePA`, `CFPA`); the published 3.0.0
/// names it as here.
fn addressee(reg: &RegisterConfig) -> String {
    let aoo_name = descrizione(reg.aoo_name.as_deref());
    format!(
        "<prot:Destinatario><prot:Amministrazione>\
<prot:DenominazioneAmministrazione>{}</prot:DenominazioneAmministrazione>\
<prot:CFAmministrazione>{}</prot:CFAmministrazione>\
<prot:CodiceIPAAmministrazione>{}</prot:CodiceIPAAmministrazione>\
<prot:CodiceIPAAOO{aoo_name}>{}</prot:CodiceIPAAOO>\
</prot:Amministrazione></prot:Destinatario>",
        x(&reg.administration),
        x(&reg.fiscal_code),
        x(&reg.ipa),
        x(&reg.aoo)
    )
}

/// The segnatura with an empty signature template, ready for [`seal::sign`].
pub fn unsealed(
    t: &Ticket,
    reg: &RegisterConfig,
    class: &Classification,
    blobs: &BlobStore,
    key_is_ec: bool,
) -> Result<String, RegisterError> {
    let (number, date, time) = number_date_time(t);
    let mut documents = String::new();
    let originals: Vec<_> = t
        .documents
        .iter()
        .filter(|d| d.kind == DocumentKind::Original)
        .collect();
    for (i, d) in originals.iter().enumerate() {
        let element = if i == 0 {
            "prot:DocumentoPrimario"
        } else {
            "prot:Allegato"
        };
        documents.push_str(&format!(
            "<{element} prot:nomeFile=\"{}\" prot:mimeType=\"{}\"><prot:Impronta prot:algoritmo=\"SHA-256\">{}</prot:Impronta></{element}>",
            x(&d.name),
            x(&d.mime),
            impronta(blobs, &d.name, &d.sha256)?
        ));
    }
    if originals.is_empty() {
        return Err(RegisterError::NoOriginal(t.code.clone()));
    }
    let administration = descrizione(Some(&reg.administration));
    let aoo = descrizione(reg.aoo_name.as_deref());
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<prot:SegnaturaInformatica xmlns:prot=\"{NAMESPACE}\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" prot:versione=\"3.0.0\" prot:lang=\"it\">\
<prot:Intestazione>\
<prot:Identificatore>\
<prot:CodiceAmministrazione{administration}>{ipa}</prot:CodiceAmministrazione>\
<prot:CodiceAOO{aoo}>{aoo_code}</prot:CodiceAOO>\
<prot:CodiceRegistro>{register}</prot:CodiceRegistro>\
<prot:NumeroRegistrazione>{number}</prot:NumeroRegistrazione>\
<prot:DataRegistrazione>{date}</prot:DataRegistrazione>\
<prot:OraRegistrazione>{time}</prot:OraRegistrazione>\
</prot:Identificatore>\
<prot:Oggetto>{subject}</prot:Oggetto>\
<prot:Classifica><prot:Denominazione>{class_label}</prot:Denominazione><prot:CodiceFlat>{class_code}</prot:CodiceFlat></prot:Classifica>\
</prot:Intestazione>\
<prot:Descrizione>{sender}{addressee}{documents}</prot:Descrizione>\
{signature}\
</prot:SegnaturaInformatica>\n",
        ipa = x(&reg.ipa),
        aoo_code = x(&reg.aoo),
        register = x(&reg.code),
        number = x(&number),
        date = x(&date),
        time = x(&time),
        subject = x(&t.subject),
        class_label = x(class.label),
        class_code = x(class.code),
        sender = sender(t),
        addressee = addressee(reg),
        signature = seal::template(key_is_ec),
    ))
}

/// The sealed segnatura of a registration.
pub fn sealed(
    t: &Ticket,
    reg: &RegisterConfig,
    class: &Classification,
    blobs: &BlobStore,
    seal_files: &SealFiles,
) -> Result<String, RegisterError> {
    let ec = seal::key_is_ec(seal_files)?;
    seal::sign(&unsealed(t, reg, class, blobs, ec)?, seal_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_gives_its_classifica_and_no_topic_says_so() {
        let topic = TopicDef {
            label: "Ricostruzione privata e agibilità".into(),
            office: "Ufficio ricostruzione".into(),
            classifica: Some("6.3".into()),
        };
        let c = Classification::of(Some(&topic));
        assert_eq!(
            (c.label, c.code),
            ("Ricostruzione privata e agibilità", "6.3")
        );
        let unmapped = TopicDef {
            classifica: None,
            ..topic.clone()
        };
        assert_eq!(Classification::of(Some(&unmapped)).code, UNCLASSIFIED.1);
        let none = Classification::of(None);
        assert_eq!((none.label, none.code), UNCLASSIFIED);
    }
}
