//! Sealing a segnatura: an enveloped XML-DSig signature (RSA or ECDSA with SHA-256, exclusive
//! canonicalisation, the certificate in `KeyInfo`) made by Debian's `xmlsec1` with the AOO's
//! PEM key and certificate. Plain XML-DSig, not XAdES: the signature carries no signed
//! properties (signing time, certificate digest).

use super::{RegisterError, SealFiles};
use std::process::Command;

/// The signature template `xmlsec1` fills in, placed where AgID's schema wants `ds:Signature`
/// (the last child of the root). The reference is the whole document minus the signature.
pub fn template(key_is_ec: bool) -> String {
    let method = if key_is_ec {
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    } else {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    };
    format!(
        "<ds:Signature>\
<ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
<ds:SignatureMethod Algorithm=\"{method}\"/>\
<ds:Reference URI=\"\">\
<ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
</ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
<ds:DigestValue/>\
</ds:Reference>\
</ds:SignedInfo>\
<ds:SignatureValue/>\
<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>\
</ds:Signature>"
    )
}

/// Whether the PEM key is an elliptic-curve key (its signature method differs).
pub fn key_is_ec(seal: &SealFiles) -> Result<bool, RegisterError> {
    let pem = std::fs::read_to_string(&seal.key).map_err(|e| {
        RegisterError::Seal(format!("cannot read the key {}: {e}", seal.key.display()))
    })?;
    if pem.contains("ENCRYPTED") {
        return Err(RegisterError::Seal(format!(
            "the key {} is encrypted: the seal key must be readable without a passphrase (keep the file readable by this service only)",
            seal.key.display()
        )));
    }
    if pem.contains("BEGIN EC PRIVATE KEY") {
        return Ok(true);
    }
    // A PKCS#8 key does not say its algorithm in the armour: the EC public-key OID
    // (1.2.840.10045.2.1) in its DER does.
    let der = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(der.trim())
        .unwrap_or_default();
    const EC_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    Ok(bytes.windows(EC_OID.len()).any(|w| w == EC_OID))
}

/// Signs `xml` (which holds [`template`]) with the seal; returns the signed document.
pub fn sign(xml: &str, seal: &SealFiles) -> Result<String, RegisterError> {
    for (what, path) in [("key", &seal.key), ("certificate", &seal.cert)] {
        if !path.is_file() {
            return Err(RegisterError::Seal(format!(
                "the seal {what} {} is not a readable file",
                path.display()
            )));
        }
    }
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("segnatura.xml");
    let output = dir.path().join("sealed.xml");
    std::fs::write(&input, xml)?;
    let mut keys = std::ffi::OsString::from(&seal.key);
    keys.push(",");
    keys.push(&seal.cert);
    let run = Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(&keys)
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .map_err(|e| {
            RegisterError::Seal(format!(
                "cannot run xmlsec1 (Debian package `xmlsec1`): {e}"
            ))
        })?;
    if !run.status.success() {
        return Err(RegisterError::Seal(format!(
            "xmlsec1 refused to sign: {}",
            last_lines(&run.stderr)
        )));
    }
    Ok(std::fs::read_to_string(&output)?)
}

/// Checks a sealed document's signature against `cert` (the AOO's certificate, trusted as
/// given). Used by tests and by whoever receives a segnatura from this office.
pub fn verify(xml: &str, cert: &std::path::Path) -> Result<(), RegisterError> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("sealed.xml");
    std::fs::write(&input, xml)?;
    let run = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(cert)
        .arg(&input)
        .output()
        .map_err(|e| RegisterError::Seal(format!("cannot run xmlsec1: {e}")))?;
    if run.status.success() {
        Ok(())
    } else {
        Err(RegisterError::Seal(format!(
            "the signature does not verify: {}",
            last_lines(&run.stderr)
        )))
    }
}

fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
