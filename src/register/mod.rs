//! The protocol register as an Italian administration must keep it (DPR 445/2000 artt.
//! 53–57, AgID's guidelines on documents and their Allegato 6): who keeps it (`[register]`
//! in the pipeline file: the administration's IPA code, the AOO, the register's code), the
//! *segnatura* of each registration (`segnatura.rs`), sealed with the AOO's key (`seal.rs`),
//! and the daily register (`daily.rs`).

pub mod daily;
pub mod seal;
pub mod segnatura;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[register]`: the identity of the register in AgID's terms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The administration's code in the IPA index (e.g. `c_a345`).
    pub ipa: String,
    /// The AOO's code in the IPA index.
    pub aoo: String,
    /// The register's code (AgID: 1 to 16 of `A-Z a-z 0-9 _ . -`).
    #[serde(default = "default_register_code")]
    pub code: String,
    /// The administration's name, as the IPA index gives it.
    pub administration: String,
    /// The administration's fiscal code (11 digits).
    pub fiscal_code: String,
    /// The AOO's own name, when it has one.
    #[serde(default)]
    pub aoo_name: Option<String>,
}

fn default_register_code() -> String {
    "PROTOCOLLO".into()
}

impl RegisterConfig {
    /// What AgID's schema would refuse, in words; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ipa_like = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !ipa_like(&self.ipa) {
            out.push(format!("`ipa` must be the IPA code of the administration (letters, digits, `_`, `-`, `.`), got {:?}", self.ipa));
        }
        if !ipa_like(&self.aoo) {
            out.push(format!(
                "`aoo` must be the AOO's IPA code (letters, digits, `_`, `-`, `.`), got {:?}",
                self.aoo
            ));
        }
        let code_ok = (1..=16).contains(&self.code.len())
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !code_ok {
            out.push(format!(
                "`code` must be 1 to 16 of A-Z, a-z, 0-9, `_`, `.`, `-` (AgID's CodiceRegistro), got {:?}",
                self.code
            ));
        }
        if self.administration.trim().is_empty() {
            out.push("`administration` (the administration's name) must not be empty".into());
        }
        if self.fiscal_code.len() != 11 || !self.fiscal_code.bytes().all(|b| b.is_ascii_digit()) {
            out.push(format!(
                "`fiscal_code` must be the administration's 11-digit fiscal code, got {:?}",
                self.fiscal_code
            ));
        }
        out
    }

    /// The stem of a daily register's files: `<IPA>_<AOO>_<REGISTER>_<YYYYMMDD>`.
    pub fn file_stem(&self, date: chrono::NaiveDate) -> String {
        format!(
            "{}_{}_{}_{}",
            self.ipa,
            self.aoo,
            self.code,
            date.format("%Y%m%d")
        )
    }
}

/// The AOO's seal: a PEM private key and its certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct SealFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the register is not configured: add a `[register]` table to the pipeline file (ipa, aoo, code, administration, fiscal_code)")]
    NotConfigured,
    #[error("the segnatura must be sealed: set SPORTELLO_SEAL_KEY and SPORTELLO_SEAL_CERT (or `seal_key` and `seal_cert` in the pipeline file) to the AOO's PEM key and certificate")]
    NoSeal,
    #[error("sealing the segnatura: {0}")]
    Seal(String),
    #[error("the original {name} no longer matches its impronta ({expected}): {detail}")]
    Original {
        name: String,
        expected: String,
        detail: String,
    },
    #[error("{0} has no original document for its segnatura to describe")]
    NoOriginal(String),
    #[error("{0}")]
    Daily(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The seal: `SPORTELLO_SEAL_KEY` and `SPORTELLO_SEAL_CERT`, else the pipeline's
/// `seal_key` and `seal_cert`; None when either is missing.
pub fn seal_files(pipeline: &crate::config::Pipeline) -> Option<SealFiles> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let key = env("SPORTELLO_SEAL_KEY").or_else(|| pipeline.seal_key.clone())?;
    let cert = env("SPORTELLO_SEAL_CERT").or_else(|| pipeline.seal_cert.clone())?;
    Some(SealFiles { key, cert })
}

/// The topics of the pipeline's rules (the shipped rules when it has no classify stage).
pub fn topics(
    pipeline: &crate::config::Pipeline,
) -> std::collections::BTreeMap<String, crate::classify::rules::TopicDef> {
    crate::classify::rules::Rules::load(&pipeline.rules_in_force())
        .map(|r| r.topics)
        .unwrap_or_default()
}

/// The sealed segnatura of a registration, as the pipeline's register, seal and rules say.
pub fn segnatura_of(
    ticket: &crate::model::Ticket,
    pipeline: &crate::config::Pipeline,
    blobs: &crate::store::blobs::BlobStore,
) -> Result<String, RegisterError> {
    let reg = pipeline
        .register
        .as_ref()
        .ok_or(RegisterError::NotConfigured)?;
    let seal = seal_files(pipeline).ok_or(RegisterError::NoSeal)?;
    let topics = topics(pipeline);
    let topic = ticket.topic.as_deref().and_then(|t| topics.get(t));
    let class = segnatura::Classification::of(topic);
    segnatura::sealed(ticket, reg, &class, blobs, &seal)
}

/// XML text with `&`, `<`, `>`, quotes escaped; characters XML 1.0 cannot carry at all
/// (most C0 controls) dropped, since a citizen's subject may hold anything.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RegisterConfig {
        RegisterConfig {
            ipa: "c_a345".into(),
            aoo: "AOO_URP".into(),
            code: "PROTOCOLLO".into(),
            administration: "Comune dell'Aquila".into(),
            fiscal_code: "80002270660".into(),
            aoo_name: None,
        }
    }

    #[test]
    fn a_register_says_what_agid_would_refuse() {
        assert!(config().problems().is_empty());
        let bad = RegisterConfig {
            code: "PROTOCOLLO GENERALE 2026".into(),
            fiscal_code: "8000227066".into(),
            ipa: "".into(),
            ..config()
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("CodiceRegistro")));
    }

    #[test]
    fn daily_files_are_named_for_the_conservation_system() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            config().file_stem(day),
            "c_a345_AOO_URP_PROTOCOLLO_20261201"
        );
    }

    #[test]
    fn text_that_xml_cannot_carry_is_escaped_or_dropped() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'\u{1}\u{7}é"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;é"
        );
    }
}
