//! Citizens' tracking codes: `URP-7K3M-9QXD`.
//!
//! Seven random symbols from Crockford's base-32 alphabet (no I, L, O, U, so nothing reads
//! as another symbol) and one check symbol: symbols are elements of GF(32) and the check makes
//! sum(alpha^i * v_i) zero, which catches every single mistyped symbol and every swap of two
//! neighbours (Luhn mod 32 would miss the 0/Z swap). A mistyped code is
//! refused before any lookup, so a near miss never shows somebody else's ticket.

use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_SYMBOLS: usize = 7;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("`{0}` is not a tracking code (expected e.g. URP-7K3M-9QXD)")]
    Malformed(String),
    #[error("tracking code `{0}` is mistyped: its check character does not match")]
    BadCheck(String),
}

fn value_of(symbol: u8) -> Option<u32> {
    // Crockford decoding: accept lower case and the look-alikes O→0, I/L→1.
    let s = match symbol.to_ascii_uppercase() {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|&c| c == s).map(|p| p as u32)
}

/// Multiplication in GF(32), modulo the primitive polynomial x^5 + x^2 + 1.
fn gf_mul(mut a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0x20 != 0 {
            a ^= 0x25;
        }
    }
    product
}

/// The check symbol c with sum(alpha^i * v_i) + alpha^n * c = 0 in GF(32), alpha = x.
fn check_value(values: &[u32]) -> u32 {
    let mut sum = 0;
    let mut power = 1;
    for &v in values {
        sum ^= gf_mul(power, v);
        power = gf_mul(power, 2);
    }
    // c = sum / alpha^n: multiply by the inverse of alpha^n (alpha^31 = 1).
    let mut inverse = 1;
    for _ in 0..(31 - values.len() % 31) % 31 {
        inverse = gf_mul(inverse, 2);
    }
    gf_mul(sum, inverse)
}

/// A fresh random code with the given prefix (e.g. "URP").
pub fn generate(prefix: &str, rng: &mut impl Rng) -> String {
    let values: Vec<u32> = (0..RANDOM_SYMBOLS)
        .map(|_| rng.gen_range(0..ALPHABET.len() as u32))
        .collect();
    format_code(prefix, &values)
}

fn format_code(prefix: &str, values: &[u32]) -> String {
    let check = check_value(values);
    let mut symbols: Vec<char> = values
        .iter()
        .map(|&v| ALPHABET[v as usize] as char)
        .collect();
    symbols.push(ALPHABET[check as usize] as char);
    let body: String = symbols[..4].iter().collect();
    let tail: String = symbols[4..].iter().collect();
    format!("{prefix}-{body}-{tail}")
}

/// Validates a code as a citizen or clerk typed it and returns its canonical form.
/// Case, spaces, and the look-alike letters O, I, L are forgiven; a wrong check symbol is not.
pub fn parse(input: &str) -> Result<String, CodeError> {
    let trimmed = input.trim();
    let malformed = || CodeError::Malformed(trimmed.to_string());
    let (prefix, rest) = trimmed.split_once('-').ok_or_else(malformed)?;
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(malformed());
    }
    let symbols: Vec<u8> = rest
        .bytes()
        .filter(|b| *b != b'-' && !b.is_ascii_whitespace())
        .collect();
    if symbols.len() != RANDOM_SYMBOLS + 1 {
        return Err(malformed());
    }
    let values: Vec<u32> = symbols
        .iter()
        .map(|&s| value_of(s))
        .collect::<Option<_>>()
        .ok_or_else(malformed)?;
    let (data, check) = values.split_at(RANDOM_SYMBOLS);
    if check_value(data) != check[0] {
        return Err(CodeError::BadCheck(trimmed.to_string()));
    }
    Ok(format_code(&prefix.to_ascii_uppercase(), data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_codes_parse_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let code = generate("URP", &mut rng);
            assert_eq!(code.len(), "URP-7K3M-9QXD".len());
            assert_eq!(parse(&code).unwrap(), code);
            assert_eq!(parse(&code.to_lowercase()).unwrap(), code);
        }
    }

    #[test]
    fn every_single_substitution_and_adjacent_swap_is_caught() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let code = generate("URP", &mut rng);
            let bytes: Vec<u8> = code.bytes().collect();
            let positions: Vec<usize> = (4..bytes.len()).filter(|&i| bytes[i] != b'-').collect();
            for &i in &positions {
                for &c in ALPHABET.iter() {
                    if c == bytes[i] {
                        continue;
                    }
                    let mut typo = bytes.clone();
                    typo[i] = c;
                    let typo = String::from_utf8(typo).unwrap();
                    assert_eq!(parse(&typo), Err(CodeError::BadCheck(typo.clone())));
                }
            }
            for w in positions.windows(2) {
                let (i, j) = (w[0], w[1]);
                if bytes[i] == bytes[j] {
                    continue;
                }
                let mut typo = bytes.clone();
                typo.swap(i, j);
                let typo = String::from_utf8(typo).unwrap();
                assert!(parse(&typo).is_err(), "swap not caught: {code} -> {typo}");
            }
        }
    }

    #[test]
    fn look_alikes_are_forgiven_and_garbage_is_malformed() {
        let code = format_code("URP", &[0, 1, 1, 2, 3, 4, 5]);
        let typed = code.replacen('0', "o", 1).replacen('1', "l", 1);
        assert_eq!(parse(&typed).unwrap(), code);
        assert!(matches!(parse("hello"), Err(CodeError::Malformed(_))));
        assert!(matches!(parse("URP-12"), Err(CodeError::Malformed(_))));
        assert!(matches!(
            parse("URP-UUUU-UUUU"),
            Err(CodeError::Malformed(_))
        ));
        assert!(matches!(parse(""), Err(CodeError::Malformed(_))));
    }
}
