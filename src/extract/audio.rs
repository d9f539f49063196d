//! WAV recordings (a toll-free line's voicemail): only their header is read, for how long
//! they play. No speech is turned into text; a clerk listens and writes a summary.

/// What a WAV file's header says.
#[derive(Debug, Clone, PartialEq)]
pub struct WavInfo {
    /// The `fmt ` chunk's format tag: 1 PCM, 6/7 G.711 A/µ-law, 0x31 GSM 6.10 (Asterisk's
    /// `wav49`).
    pub format: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub duration_secs: f64,
}

/// Reads a RIFF/WAVE header: its chunks in order, each size checked against the file, up to
/// the `data` chunk. Anything else is an error saying what is wrong.
pub fn wav_info(bytes: &[u8]) -> Result<WavInfo, String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a WAV audio file (no RIFF/WAVE header)".into());
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u32)> = None;
    // A real file has a handful of chunks; a forged one may claim thousands of tiny ones.
    for _ in 0..64 {
        if at + 8 > bytes.len() {
            break;
        }
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                if size < 16 || body + 16 > bytes.len() {
                    return Err("the WAV format chunk is cut short".into());
                }
                fmt = Some((
                    u16_at(bytes, body),
                    u16_at(bytes, body + 2),
                    u32_at(bytes, body + 4),
                    u32_at(bytes, body + 8),
                ));
            }
            b"data" => {
                let (format, channels, sample_rate, byte_rate) =
                    fmt.ok_or("the WAV file has sound data but no format chunk")?;
                if byte_rate == 0 || channels == 0 || sample_rate == 0 {
                    return Err("the WAV format chunk gives no rate".into());
                }
                // A recording cut short (the line dropped) plays what it has.
                let available = size.min(bytes.len() - body);
                return Ok(WavInfo {
                    format,
                    channels,
                    sample_rate,
                    duration_secs: available as f64 / byte_rate as f64,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err("the WAV file has no sound data chunk".into())
}

/// A duration as a person says it: "45 s", "2 min 05 s".
pub fn shown_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::wav_silence as wav;

    #[test]
    fn the_duration_comes_from_the_header() {
        let info = wav_info(&wav(2.5)).unwrap();
        assert_eq!((info.format, info.channels, info.sample_rate), (1, 1, 8000));
        assert!((info.duration_secs - 2.5).abs() < 1e-6);
        // Cut short: what is there.
        let mut short = wav(2.0);
        short.truncate(44 + 8000);
        assert!((wav_info(&short).unwrap().duration_secs - 0.5).abs() < 1e-6);
        assert_eq!(shown_duration(45.4), "45 s");
        assert_eq!(shown_duration(125.0), "2 min 05 s");
    }

    #[test]
    fn what_is_not_a_wav_says_why() {
        assert!(wav_info(b"ID3\x03 an mp3")
            .unwrap_err()
            .contains("not a WAV"));
        let mut no_fmt = b"RIFF\x10\0\0\0WAVEdata\x04\0\0\0abcd".to_vec();
        assert!(wav_info(&no_fmt).unwrap_err().contains("no format"));
        no_fmt.truncate(12);
        assert!(wav_info(&no_fmt).unwrap_err().contains("no sound data"));
        let mut cut = wav(1.0);
        cut.truncate(30);
        assert!(wav_info(&cut).unwrap_err().contains("cut short"));
        // A chunk claiming to be larger than the file ends the walk without a panic.
        let huge = b"RIFF\xff\xff\xff\xffWAVEjunk\xff\xff\xff\xff".to_vec();
        assert!(wav_info(&huge).is_err());
    }
}
